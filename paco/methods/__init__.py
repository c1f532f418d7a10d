"""Every method, one file each, behind one interface (`paco.methods.base.Method`); the registry is a dict.

`compositional.py` holds the paper's unified view (MT-SAC, multi-head, single-task, PaCo as rows of one table);
the other baselines sit beside it.
"""

from __future__ import annotations

from typing import Callable, Sequence

from paco.config.methods import AnyMethodConfig
from paco.methods import care, film, moore, soft_modules
from paco.methods.base import FROZEN, SHARED, TASK, Method
from paco.methods.compositional import Compositional

Builder = Callable[[AnyMethodConfig, tuple[str, ...], int, int], Method]


def _compositional(config, task_names, obs_dim, action_dim):
    return Compositional.build(config, len(task_names), obs_dim, action_dim)


METHODS: dict[str, Builder] = {
    "mtsac": _compositional,
    "multihead": _compositional,
    "single-task": _compositional,
    "paco": _compositional,
    "film": film.build,
    "softmod": soft_modules.build,
    "care": care.build,
    "moore": moore.build,
}


def build_method(config: AnyMethodConfig, task_names: Sequence[str], obs_dim: int, action_dim: int) -> Method:
    """The method of `config` for these tasks (by name: CARE reads each task's description embedding)."""
    return METHODS[config.name](config, tuple(task_names), obs_dim, action_dim)


def check_method(config: AnyMethodConfig, task_names: Sequence[str]) -> None:
    """Raise ValueError where the method cannot be built for these tasks (sizes only; nothing is initialised)."""
    build_method(config, task_names, 1, 1)


__all__ = ["FROZEN", "METHODS", "SHARED", "TASK", "Method", "build_method", "check_method"]
