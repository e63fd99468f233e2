"""CPU threads on a small machine: a query's steps share the cores.

numpy's BLAS (OpenBLAS) keeps its worker threads spinning for a while after each matrix product
(the gallery search); on 2 cores they then compete with torch's threads for the next steps of
the same and the next query (MTCNN, FaceNet), which ran 2x slower: with a 2,000-face FaceNet
gallery detect 39 vs 19 ms and embed 61 vs 32 ms a photo; on full LFW with SFace one query took
64 ms p50 / 147 ms p95 with two BLAS threads, 41 / 49 ms with one. A gallery search is one small
matrix product per query, which one thread does in about a millisecond.
"""

from __future__ import annotations


def limit_blas_threads(n: int) -> None:
    """Cap numpy's BLAS threads for this process (`Config.blas_threads`; 0 leaves them)."""
    if n <= 0:
        return
    from threadpoolctl import threadpool_limits

    threadpool_limits(n, user_api="blas")
