"""One typed config per method: its own settings and nothing else. `paco.methods` builds each one.

The compositional rows (MT-SAC, multi-head, single-task, PaCo) share `CompositionalConfig`'s fields; the
baselines beside them have their own. `name` is how run directories and the method registry know a method.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal, Union


@dataclass(frozen=True)
class MethodConfig:
    """What every method's actor shares: a tanh-squashed Gaussian with a state-dependent, bounded log-std."""

    name: ClassVar[str]
    log_std_min: float = -10.0
    log_std_max: float = 2.0


@dataclass(frozen=True)
class CompositionalConfig(MethodConfig):
    hidden: tuple[int, ...] = (400, 400, 400)
    """Hidden layer widths of the actor and of each critic."""
    critic_hidden: tuple[int, ...] = ()
    """Hidden layer widths of each critic where they differ from the actor's (McLean et al. 2025: wider critics
    are what a scaled multi-task SAC needs most); empty: `hidden`."""


@dataclass(frozen=True)
class MTSACConfig(CompositionalConfig):
    """MT-SAC: one shared network; the task one-hot is appended to its input."""

    name: ClassVar[str] = "mtsac"


@dataclass(frozen=True)
class MultiHeadConfig(CompositionalConfig):
    """Multi-head SAC: a shared trunk and one output layer per task."""

    name: ClassVar[str] = "multihead"


@dataclass(frozen=True)
class SingleTaskConfig(CompositionalConfig):
    """One independent network per task (trained side by side)."""

    name: ClassVar[str] = "single-task"


@dataclass(frozen=True)
class PaCoConfig(CompositionalConfig):
    """PaCo: every layer's parameters are Φ w_τ, a shared parameter set mixed by a learned task vector."""

    name: ClassVar[str] = "paco"
    num_components: int = 5
    """K, the size of the parameter set Φ."""
    w_init: Literal["normal", "onehot"] = "normal"
    """N(0,1) compositional vectors, or one-hot (needs K = number of tasks)."""
    w_unit_norm: bool = False
    """Use w / |w| (the paper's K=2 visualisation on the unit circle)."""
    composition: Literal["ac-shared", "actor-only", "output-only"] = "ac-shared"
    """Compose all layers of actor and critics, only the actor's (MT-SAC critic), or only the output layers."""
    w_lr: float = 3e-4
    """Adam learning rate of the compositional vectors w."""


@dataclass(frozen=True)
class FiLMConfig(CompositionalConfig):
    """SAC+FiLM: each hidden layer's features are scaled and shifted per feature by the task's γ, β."""

    name: ClassVar[str] = "film"
    task_embedding_dim: int = 50
    """Width of the learned task embedding that the FiLM generator reads."""
    generator_hidden: tuple[int, ...] = (50, 50)
    """Hidden widths of the MLP that maps the task embedding to every layer's γ and β."""


@dataclass(frozen=True)
class SoftModulesConfig(MethodConfig):
    """Soft-Modularization (Yang et al. 2020), routed as in the authors' official code."""

    name: ClassVar[str] = "softmod"
    trunk_width: int = 400
    """Width of the observation trunk f(s) and of the task embedding z."""
    gating_width: int = 256
    """Width of the routing network's gating trunk."""
    num_layers: int = 2
    """L, layers of modules (the official MT10 'shallow' network: 2)."""
    num_modules: int = 2
    """n, modules per layer (official MT10 'shallow': 2)."""
    module_width: int = 256
    """Output width of every module (official MT10 'shallow': 256)."""


@dataclass(frozen=True)
class CAREConfig(CompositionalConfig):
    """CARE (Sodhani et al. 2021): a mixture of state encoders weighted by attention over a language context."""

    name: ClassVar[str] = "care"
    num_experts: int = 4
    """k, state encoders in the mixture (MTRL's documented MT10 runs: 4)."""
    encoder_dim: int = 50
    """Width of every state encoder's output and of the context encoding."""
    encoder_tau: float = 0.05
    """Polyak rate of the target encoders (context and mixture); the critics' own rate is sac.tau."""


@dataclass(frozen=True)
class MOOREConfig(CompositionalConfig):
    """MOORE (Hendawy et al. 2024): k shared experts made orthonormal per sample, mixed by per-task weights."""

    name: ClassVar[str] = "moore"
    num_experts: int = 4
    """k, expert MLPs (each over `hidden`) in the actor and in each critic (MOORE: 4 for MT10, 6 for MT50)."""


METHOD_CONFIGS: tuple[type[MethodConfig], ...] = (MTSACConfig, MultiHeadConfig, SingleTaskConfig, PaCoConfig,
                                                  FiLMConfig, SoftModulesConfig, CAREConfig, MOOREConfig)
AnyMethodConfig = Union[MTSACConfig, MultiHeadConfig, SingleTaskConfig, PaCoConfig, FiLMConfig, SoftModulesConfig,
                        CAREConfig, MOOREConfig]
BY_NAME: dict[str, type[MethodConfig]] = {c.name: c for c in METHOD_CONFIGS}
