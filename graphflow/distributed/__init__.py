"""gf.distributed: data-parallel training over MPI (mpi4py), Horovod-style.

    gf.distributed.init(); rank = gf.distributed.rank(); n = gf.distributed.size()
    opt = gf.distributed.DistributedOptimizer(gf.train.AdamOptimizer(1e-3))
    train = opt.minimize(loss)
    sess.run(gf.global_variables_initializer()); sess.run(gf.distributed.broadcast_variables())

Run with `mpirun -np 2 python train.py`; each rank feeds its own shard of the batch.
"""
from .comm import STATS, DistributedError, init, rank, size
from .ops import allreduce
from .optimizer import DEFAULT_BUCKET_BYTES, DistributedOptimizer, allreduce_gradients, broadcast_variables

__all__ = ["init", "rank", "size", "allreduce", "DistributedOptimizer", "broadcast_variables",
           "allreduce_gradients",
           "DistributedError", "DEFAULT_BUCKET_BYTES", "STATS"]
