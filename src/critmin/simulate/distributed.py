"""Dask execution: connect to a scheduler (``--dask tcp://HOST:PORT``) or start a local cluster (``--workers N``).

Chunks are shipped to the workers with :func:`critmin.simulate.run.run_chunk`; randomness is keyed by node,
scenario and family, so results equal the single-process run for the same seed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def dask_client(address: str | None = None, workers: int | None = None) -> Iterator[Any]:
    """A ``distributed.Client`` for the address or a local cluster of ``workers`` processes; None if neither."""
    if not address and not workers:
        yield None
        return
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:  # an optional extra
        from critmin.errors import CritminError

        raise CritminError("--workers and --dask need the dask extra: pip install 'critmin[dask]'") from exc

    if address:
        client = Client(address)
        try:
            yield client
        finally:
            client.close()
        return
    import dask

    # Dask's nanny sets MALLOC_TRIM_THRESHOLD_=65536 in workers; setting it also switches off glibc's dynamic
    # mmap threshold, so every chunk array (> 128 kB) is mmapped and unmapped and its pages fault in again:
    # system time tripled the run time in the benchmark. Chunks are bounded (run.CHUNK_ELEMENTS), so serving
    # them from the heap is safe.
    env = {"MALLOC_TRIM_THRESHOLD_": 1 << 30, "MALLOC_MMAP_THRESHOLD_": 1 << 28}
    with dask.config.set({f"distributed.nanny.pre-spawn-environ.{k}": v for k, v in env.items()}):
        cluster = LocalCluster(n_workers=int(workers or 1), threads_per_worker=1, processes=True, dashboard_address=None)
    client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()
