"""Integer GEMM cores for the Numba kernels (int32 results, wrapping like C int32).

* ``pack_rows`` / ``pack_cols``: subtract the zero point and lay the operand out as int16
  rows of a common padded depth (``[M, Kp]`` and ``Bᵀ [N, Kp]``), so the product is a set of
  contiguous int16 dot products that LLVM turns into ``vpmaddwd`` (pairs of int16 products
  summed into int32 lanes).
* ``gemm_nt`` / ``gemm_nt_parallel``: ``c[i, j] = Σ_k A[i, k]·Bt[j, k]``, blocked over
  columns so a block of ``Bt`` stays in cache while the rows of ``A`` stream past it.
* ``gemm_rows``: the i-k-j loop on unpacked operands of any integer dtype, for few rows
  (GEMV) or operands whose centred values do not fit int16.

All paths are exact modulo 2^32, which is the int32 accumulator semantics of the reference.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

COL_BLOCK = 32  # columns of Bt per block: 32 rows × Kp int16 stay in L1/L2
K_ALIGN = 32    # pad the depth to whole vectors


def padded_depth(k: int) -> int:
    return max((k + K_ALIGN - 1) // K_ALIGN * K_ALIGN, K_ALIGN)


@njit(cache=True)
def pack_rows(a, zp, kp):  # pragma: no cover - compiled
    """``out[i, k] = a[i, k] − zp`` as int16, zero for ``k ≥ K``."""
    m, k = a.shape
    out = np.zeros((m, kp), np.int16)
    for i in range(m):
        for j in range(k):
            out[i, j] = np.int16(np.int64(a[i, j]) - zp)
    return out


@njit(cache=True)
def pack_cols(b, zp, kp):  # pragma: no cover - compiled
    """``out[j, k] = b[k, j] − zp`` as int16 (a blocked transpose), zero for ``k ≥ K``."""
    k, n = b.shape
    out = np.zeros((n, kp), np.int16)
    for k0 in range(0, k, 16):
        for j0 in range(0, n, 16):
            for kk in range(k0, min(k0 + 16, k)):
                for j in range(j0, min(j0 + 16, n)):
                    out[j, kk] = np.int16(np.int64(b[kk, j]) - zp)
    return out


@njit(cache=True)
def _dot_block(a, bt, c, j0, j1):  # pragma: no cover - compiled
    m = a.shape[0]
    kp = a.shape[1]
    for i in range(m):
        ai = a[i]
        for j in range(j0, j1):
            bj = bt[j]
            s = np.int32(0)
            for k in range(kp):
                s += np.int32(ai[k]) * np.int32(bj[k])
            c[i, j] = s


@njit(cache=True)
def gemm_nt(a, bt, c):  # pragma: no cover - compiled
    """``c[i, j] = Σ_k a[i, k]·bt[j, k]`` (int16 operands, int32 ``c``), one thread."""
    n = bt.shape[0]
    for j0 in range(0, n, COL_BLOCK):
        _dot_block(a, bt, c, j0, min(j0 + COL_BLOCK, n))


@njit(cache=True, parallel=True)
def gemm_nt_parallel(a, bt, c):  # pragma: no cover - compiled
    """:func:`gemm_nt` with column blocks spread over ``numba.get_num_threads()`` threads."""
    n = bt.shape[0]
    nblocks = (n + COL_BLOCK - 1) // COL_BLOCK
    for b in prange(nblocks):
        _dot_block(a, bt, c, b * COL_BLOCK, min(b * COL_BLOCK + COL_BLOCK, n))


@njit(cache=True)
def gemm_rows(a, b, a_zp, b_zp, c):  # pragma: no cover - compiled
    """``c[i, j] = Σ_k (a[i, k] − a_zp)(b[k, j] − b_zp)`` mod 2^32, i-k-j order, any dtypes."""
    m, k = a.shape
    n = b.shape[1]
    for i in range(m):
        ci = c[i]
        for j in range(n):
            ci[j] = 0
        for kk in range(k):
            av = np.int64(a[i, kk]) - a_zp
            bk = b[kk]
            for j in range(n):
                ci[j] += av * (np.int64(bk[j]) - b_zp)


def fits_int16(x: np.ndarray, zp: int) -> bool:
    """Whether every ``x − zp`` fits int16 (then the packed ``vpmaddwd`` path is exact)."""
    if x.size == 0:
        return True
    return int(x.min()) - zp >= -32768 and int(x.max()) - zp <= 32767


def matmul_2d(a: np.ndarray, b: np.ndarray, a_zp: int, b_zp: int,
              parallel: bool = False) -> np.ndarray:
    """int32 ``(a − a_zp) @ (b − b_zp)`` for 2-D ``a [M, K]``, ``b [K, N]``."""
    m, k = a.shape
    n = b.shape[1]
    c = np.empty((m, n), np.int32)
    if m == 0 or n == 0:
        return c
    if k == 0:
        c[...] = 0
        return c
    a = np.ascontiguousarray(a)
    b = np.ascontiguousarray(b)
    if m >= 4 and fits_int16(a, a_zp) and fits_int16(b, b_zp):
        kp = padded_depth(k)
        pa = pack_rows(a, np.int64(a_zp), kp)
        pb = pack_cols(b, np.int64(b_zp), kp)
        (gemm_nt_parallel if parallel else gemm_nt)(pa, pb, c)
    else:
        gemm_rows(a, b, np.int64(a_zp), np.int64(b_zp), c)
    return c


def matmul_nt_2d(a: np.ndarray, w: np.ndarray, a_zp: int, parallel: bool = False
                 ) -> np.ndarray:
    """int32 ``(a − a_zp) @ wᵀ`` for ``a [M, K]`` and row-major weights ``w [N, K]``."""
    m, k = a.shape
    n = w.shape[0]
    c = np.empty((m, n), np.int32)
    if m == 0 or n == 0:
        return c
    if k == 0:
        c[...] = 0
        return c
    if fits_int16(a, a_zp) and fits_int16(w, 0) and m >= 4:
        kp = padded_depth(k)
        pa = pack_rows(np.ascontiguousarray(a), np.int64(a_zp), kp)
        pw = pack_rows(np.ascontiguousarray(w), np.int64(0), kp)
        (gemm_nt_parallel if parallel else gemm_nt)(pa, pw, c)
    else:
        gemm_rows(np.ascontiguousarray(a), np.ascontiguousarray(w.T), np.int64(a_zp),
                  np.int64(0), c)
    return c
