"""The paper's own experiments: PaCo's rows of Tables 1-3, Figure 3 and the appendix, and the SAC rows of
the unified view (MT-SAC, multi-head, single-task), all with the authors' settings."""

from __future__ import annotations

from paco.config import Config, replace
from paco.config.methods import MultiHeadConfig, PaCoConfig, SingleTaskConfig
from paco.presets import Preset

PAPER = Config()  # MT10-rand, MT-SAC network, authors' settings, 20M env steps
# The baselines of Table 1 ran as the paper ran them: stop-relaunch, no loss maskout.
BASELINE = replace(PAPER, stability={"mode": "vanilla", "relaunch": True})
MT50 = {"suite": "MT50"}
MT50_BUDGET = {"total_env_steps": 100_000_000}  # 2M env steps per task
MT3 = "reach,push,peg-insert-side"


def paco(**network) -> Config:
    return replace(PAPER, network=PaCoConfig(**network))


PRESETS: dict[str, Preset] = {
    "mt10-rand-mtsac": Preset("Table 1", "MT-SAC on MT10-rand (one-hot task id input), 20M steps", BASELINE),
    "mt10-rand-mhsac": Preset("Table 1", "Multi-head SAC on MT10-rand (one output head per task)",
                              replace(BASELINE, network=MultiHeadConfig())),
    "mt10-rand-single-task": Preset("Reference", "Single-task SAC on each MT10-rand task (K=T, one-hot frozen w), "
                                    "2M per task", replace(BASELINE, network=SingleTaskConfig())),
    "mt10-rand-paco": Preset("Table 1", "PaCo on MT10-rand, K=5, Reset (maskout + w-reset), eps=3e3", paco()),
    "mt10-rand-paco-maskout": Preset("Table 2", "PaCo with loss maskout only",
                                     replace(paco(), stability={"mode": "maskout"})),
    "mt10-rand-paco-vanilla": Preset("Table 2", "PaCo without maskout or w-reset",
                                     replace(paco(), stability={"mode": "vanilla"})),
    "mt10-rand-paco-k3": Preset("Table 3a", "PaCo with K=3", paco(num_components=3)),
    "mt10-rand-paco-k8": Preset("Table 3a", "PaCo with K=8", paco(num_components=8)),
    "mt10-rand-paco-k10-onehot": Preset("Table 3a", "PaCo with K=10 and one-hot initialised w",
                                        paco(num_components=10, w_init="onehot")),
    "mt10-rand-paco-output-only": Preset("Table 3b", "PaCo, composition on the output layers only",
                                         paco(composition="output-only")),
    "mt10-rand-paco-actor-only": Preset("Table 3b", "PaCo, composition on the actor only (MT-SAC critic)",
                                        paco(composition="actor-only")),
    "mt3-rand-paco-k2-unit": Preset("Figure 3", "reach, push, peg-insert-side; K=2, w on the unit circle",
                                    replace(paco(num_components=2, w_unit_norm=True), env={"suite": MT3},
                                            train={"total_env_steps": 6_000_000})),
    "mt10-paco": Preset("Appendix", "PaCo on MT10 with fixed goals", replace(paco(), env={"random_goals": False})),
    "mt10-mtsac": Preset("Appendix", "MT-SAC on MT10 with fixed goals",
                         replace(BASELINE, env={"random_goals": False})),
    "mt50-rand-paco": Preset("Appendix", "PaCo on MT50-rand, 2M steps per task",
                             replace(paco(), env=MT50, train=MT50_BUDGET)),
    "mt50-rand-mtsac": Preset("Appendix", "MT-SAC on MT50-rand, 2M steps per task",
                              replace(BASELINE, env=MT50, train=MT50_BUDGET)),
}
