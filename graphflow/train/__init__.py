"""gf.train: optimizers, learning-rate schedules, the global step and the Saver."""
from .optimizers import (
    AdagradOptimizer,
    AdamOptimizer,
    AdamWOptimizer,
    GradientDescentOptimizer,
    MomentumOptimizer,
    Optimizer,
    RMSPropOptimizer,
)
from .saver import Saver
from .schedules import (
    cosine_decay,
    create_global_step,
    exponential_decay,
    get_global_step,
    get_or_create_global_step,
    linear_warmup,
    piecewise_constant,
    polynomial_decay,
)

__all__ = ["Optimizer", "GradientDescentOptimizer", "MomentumOptimizer", "AdamOptimizer",
           "AdamWOptimizer", "RMSPropOptimizer", "AdagradOptimizer", "Saver", "cosine_decay",
           "create_global_step", "exponential_decay", "get_global_step",
           "get_or_create_global_step", "linear_warmup", "piecewise_constant",
           "polynomial_decay"]
