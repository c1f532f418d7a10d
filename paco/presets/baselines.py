"""Table 1's other baselines, on MT10-rand and MT50-rand, each with the settings of its own paper and code
(README, "Settings the paper leaves open", says what was chosen where those disagree)."""

from __future__ import annotations

from paco.config import replace
from paco.config.methods import CAREConfig, FiLMConfig, SoftModulesConfig
from paco.presets import Preset
from paco.presets.paper import BASELINE, MT50, MT50_BUDGET

_MT10 = {
    "film": ("SAC+FiLM: per-feature γ, β of every hidden layer from a learned task embedding",
             replace(BASELINE, network=FiLMConfig())),
    "softmod": ("Soft-Modularization, the official code's routing (2 layers x 2 modules x 256)",
                replace(BASELINE, network=SoftModulesConfig())),
    "care": ("CARE: 4 state encoders mixed by attention over each task's description embedding",
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
