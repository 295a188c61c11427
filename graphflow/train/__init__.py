"""gf.train: optimizers and the Saver."""
from .optimizers import AdamOptimizer, GradientDescentOptimizer, MomentumOptimizer, Optimizer
from .saver import Saver

__all__ = ["Optimizer", "GradientDescentOptimizer", "MomentumOptimizer", "AdamOptimizer", "Saver"]
