"""Table 1's other baselines and the methods researchers compare with since, on MT10-rand and MT50-rand, each
with the settings of its own paper and code (README, "Settings the paper leaves open", says what was chosen where
those disagree). Every one runs as the paper ran its baselines: stop-relaunch, no loss maskout."""

from __future__ import annotations

from paco.config import replace
from paco.config.methods import CAREConfig, FiLMConfig, MOOREConfig, MultiHeadConfig, SoftModulesConfig
from paco.presets import Preset
from paco.presets.paper import BASELINE, MT50, MT50_BUDGET

_MT10 = {
    "film": ("SAC+FiLM: per-feature γ, β of every hidden layer from a learned task embedding",
             replace(BASELINE, network=FiLMConfig())),
    "softmod": ("Soft-Modularization, the official code's routing (2 layers x 2 modules x 256)",
                replace(BASELINE, network=SoftModulesConfig())),
    "care": ("CARE: state encoders (MT10: 4, MT50: 10) mixed by attention over each task's description embedding",
             replace(BASELINE, network=CAREConfig(num_experts=4))),
    "pcgrad": ("PCGrad on MT-SAC's network: per-task gradients projected apart (Yu et al. 2020)",
               replace(BASELINE, optim={"surgery": "pcgrad"})),
}
_MT50_NETWORK = {"care": {"num_experts": 10}}

PRESETS: dict[str, Preset] = {}
for _name, (_doc, _config) in _MT10.items():
    PRESETS[f"mt10-rand-{_name}"] = Preset("Table 1", f"{_doc}, MT10-rand, 20M steps", _config)
    PRESETS[f"mt50-rand-{_name}"] = Preset(
        "Appendix", f"{_doc}, MT50-rand, 2M steps per task",
        replace(_config, env=MT50, train=MT50_BUDGET, network=_MT50_NETWORK.get(_name, {})))

# Beyond the paper: MOORE (ICLR 2024), GradNorm, and multi-head SAC scaled to PaCo's parameter count with wider
# critics (McLean et al., RLJ 2025): 4.90M parameters on MT10 against PaCo's 5.09M.
_MOORE = replace(BASELINE, network=MOOREConfig(num_experts=4))
PRESETS.update({
    "mt10-rand-moore": Preset("Beyond", "MOORE: 4 orthogonalised experts, per-task heads, MT10-rand, 20M steps",
                              _MOORE),
    "mt50-rand-moore": Preset("Beyond", "MOORE: 6 orthogonalised experts, MT50-rand, 2M steps per task",
                              replace(_MOORE, env=MT50, network={"num_experts": 6},
                                      train={**MT50_BUDGET, "replay_capacity_per_task": 100_000})),
    "mt10-rand-gradnorm": Preset("Beyond", "GradNorm (alpha 0.12) on MT-SAC's network, MT10-rand, 20M steps",
                                 replace(BASELINE, optim={"surgery": "gradnorm"})),
    "mt10-rand-mhsac-wide": Preset("Beyond", "Multi-head SAC at PaCo's parameter count: actor 3x512, critics "
                                   "3x1024 (McLean et al. 2025)",
                                   replace(BASELINE, network=MultiHeadConfig(hidden=(512, 512, 512),
                                                                             critic_hidden=(1024, 1024, 1024)))),
})
