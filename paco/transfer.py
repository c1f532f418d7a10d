"""Transfer to new tasks (the paper's appendix): a new run starts from a trained run's shared parameters (PaCo's Φ)
and keeps them frozen, learning only its tasks' own parameters (PaCo's w) and temperatures.

The new run builds its method for its own tasks with the source's network settings; every shared parameter must
then have the source's shape (the same observation size, and no task one-hot input) and is copied bit for bit.
The new tasks' own parameters (PaCo's w) start at the mean of the source tasks' (`transfer.task_start`), frozen
ones (a frozen one-hot) as in any run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np

from paco.checkpoint import restore_params
from paco.config import TransferConfig
from paco.methods import SHARED, TASK, Method


def shared_parameters_from(transfer: TransferConfig, method: Method, name: str) -> Callable[[dict], dict]:
    """`start(fresh) -> params` for `sac.init_state`: the method's fresh parameters (no temperatures yet) with every
    shared leaf replaced by the source run's; `name` is the method's, for messages. Raises ValueError where the
    method has nothing to learn or the shapes do not match."""
    _, source, step = restore_params(Path(transfer.source), transfer.source_step or None)

    def start(fresh: dict) -> dict:
        roles = method.roles(fresh)
        if TASK not in jax.tree.leaves(roles):
            raise ValueError(f"method {name!r} has no task-level parameters, so a transfer run would have nothing "
                             f"to learn; transfer needs a method with one, such as PaCo's w")
        theirs = flax.serialization.from_state_dict(fresh, {k: v for k, v in source.items() if k != "log_alpha"})

        def pick(path, role, mine, saved):
            if role == TASK and transfer.task_start == "source-mean":
                if np.shape(saved)[1:] != np.shape(mine)[1:]:
                    raise ValueError(f"cannot transfer from {transfer.source}: task parameter "
                                     f"{jax.tree_util.keystr(path)} has rows of shape {np.shape(saved)[1:]} there and "
                                     f"{np.shape(mine)[1:]} here")
                return jnp.broadcast_to(jnp.mean(jnp.asarray(saved, mine.dtype), 0), mine.shape)
            if role != SHARED:
                return mine
            if np.shape(saved) != np.shape(mine):
                raise ValueError(f"cannot transfer from {transfer.source} (step {step}): shared parameter "
                                 f"{jax.tree_util.keystr(path)} has shape {np.shape(saved)} there and "
                                 f"{np.shape(mine)} here (another observation size, or a method that reads the "
                                 f"task one-hot)")
            return jnp.asarray(saved, mine.dtype)

        return jax.tree_util.tree_map_with_path(pick, roles, fresh, theirs)

    return start
