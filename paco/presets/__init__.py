"""Every experiment of the paper, one name each; `paco presets` lists them with the table or figure they belong to.

Paper presets (`paper.py`, `baselines.py`) keep the settings their authors ran and need a GPU to finish in
hours. Their `-cpu` counterparts keep the method and suite but shrink networks, batch and budget so that
learning shows within an hour on a 2-core CPU; they are for trying things, not for reporting numbers.
`small.py` holds the presets made for a CPU from the start (point mass, the quick start).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

from paco.config import Config, replace
from paco.config.methods import SoftModulesConfig


class Preset(NamedTuple):
    result: str
    """The table or figure it reproduces ('Table 1', 'Appendix', ... or '' for tools)."""
    description: str
    config: Config


def cpu_sized(config: Config) -> Config:
    """Smaller networks, batch and budget; same method, suite and stabilisation."""
    per_task = 100_000
    tasks = {"MT10": 10, "MT50": 50}.get(config.env.suite, len(config.env.suite.split(",")))
    if isinstance(config.network, SoftModulesConfig):
        network = {"trunk_width": 256, "gating_width": 128, "module_width": 128}
    else:  # a wider critic stays twice as wide
        network = {"hidden": (256, 256), "critic_hidden": (512, 512) if config.network.critic_hidden else ()}
    return replace(
        config,
        network=network,
        sac={"batch_per_task": 32},
        train={"total_env_steps": per_task * tasks, "warmup_env_steps": 1_500 * tasks,
               "eval_every_env_steps": 20_000 * tasks, "log_every_env_steps": 5_000 * tasks,
               "checkpoint_every_env_steps": 20_000 * tasks, "replay_capacity_per_task": per_task},
    )


def _registry() -> dict[str, Preset]:
    from paco.presets import baselines, paper, small

    full = {**paper.PRESETS, **baselines.PRESETS}
    presets = dict(full)
    for name, preset in full.items():
        presets[f"{name}-cpu"] = Preset(preset.result, f"CPU-sized {name}: smaller nets, 32 per task, 100k steps per "
                                        f"task", cpu_sized(preset.config))
    presets.update(small.PRESETS)
    return presets


PRESETS: dict[str, Preset] = _registry()


def get(name: str) -> Config:
    if name not in PRESETS:
        raise KeyError(name)
    return dataclasses.replace(PRESETS[name].config, preset=name)
