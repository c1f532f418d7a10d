"""Presets made for a CPU: the built-in point mass (what the tests learn on) and the quick start."""

from __future__ import annotations

from paco.config import replace
from paco.config.methods import CAREConfig, FiLMConfig, MOOREConfig, MTSACConfig, PaCoConfig, SoftModulesConfig
from paco.presets import Preset
from paco.presets.paper import BASELINE, PAPER

POINTMASS = replace(
    PAPER,
    env={"suite": "pointmass", "max_episode_steps": 50},
    network=MTSACConfig(hidden=(64, 64)),
    sac={"batch_per_task": 64, "target_entropy_per_action_dim": -1.0},
    train={"total_env_steps": 60_000, "warmup_env_steps": 2_000, "eval_every_env_steps": 20_000,
           "log_every_env_steps": 4_000, "checkpoint_every_env_steps": 20_000, "eval_episodes": 10,
           "replay_capacity_per_task": 100_000},
)

POINTMASS_BASELINE = replace(POINTMASS, stability=BASELINE.stability)

PRESETS: dict[str, Preset] = {
    "pointmass-mtsac": Preset("", "Built-in 4-task point mass (conflicting dynamics), MT-SAC, about a CPU minute",
                              POINTMASS_BASELINE),
    "pointmass-paco": Preset("", "Built-in 4-task point mass, PaCo K=2 with Reset, about a CPU minute",
                             replace(POINTMASS, network=PaCoConfig(hidden=(64, 64), num_components=2))),
    "pointmass-film": Preset("", "Built-in 4-task point mass, SAC+FiLM (64x64), stop-relaunch",
                             replace(POINTMASS_BASELINE, network=FiLMConfig(hidden=(64, 64)))),
    "pointmass-softmod": Preset("", "Built-in 4-task point mass, Soft-Modularization (2 layers x 2 modules x 64)",
                                replace(POINTMASS_BASELINE, network=SoftModulesConfig(
                                    trunk_width=64, gating_width=64, module_width=64))),
    "pointmass-care": Preset("", "Built-in 4-task point mass, CARE (4 experts, 64x64)",
                             replace(POINTMASS_BASELINE, network=CAREConfig(hidden=(64, 64)))),
    "pointmass-pcgrad": Preset("", "Built-in 4-task point mass, PCGrad on MT-SAC's network",
                               replace(POINTMASS_BASELINE, optim={"surgery": "pcgrad"})),
    "pointmass-moore": Preset("", "Built-in 4-task point mass, MOORE (4 experts of 64x64)",
                              replace(POINTMASS_BASELINE, network=MOOREConfig(hidden=(64, 64)))),
    "pointmass-gradnorm": Preset("", "Built-in 4-task point mass, GradNorm on MT-SAC's network",
                                 replace(POINTMASS_BASELINE, optim={"surgery": "gradnorm"})),
    "cpu-quick": Preset("Quick start", "MT-SAC on four easy Meta-World tasks, about 7 minutes on a 2-core CPU",
                        replace(
                            PAPER,
                            env={"suite": "reach,drawer-close,handle-press,faucet-close"},
                            network={"hidden": (256, 256)},
                            sac={"batch_per_task": 64, "alpha_lr": 1e-3},
                            train={"total_env_steps": 160_000, "warmup_env_steps": 6_000,
                                   "updates_per_vector_step": 2, "eval_every_env_steps": 20_000,
                                   "log_every_env_steps": 8_000, "checkpoint_every_env_steps": 40_000,
                                   "replay_capacity_per_task": 100_000})),
}
