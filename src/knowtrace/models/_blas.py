"""Run numpy/scipy linear algebra with a chosen number of BLAS threads.

The estimators multiply tall matrices by thin ones (IRT's E-step over 61 quadrature points) or make
many tiny BLAS calls (L-BFGS in PFA). On a machine whose cores are busy, OpenBLAS threads waiting
for each other made such work 50-190 times slower than one thread in our measurements (a
6000 x 30 by 6000 x 61 product: 190 ms on two threads, 1 ms on one), so fits use one BLAS thread
unless told otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from threadpoolctl import threadpool_limits

__all__ = ["blas_threads"]


@contextmanager
def blas_threads(threads: int | None) -> Iterator[None]:
    """Within the block the BLAS libraries numpy and scipy load use ``threads`` threads (None: as is)."""
    if threads is None:
        yield
        return
    with threadpool_limits(limits=max(1, int(threads)), user_api="blas"):
        yield
