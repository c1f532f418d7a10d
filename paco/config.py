"""Typed, frozen configuration of a run. Every field can be set from the command line.

Defaults are the authors' MT10-rand settings (DESIGN.md section 2); presets change only what differs.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field
from typing import Annotated, Literal

import tyro


@dataclass(frozen=True)
class EnvConfig:
    suite: str = "MT10"
    """'MT10', 'MT50', 'pointmass', or comma-separated Meta-World task names (e.g. 'reach,push')."""
    random_goals: bool = True
    """Each reset draws one of the task's 50 goals; False keeps one goal per task for the whole run."""
    max_episode_steps: int = 150
    reward_version: Literal["v1", "v2"] = "v2"
    """Meta-World reward function version; the paper used V2."""
    explode_task: int = -1
    """Robustness experiments: index of a task whose reward is multiplied by `explode_scale`."""
    explode_after_env_steps: int = 0
    """Env steps (all tasks together) after which the reward of `explode_task` is scaled."""
    explode_scale: float = 1e6


@dataclass(frozen=True)
class NetworkConfig:
    method: Literal["mtsac", "multihead", "single-task", "paco"] = "mtsac"
    """Which instantiation of the compositional layer (paper section 4.3) builds actor and critics."""
    hidden: tuple[int, ...] = (400, 400, 400)
    log_std_min: float = -10.0
    log_std_max: float = 2.0
    num_components: int = 5
    """PaCo: K, the size of the parameter set."""
    w_init: Literal["normal", "onehot"] = "normal"
    """PaCo: N(0,1) compositional vectors, or one-hot (needs K = number of tasks)."""
    w_unit_norm: bool = False
    """PaCo: use w / |w| (the paper's K=2 visualisation on the unit circle)."""
    composition: Literal["ac-shared", "actor-only", "output-only"] = "ac-shared"
    """PaCo: compose all layers of actor and critics, only the actor's, or only the output layers."""


@dataclass(frozen=True)
class SACConfig:
    batch_per_task: int = 128
    gamma: float = 0.99
    tau: float = 0.005
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    w_lr: float = 3e-4
    alpha_lr: float = 1e-4
    log_alpha_init: float = 0.0
    log_alpha_min: float = -10.0
    log_alpha_max: float = 0.0
    target_entropy_per_action_dim: float = math.log(0.2)
    """Target entropy is action_dim times this (authors: 4 log 0.2 for Meta-World)."""


@dataclass(frozen=True)
class StabilityConfig:
    mode: Literal["vanilla", "maskout", "reset"] = "reset"
    """Reset = loss maskout + w-reset (Algorithm 1); w-reset needs a learned w."""
    loss_threshold: float = 3e3
    """epsilon: a task whose per-update loss exceeds this (or is not finite) is masked out."""
    reset_weights: Literal["dirichlet", "uniform-normalized"] = "dirichlet"
    """How beta is drawn on the simplex: uniform Dirichlet, or U(0,1) draws normalised (authors' code)."""


@dataclass(frozen=True)
class TrainConfig:
    total_env_steps: Annotated[int, tyro.conf.arg(aliases=("--total-steps",))] = 20_000_000
    """Environment steps summed over all tasks (the paper: 20M for MT10)."""
    warmup_env_steps: int = 15_000
    """Random-action steps (all tasks together) collected before updates start."""
    updates_per_vector_step: int = 1
    """Gradient updates per step of the vector env (one env per task)."""
    replay_capacity_per_task: int = 1_000_000
    eval_every_env_steps: int = 500_000
    eval_episodes: int = 10
    """Evaluation episodes per task (deterministic policy)."""
    log_every_env_steps: int = 50_000
    checkpoint_every_env_steps: int = 1_000_000
    """Env steps between checkpoints (0: only at the end). Meta-World suites checkpoint at the first step,
    at or after each multiple, where every task has just started a new episode (see envs/metaworld.py)."""
    keep_checkpoints: int = 2
    """Newest checkpoints kept; each holds the whole replay buffer."""
    overlap_env_and_update: Literal["auto", "on", "off"] = "auto"
    """Step the envs while an update computes, acting with the policy from one update before it. "auto":
    on an accelerator, where the update leaves the CPU free; not on a CPU, where they share its cores."""
    progress: bool = True


@dataclass(frozen=True)
class Config:
    env: EnvConfig = field(default_factory=EnvConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    sac: SACConfig = field(default_factory=SACConfig)
    stability: StabilityConfig = field(default_factory=StabilityConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0
    out: str = ""
    """Run directory; empty: runs/<preset>/seed<seed>."""
    preset: str = ""


def replace(config: Config, **sections: dict) -> Config:
    """Copy of `config` with fields of nested sections replaced: replace(c, sac={"gamma": 0.9})."""
    updates = {}
    for name, value in sections.items():
        current = getattr(config, name)
        updates[name] = dataclasses.replace(current, **value) if isinstance(value, dict) else value
    return dataclasses.replace(config, **updates)


def to_dict(config: Config) -> dict:
    return dataclasses.asdict(config)


def from_dict(data: dict) -> Config:
    """Inverse of `to_dict` (JSON lists become tuples); unknown top-level keys are ignored."""
    fields = typing.get_type_hints(Config)
    kwargs = {}
    for name, value in data.items():
        if name not in fields:
            continue
        if isinstance(value, dict):
            value = fields[name](**{k: tuple(v) if isinstance(v, list) else v for k, v in value.items()})
        kwargs[name] = value
    return Config(**kwargs)


def validate(config: Config) -> None:
    """Raise ValueError naming the first setting that cannot work, before anything is built or written."""
    from paco.envs import task_names
    from paco.methods import METHODS

    train, sac, net, stab = config.train, config.sac, config.network, config.stability
    positive = {"train.total_env_steps": train.total_env_steps, "sac.batch_per_task": sac.batch_per_task,
                "network.num_components": net.num_components, "stability.loss_threshold": stab.loss_threshold,
                "train.replay_capacity_per_task": train.replay_capacity_per_task,
                "train.updates_per_vector_step": train.updates_per_vector_step,
                "train.eval_episodes": train.eval_episodes, "train.keep_checkpoints": train.keep_checkpoints,
                "env.max_episode_steps": config.env.max_episode_steps, "sac.actor_lr": sac.actor_lr,
                "sac.critic_lr": sac.critic_lr, "sac.w_lr": sac.w_lr, "sac.alpha_lr": sac.alpha_lr,
                "sac.tau": sac.tau}
    non_negative = {"train.warmup_env_steps": train.warmup_env_steps,
                    "train.eval_every_env_steps": train.eval_every_env_steps,
                    "train.log_every_env_steps": train.log_every_env_steps,
                    "train.checkpoint_every_env_steps": train.checkpoint_every_env_steps, "seed": config.seed}
    for name, value in positive.items():
        if not value > 0:  # also catches NaN
            raise ValueError(f"{name} must be positive, got {value}")
    for name, value in non_negative.items():
        if not value >= 0:
            raise ValueError(f"{name} must not be negative, got {value}")
    if not net.hidden or min(net.hidden) < 1:
        raise ValueError(f"network.hidden must be one or more positive layer widths, got {net.hidden}")
    if not 0 <= sac.gamma <= 1 or sac.tau > 1:
        raise ValueError(f"sac.gamma and sac.tau must lie in [0, 1], got {sac.gamma} and {sac.tau}")
    for section, name in ((net, "method"), (net, "w_init"), (net, "composition"), (stab, "mode"),
                          (stab, "reset_weights"), (config.env, "reward_version")):
        known = typing.get_args(typing.get_type_hints(type(section))[name])
        if getattr(section, name) not in known:
            raise ValueError(f"unknown {name} {getattr(section, name)!r}; known: {', '.join(known)}")
    names = task_names(config.env)
    METHODS[net.method](net, len(names))  # raises where the method cannot be built for this many tasks
    if config.env.explode_task >= len(names):
        raise ValueError(f"env.explode_task {config.env.explode_task} is not a task index (0..{len(names) - 1})")


def save(config: Config, path) -> None:
    with open(path, "w") as f:
        json.dump(to_dict(config), f, indent=2)
