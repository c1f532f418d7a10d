"""Typed, frozen configuration of a run. Every field can be set from the command line.

Defaults are the settings of PaCo's authors for MT10-rand (README, "The authors' settings"); presets change
only what differs. Each method's own settings are its own config class (`paco.config.methods`).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import typing
from dataclasses import dataclass, field
from typing import Annotated, Literal

import tyro

from paco.config.methods import BY_NAME, AnyMethodConfig, MTSACConfig


@dataclass(frozen=True)
class EnvConfig:
    suite: str = "MT10"
    """'MT10', 'MT50', 'pointmass' (or some of its tasks: 'pointmass:rot0,rot180'), or comma-separated Meta-World
    task names (e.g. 'reach,push')."""
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
    explode_probability: float = 1.0
    """Chance that each vector step after `explode_after_env_steps` scales the reward (1: every step). The draws
    depend on the run's random stream, so a stop-relaunch does not meet the same explosion again."""


@dataclass(frozen=True)
class SACConfig:
    batch_per_task: int = 128
    gamma: float = 0.99
    tau: float = 0.005
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
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
    relaunch: bool = False
    """Stop-relaunch (what the paper's baselines ran with): when the critic loss passes `relaunch_threshold`
    or is not finite, go back to the newest good checkpoint (or start over) on a new random stream."""
    relaunch_threshold: float = 1e8
    """Critic loss (both critics' MSE, averaged over tasks) above which a run relaunches (MTRL: 1e8)."""
    max_relaunches: int = 10
    """Relaunches after which the run stops with an error instead."""


@dataclass(frozen=True)
class OptimConfig:
    surgery: Literal["none", "pcgrad", "gradnorm"] = "none"
    """Gradient surgery over per-task gradients before Adam, separately for the actor's, the critics' and every
    other parameter group: 'pcgrad' projects away conflicts (Yu et al. 2020); 'gradnorm' weights the tasks'
    losses to balance their gradient norms (Chen et al. 2018)."""
    gradnorm_alpha: float = 0.12
    """GradNorm's asymmetry α: how strongly tasks that train slower get larger weights (metaworld-algorithms)."""
    gradnorm_lr: float = 1e-3
    """Adam learning rate of GradNorm's task weights."""
    gradnorm_layer: str = ""
    """GradNorm balances the gradient norms of the parameters whose path contains this (e.g. 'layers_2', the
    last hidden layer); empty: all of a group's parameters."""


@dataclass(frozen=True)
class TrainConfig:
    total_env_steps: Annotated[int, tyro.conf.arg(aliases=("--total-steps",))] = 20_000_000
    """Environment steps summed over all tasks (the paper: 20M for MT10)."""
    warmup_env_steps: int = 15_000
    """Random-action steps (all tasks together) collected before updates start."""
    updates_per_vector_step: int = 1
    """Gradient updates per step of the vector env (one env per task); they run as one jitted call (a scan)."""
    replay_capacity_per_task: int = 1_000_000
    eval_every_env_steps: int = 500_000
    eval_episodes: int = 10
    """Evaluation episodes per task (deterministic policy)."""
    log_every_env_steps: int = 50_000
    checkpoint_every_env_steps: int = 1_000_000
    """Env steps between checkpoints (0: only at the end). Meta-World suites checkpoint at the first step,
    at or after each multiple, where every task has just started a new episode (see envs/metaworld.py)."""
    keep_checkpoints: int = 2
    """Newest checkpoints kept. Each writes only the replay data added since the one before it, and they share
    the rest (the replay files a kept checkpoint needs stay on disk)."""
    overlap_env_and_update: Literal["auto", "on", "off"] = "auto"
    """Step the envs while an update computes, acting with the policy from one update before it (whose actions
    are drawn before the update is queued, so that acting never waits for it). "auto": on, unless this process has
    a single CPU core and no accelerator."""
    env_workers: str = "auto"
    """Processes that step the envs of the seeds trained together (`paco train --seeds`), each a group of seeds:
    "auto" picks in-process stepping where workers do not pay (the point mass, one seed, 2 cores or fewer) and
    otherwise one per seed, at most one per core but one; "0" steps them in this process; N: N workers."""
    progress: bool = True
    track: Annotated[Literal["none", "wandb"], tyro.conf.arg(aliases=("--track",))] = "none"
    """Experiment tracking beside TensorBoard: 'wandb' logs the same metrics to Weights & Biases (pip install -e
    '.[track]'; WANDB_MODE=offline keeps them in RUN_DIR/wandb)."""
    wandb_project: str = "paco-rl"


@dataclass(frozen=True)
class TransferConfig:
    source: str = ""
    """Run directory whose trained shared parameters (PaCo's Φ) start this run and never move; only the task-level
    parameters (PaCo's w) and the temperatures are learned. Empty: every parameter starts fresh."""
    source_step: int = 0
    """Checkpoint step of `source` to take the parameters from (0: its newest good checkpoint)."""
    task_start: Literal["source-mean", "fresh"] = "source-mean"
    """Where the new tasks' own parameters start: the mean of the source tasks' (PaCo: the mean of their w, inside
    the learned subspace and at its scale), or freshly initialised as in any run."""


@dataclass(frozen=True)
class Config:
    env: EnvConfig = field(default_factory=EnvConfig)
    network: AnyMethodConfig = field(default_factory=MTSACConfig)
    """The method and its networks; a preset picks the method, flags change its fields."""
    sac: SACConfig = field(default_factory=SACConfig)
    stability: StabilityConfig = field(default_factory=StabilityConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    transfer: TransferConfig = field(default_factory=TransferConfig)
    """Transfer to new tasks (`paco transfer`): a trained run's shared parameters, frozen."""
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
    data = dataclasses.asdict(config)
    data["network"] = {"method": config.network.name, **data["network"]}
    return data


def _section(cls, values: dict):
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def from_dict(data: dict) -> Config:
    """Inverse of `to_dict` (JSON lists become tuples); unknown top-level keys are ignored."""
    fields = typing.get_type_hints(Config)
    kwargs = {}
    for name, value in data.items():
        if name not in fields:
            continue
        if name == "network":
            value = dict(value)
            method = value.pop("method", None)
            if method not in BY_NAME:
                raise ValueError(f"unknown method {method!r}; known: {', '.join(BY_NAME)}")
            value = _section(BY_NAME[method], value)
        elif isinstance(value, dict):
            value = _section(fields[name], value)
        kwargs[name] = value
    return Config(**kwargs)


def _check_literals(prefix: str, section) -> None:
    for name, hint in typing.get_type_hints(type(section)).items():
        if typing.get_origin(hint) is Literal and getattr(section, name) not in typing.get_args(hint):
            known = ", ".join(typing.get_args(hint))
            raise ValueError(f"unknown {prefix}.{name} {getattr(section, name)!r}; known: {known}")


def _check_method_sizes(net) -> None:
    """Every size and rate of a method's config is positive (its log-std bounds aside)."""
    for f in dataclasses.fields(net):
        value = getattr(net, f.name)
        if f.name.startswith("log_std") or isinstance(value, (bool, str)):
            continue
        if isinstance(value, tuple):
            if (not value and f.default != ()) or (value and min(value) < 1):
                raise ValueError(f"network.{f.name} must be one or more positive layer widths, got {value}")
        elif not value > 0:  # also catches NaN
            raise ValueError(f"network.{f.name} must be positive, got {value}")
    if not net.log_std_min < net.log_std_max:
        raise ValueError(f"network.log_std_min must lie below network.log_std_max, got "
                         f"{net.log_std_min} and {net.log_std_max}")


def validate(config: Config) -> None:
    """Raise ValueError naming the first setting that cannot work, before anything is built or written."""
    from paco.envs import task_names
    from paco.methods import check_method

    train, sac, net, stab = config.train, config.sac, config.network, config.stability
    positive = {"train.total_env_steps": train.total_env_steps, "sac.batch_per_task": sac.batch_per_task,
                "stability.loss_threshold": stab.loss_threshold,
                "stability.relaunch_threshold": stab.relaunch_threshold,
                "train.replay_capacity_per_task": train.replay_capacity_per_task,
                "train.updates_per_vector_step": train.updates_per_vector_step,
                "train.eval_episodes": train.eval_episodes, "train.keep_checkpoints": train.keep_checkpoints,
                "env.max_episode_steps": config.env.max_episode_steps, "sac.actor_lr": sac.actor_lr,
                "sac.critic_lr": sac.critic_lr, "sac.alpha_lr": sac.alpha_lr, "sac.tau": sac.tau,
                "optim.gradnorm_lr": config.optim.gradnorm_lr}
    non_negative = {"train.warmup_env_steps": train.warmup_env_steps,
                    "train.eval_every_env_steps": train.eval_every_env_steps,
                    "train.log_every_env_steps": train.log_every_env_steps,
                    "train.checkpoint_every_env_steps": train.checkpoint_every_env_steps, "seed": config.seed,
                    "stability.max_relaunches": stab.max_relaunches,
                    "optim.gradnorm_alpha": config.optim.gradnorm_alpha,
                    "transfer.source_step": config.transfer.source_step}
    for name, value in positive.items():
        if not value > 0:  # also catches NaN
            raise ValueError(f"{name} must be positive, got {value}")
    for name, value in non_negative.items():
        if not value >= 0:
            raise ValueError(f"{name} must not be negative, got {value}")
    _check_method_sizes(net)
    if not 0 <= sac.gamma <= 1 or sac.tau > 1:
        raise ValueError(f"sac.gamma and sac.tau must lie in [0, 1], got {sac.gamma} and {sac.tau}")
    if train.env_workers != "auto" and not train.env_workers.isdigit():
        raise ValueError(f"train.env_workers must be 'auto' or a number of processes (0: none), got "
                         f"{train.env_workers!r}")
    if not 0 <= config.env.explode_probability <= 1:
        raise ValueError(f"env.explode_probability must lie in [0, 1], got {config.env.explode_probability}")
    for name in ("env", "network", "stability", "optim", "transfer"):
        _check_literals(name, getattr(config, name))
    if train.track == "wandb" and importlib.util.find_spec("wandb") is None:
        raise ValueError("--track wandb needs the wandb package: pip install -e '.[track]'")
    names = task_names(config.env)
    check_method(net, names)  # raises where the method cannot be built for these tasks
    if config.env.explode_task >= len(names):
        raise ValueError(f"env.explode_task {config.env.explode_task} is not a task index (0..{len(names) - 1})")


def save(config: Config, path) -> None:
    with open(path, "w") as f:
        json.dump(to_dict(config), f, indent=2)
