"""Every experiment of the paper, one name each; `paco presets` lists them.

Paper presets keep the authors' settings exactly (DESIGN.md section 2) and need a GPU to finish in hours.
Their `-cpu` counterparts keep the method and suite but shrink networks, batch and budget so that learning
shows within an hour on a 2-core CPU; they are for trying things, not for reporting numbers.
"""

from __future__ import annotations

from paco.config import Config, replace

PAPER = Config()  # MT10-rand, authors' settings, 20M env steps


def _paco(**network) -> Config:
    return replace(PAPER, network={"method": "paco", **network})


def _cpu(config: Config) -> Config:
    """Smaller networks, batch and budget; same method, suite and stabilisation."""
    per_task = 100_000
    tasks = {"MT10": 10, "MT50": 50}.get(config.env.suite, len(config.env.suite.split(",")))
    return replace(
        config,
        network={"hidden": (256, 256)},
        sac={"batch_per_task": 32},
        train={"total_env_steps": per_task * tasks, "warmup_env_steps": 1_500 * tasks,
               "eval_every_env_steps": 20_000 * tasks, "log_every_env_steps": 5_000 * tasks,
               "checkpoint_every_env_steps": 20_000 * tasks, "replay_capacity_per_task": per_task},
    )


MT3 = "reach,push,peg-insert-side"

_PAPER_PRESETS: dict[str, tuple[str, Config]] = {
    "mt10-rand-mtsac": ("Table 1: MT-SAC on MT10-rand (one-hot task id input), 20M steps", PAPER),
    "mt10-rand-mhsac": ("Table 1: Multi-head SAC on MT10-rand (one output head per task)",
                        replace(PAPER, network={"method": "multihead"})),
    "mt10-rand-single-task": ("Single-task SAC on each MT10-rand task (K=T, one-hot frozen w), 2M per task",
                              replace(PAPER, network={"method": "single-task"})),
    "mt10-rand-paco": ("Table 1: PaCo on MT10-rand, K=5, Reset (maskout + w-reset), eps=3e3", _paco()),
    "mt10-rand-paco-maskout": ("Table 2: PaCo with loss maskout only",
                               replace(_paco(), stability={"mode": "maskout"})),
    "mt10-rand-paco-vanilla": ("Table 2: PaCo without maskout or w-reset",
                               replace(_paco(), stability={"mode": "vanilla"})),
    "mt10-rand-paco-k3": ("Table 3a: PaCo with K=3", _paco(num_components=3)),
    "mt10-rand-paco-k8": ("Table 3a: PaCo with K=8", _paco(num_components=8)),
    "mt10-rand-paco-k10-onehot": ("Table 3a: PaCo with K=10 and one-hot initialised w",
                                  _paco(num_components=10, w_init="onehot")),
    "mt10-rand-paco-output-only": ("Table 3b: composition on the output layers only",
                                   _paco(composition="output-only")),
    "mt10-rand-paco-actor-only": ("Table 3b: composition on the actor only (MT-SAC critic)",
                                  _paco(composition="actor-only")),
    "mt3-rand-paco-k2-unit": ("Figure 3: reach, push, peg-insert-side; K=2, w on the unit circle",
                              replace(_paco(num_components=2, w_unit_norm=True), env={"suite": MT3},
                                      train={"total_env_steps": 6_000_000})),
    "mt10-paco": ("Appendix: PaCo on MT10 with fixed goals", replace(_paco(), env={"random_goals": False})),
    "mt10-mtsac": ("Appendix: MT-SAC on MT10 with fixed goals", replace(PAPER, env={"random_goals": False})),
    "mt50-rand-paco": ("Appendix: PaCo on MT50-rand, 2M steps per task",
                       replace(_paco(), env={"suite": "MT50"}, train={"total_env_steps": 100_000_000})),
    "mt50-rand-mtsac": ("Appendix: MT-SAC on MT50-rand, 2M steps per task",
                        replace(PAPER, env={"suite": "MT50"}, train={"total_env_steps": 100_000_000})),
}

_POINTMASS = replace(
    PAPER,
    env={"suite": "pointmass", "max_episode_steps": 50},
    network={"hidden": (64, 64)},
    sac={"batch_per_task": 64, "target_entropy_per_action_dim": -1.0},
    train={"total_env_steps": 60_000, "warmup_env_steps": 2_000, "eval_every_env_steps": 20_000,
           "log_every_env_steps": 4_000, "checkpoint_every_env_steps": 20_000, "eval_episodes": 10,
           "replay_capacity_per_task": 100_000},
)

_SMALL_PRESETS: dict[str, tuple[str, Config]] = {
    "pointmass-mtsac": ("Built-in 4-task point mass (conflicting dynamics), MT-SAC, about a CPU minute",
                        _POINTMASS),
    "pointmass-paco": ("Built-in 4-task point mass, PaCo K=2 with Reset, about a CPU minute",
                       replace(_POINTMASS, network={"method": "paco", "num_components": 2})),
    "cpu-quick": ("Quick start: MT-SAC on four easy Meta-World tasks, about 13 minutes on a 2-core CPU",
                  replace(
                      PAPER,
                      env={"suite": "reach,drawer-close,handle-press,faucet-close"},
                      network={"hidden": (256, 256)},
                      sac={"batch_per_task": 64, "alpha_lr": 1e-3},
                      train={"total_env_steps": 160_000, "warmup_env_steps": 6_000, "updates_per_vector_step": 2,
                             "eval_every_env_steps": 20_000, "log_every_env_steps": 8_000,
                             "checkpoint_every_env_steps": 40_000, "replay_capacity_per_task": 100_000})),
}

PRESETS: dict[str, tuple[str, Config]] = {**_PAPER_PRESETS}
for _name, (_doc, _config) in _PAPER_PRESETS.items():
    PRESETS[f"{_name}-cpu"] = (f"CPU-sized {_name}: 2x256 nets, 32 per task, 100k steps per task", _cpu(_config))
PRESETS.update(_SMALL_PRESETS)


def get(name: str) -> Config:
    if name not in PRESETS:
        raise KeyError(name)
    return replace(PRESETS[name][1], preset=name)
