"""`paco transfer`: learn new tasks on a trained run's frozen Φ (only w and the temperatures learn), or, with
`--from-scratch`, the same tasks, budget and settings with every parameter learned anew, for comparison.

The new run is an ordinary run directory (its config names the source run and checkpoint in `transfer`), so it
resumes with `paco train --resume`, loads with `paco.load_agent`, and `paco report` / `paco plot` compare the
transfer and scratch runs: their presets are `<source preset>-transfer-<task>` and `<source preset>-scratch-<task>`.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import jax

from paco import checkpoint
from paco.config import Config, TransferConfig, replace
from paco.envs import env_dims, pointmass_tasks, task_names
from paco.methods import build_method
from paco.transfer import shared_parameters_from

STEP_FIELDS = ("total_env_steps", "warmup_env_steps", "eval_every_env_steps", "log_every_env_steps",
               "checkpoint_every_env_steps")


def transfer_config(source_dir: str | Path, tasks: str, from_scratch: bool = False, seed: int | None = None,
                    total_env_steps: int | None = None, source_step: int | None = None, out: str = "") -> Config:
    """The config of a transfer (or from-scratch) run of `tasks` ('name' or 'a,b') from the run in `source_dir`.

    Everything but the suite follows the source run; its env-step budgets (total, warm-up, evaluation, logging,
    checkpoints) are scaled from the source's tasks to the new ones, so each new task gets the source's budget
    per task."""
    source_dir = Path(source_dir)
    try:
        source = checkpoint.read_config(source_dir)
        step = checkpoint.newest_step(source_dir) if source_step is None else source_step
    except checkpoint.CheckpointError as error:
        raise ValueError(f"cannot transfer from {source_dir}: {error}") from None
    if source_step is not None and source_step not in checkpoint.checkpoint_steps(source_dir):
        raise ValueError(f"{source_dir} has no checkpoint at step {source_step}; it has "
                         f"{checkpoint.checkpoint_steps(source_dir)}")
    source_tasks = task_names(source.env)
    suite = f"pointmass:{tasks}" if pointmass_tasks(source.env.suite) is not None else tasks
    env = dataclasses.replace(source.env, suite=suite, explode_task=-1)
    new_tasks = task_names(env)  # validates the names
    scale = len(new_tasks) / len(source_tasks)
    train = {name: max(1, round(getattr(source.train, name) * scale)) if getattr(source.train, name) else 0
             for name in STEP_FIELDS}
    if total_env_steps is not None:
        train["total_env_steps"] = total_env_steps
    seed = source.seed if seed is None else seed
    preset = f"{source.preset or 'custom'}-{'scratch' if from_scratch else 'transfer'}-{tasks.replace(',', '+')}"
    config = replace(source, env=env, train=train, seed=seed, preset=preset,
                     transfer=TransferConfig() if from_scratch else TransferConfig(str(source_dir.resolve()), step))
    if not from_scratch:  # fails here, before anything is written, where the parameters cannot transfer
        method = build_method(config.network, new_tasks, *env_dims(env))
        fresh = jax.eval_shape(method.init, jax.random.PRNGKey(0))
        shared_parameters_from(config.transfer, method, config.network.name)(fresh)
    return dataclasses.replace(config, out=out or str(Path("runs") / preset / f"seed{seed}"))


def parse(argv: list[str]) -> tuple[Config, bool]:
    """The run's config and whether --overwrite was given."""
    parser = argparse.ArgumentParser(prog="paco transfer", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="the trained source run")
    parser.add_argument("--task", required=True, help="the new task(s): a Meta-World name (e.g. 'window-close'), "
                        "several joined by commas, or a point-mass task (e.g. 'rot90') for a point-mass source")
    parser.add_argument("--from-scratch", action="store_true",
                        help="learn every parameter anew (same tasks, budget and settings): the baseline")
    parser.add_argument("--seed", type=int, help="default: the source run's seed")
    parser.add_argument("--total-steps", type=int,
                        help="env steps (default: the source run's budget per task, times the new tasks)")
    parser.add_argument("--checkpoint", type=int, help="the source's checkpoint step (default: its newest good one)")
    parser.add_argument("--out", default="", help="run directory (default: runs/<preset>/seed<seed>)")
    parser.add_argument("--overwrite", action="store_true", help="replace a run already in the run directory")
    options = parser.parse_args(argv)
    config = transfer_config(options.run_dir, options.task, options.from_scratch, options.seed, options.total_steps,
                             options.checkpoint, options.out)
    return config, options.overwrite
