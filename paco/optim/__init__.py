"""Optimisers over per-task gradients: gradient surgery as optax transformations.

Each surgery maps a tree of per-task gradients (leading task axis) to one gradient; `make_optimizer` in
`paco.sac` puts it before Adam in every parameter group. The registry is a dict.
"""

from paco.optim.pcgrad import pcgrad

SURGERIES = {"pcgrad": pcgrad}

__all__ = ["SURGERIES", "pcgrad"]
