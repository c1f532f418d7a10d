"""Optimisers over per-task gradients: gradient surgery as optax transformations.

Each surgery maps a tree of per-task gradients (leading task axis) to one gradient; `make_optimizer` in
`paco.sac` puts one before Adam in every parameter group. The registry is a dict of factories
`(optim config, parameter group, group index, number of tasks) -> transformation`.
"""

from paco.optim.gradnorm import gradnorm
from paco.optim.pcgrad import pcgrad

SURGERIES = {
    "pcgrad": lambda config, group, index, num_tasks: pcgrad(seed=index),
    "gradnorm": lambda config, group, index, num_tasks: gradnorm(
        num_tasks, config.gradnorm_alpha, config.gradnorm_lr, config.gradnorm_layer, loss=group),
}

__all__ = ["SURGERIES", "gradnorm", "pcgrad"]
