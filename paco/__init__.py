"""PaCo: parameter-compositional multi-task reinforcement learning, and its baselines, in JAX."""

__all__ = ["Agent", "load_agent"]


def __getattr__(name: str):
    # Imported on first use, so that `paco presets` and config handling do not pay for JAX.
    if name in __all__:
        from paco import agent

        return getattr(agent, name)
    raise AttributeError(f"module 'paco' has no attribute {name!r}")
