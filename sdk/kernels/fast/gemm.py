"""Integer GEMM cores for the Numba kernels (int32 results, wrapping like C int32).

* ``pack_rows`` / ``pack_cols``: subtract the zero point and lay the operand out as int16
  rows of a common padded depth (``[M, Kp]`` and ``Bᵀ [N, Kp]``), so the product is a set of
  contiguous int16 dot products that LLVM turns into ``vpmaddwd`` (pairs of int16 products
  summed into int32 lanes).
* ``gemm_nt`` / ``gemm_nt_parallel``: ``c[i, j] = Σ_k A[i, k]·Bt[j, k]``. A 4×4 register
  block (:func:`_dot_4x4`, written in LLVM vector IR: 8 vector loads feed 16 multiply-adds
  of int16 pairs into int32 lanes, which LLVM emits as ``vpdpwssd``/``vpmaddwd`` on x86 and
  as widening multiply-adds elsewhere) walks column blocks of ``Bt`` that stay in cache;
  row/column tails use a plain dot product.
* ``gemm_rows``: the i-k-j loop on unpacked operands of any integer dtype, for few rows
  (GEMV) or operands whose centred values do not fit int16.
* Threads: a GEMM of at least :func:`thread_macs` multiply-adds (M·N·K; default
  :data:`THREAD_MACS`, the crossover measured by ``tools/bench_kernels.py --threads``; set
  ``EDGE_GEMM_THREAD_MACS``) spreads its column blocks over ``numba.get_num_threads()``
  threads (``gemm_nt_parallel``; compiled programs call it for those GEMMs); smaller GEMMs
  stay on one thread. The bits do not depend on the thread count.

All paths are exact modulo 2^32, which is the int32 accumulator semantics of the reference.
"""

from __future__ import annotations

import os

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

COL_BLOCK = 64  # columns of Bt per block: 64 rows × Kp int16 stay in L2
K_ALIGN = 32    # pad the depth to whole vectors (the 4×4 block steps 32 int16 at a time)
_LANES = 32     # int16 lanes per step of the 4×4 block
_BLOCK = 4      # rows of A and of Bt per register block
# M·N·K from which two threads beat one on the int8 GEMMs: the crossover tools/bench_kernels.py
# --threads measured on the 2-core Zen 4 this SDK is developed on, shared with other jobs (load
# 4-20; 10 interleaved runs, 2026-12-06): two threads were >= 10% faster only at 1024^3 (VNNI
# kernel in 3 of 10 runs, int16 in 1; never at or below 768^3, never in 6 runs). A dedicated
# device crosses far lower (a run with the second core free: 1.25-1.5x at 128^3-192^3): measure
# there and set EDGE_GEMM_THREAD_MACS
THREAD_MACS = 1 << 30
THREAD_ENV = "EDGE_GEMM_THREAD_MACS"


def thread_macs() -> int:
    """M·N·K from which a GEMM uses threads: ``$EDGE_GEMM_THREAD_MACS`` or :data:`THREAD_MACS`."""
    raw = os.environ.get(THREAD_ENV, "").strip()
    if not raw:
        return THREAD_MACS
    try:
        v = int(raw)
    except ValueError:
        v = -1
    if v < 1:
        raise ValueError(f"{THREAD_ENV}={raw!r} is not a positive integer (the M·N·K from which "
                         f"an int8 GEMM uses threads, default {THREAD_MACS}); set it or unset it")
    return v


def gemm_nt_for(m: int, n: int, k: int):
    """:func:`gemm_nt_parallel` for a GEMM of at least :func:`thread_macs` M·N·K when Numba
    may use more than one thread, else :func:`gemm_nt` (for callers that bind a kernel once)."""
    if int(numba.config.NUMBA_NUM_THREADS) > 1 and threads_pay(m, n, k):
        return gemm_nt_parallel
    return gemm_nt


def thread_note() -> str:
    """One line for ``edge inspect``: how many threads a large GEMM gets, from what size."""
    n = int(numba.config.NUMBA_NUM_THREADS)
    if n < 2:
        return "one thread (NUMBA_NUM_THREADS=1)"
    return f"{n} threads from M·N·K ≥ {thread_macs():,}, one below"


def threads_pay(m: int, n: int, k: int) -> bool:
    """Whether an ``m``×``k`` by ``k``×``n`` GEMM is large enough for threads (the thread
    count itself is Numba's, checked when the GEMM runs)."""
    return m * n * k >= thread_macs()


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


@intrinsic
def _dot_4x4(typingctx, a, bt, c, i, j):  # pragma: no cover - compiled
    """``c[i+r, j+s] = Σ_k a[i+r, k]·bt[j+s, k]`` for r, s in 0..3, as int32 (mod 2^32).

    ``a``/``bt``: C-contiguous int16 with ``Kp`` (a multiple of 32) columns; ``c``: int32 rows
    with unit element stride. Per step of 32 int16: 4 + 4 vector loads, 16 products of
    sign-extended lanes, each summed over (even, odd) lane pairs into 16 int32 lanes — the
    shape of ``pmaddwd``/``vpdpwssd``, which LLVM selects on x86.
    """
    sig = types.void(a, bt, c, i, j)

    def codegen(context, builder, signature, args):
        at, btt, ct = signature.args[:3]
        aa = cgutils.create_struct_proxy(at)(context, builder, value=args[0])
        bb = cgutils.create_struct_proxy(btt)(context, builder, value=args[1])
        cc = cgutils.create_struct_proxy(ct)(context, builder, value=args[2])
        row0, col0 = args[3], args[4]
        i64, i32, i16 = ir.IntType(64), ir.IntType(32), ir.IntType(16)
        byte_ptr = ir.IntType(8).as_pointer()
        v16 = ir.VectorType(i16, _LANES)
        wide = ir.VectorType(i32, _LANES)
        half = ir.VectorType(i32, _LANES // 2)
        kp = builder.extract_value(aa.shape, 1)
        lda = builder.extract_value(aa.strides, 0)
        ldb = builder.extract_value(bb.strides, 0)
        ldc = builder.extract_value(cc.strides, 0)
        abase = builder.bitcast(aa.data, byte_ptr)
        bbase = builder.bitcast(bb.data, byte_ptr)

        def row_ptr(base, first, r, stride):
            return builder.gep(base, [builder.mul(builder.add(first, ir.Constant(i64, r)),
                                                  stride)])

        arow = [row_ptr(abase, row0, r, lda) for r in range(_BLOCK)]
        brow = [row_ptr(bbase, col0, s, ldb) for s in range(_BLOCK)]
        acc = [[cgutils.alloca_once_value(builder, ir.Constant(half, None))
                for _ in range(_BLOCK)] for _ in range(_BLOCK)]
        even = ir.Constant(half, [2 * t for t in range(_LANES // 2)])
        odd = ir.Constant(half, [2 * t + 1 for t in range(_LANES // 2)])
        steps = builder.udiv(kp, ir.Constant(i64, _LANES))
        with cgutils.for_range(builder, steps) as loop:
            off = builder.mul(loop.index, ir.Constant(i64, 2 * _LANES))

            def load(rowp):
                p = builder.bitcast(builder.gep(rowp, [off]), v16.as_pointer())
                return builder.sext(builder.load(p, align=2), wide)

            va = [load(p) for p in arow]
            vb = [load(p) for p in brow]
            for r in range(_BLOCK):
                for s in range(_BLOCK):
                    prod = builder.mul(va[r], vb[s])
                    pairs = builder.add(builder.shuffle_vector(prod, prod, even),
                                        builder.shuffle_vector(prod, prod, odd))
                    builder.store(builder.add(builder.load(acc[r][s]), pairs), acc[r][s])
        reduce_add = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(i32, [half]),
            f"llvm.vector.reduce.add.v{_LANES // 2}i32")
        cbase = builder.bitcast(cc.data, byte_ptr)
        for r in range(_BLOCK):
            crow = row_ptr(cbase, row0, r, ldc)
            for s in range(_BLOCK):
                col = builder.mul(builder.add(col0, ir.Constant(i64, s)), ir.Constant(i64, 4))
                dst = builder.bitcast(builder.gep(crow, [col]), i32.as_pointer())
                builder.store(builder.call(reduce_add, [builder.load(acc[r][s])]), dst)
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True)
def _dot(ai, bj):  # pragma: no cover - compiled
    s = np.int32(0)
    for k in range(ai.size):
        s += np.int32(ai[k]) * np.int32(bj[k])
    return s


@njit(cache=True)
def _dot_block(a, bt, c, j0, j1):  # pragma: no cover - compiled
    """Columns ``j0:j1`` of ``c``: 4×4 register blocks, plain dots on the tails."""
    m = a.shape[0]
    m4 = m - m % _BLOCK
    j4 = j0 + (j1 - j0) - (j1 - j0) % _BLOCK
    for i in range(0, m4, _BLOCK):
        for j in range(j0, j4, _BLOCK):
            _dot_4x4(a, bt, c, i, j)
    for i in range(m):
        for j in range(j4 if i < m4 else j0, j1):
            c[i, j] = _dot(a[i], bt[j])


@njit(cache=True)
def _check_nt(a, bt, c):  # pragma: no cover - compiled
    # _dot_4x4 reads raw memory: shapes must match exactly
    if (a.shape[1] != bt.shape[1] or a.shape[1] % K_ALIGN != 0 or c.shape[0] != a.shape[0]
            or c.shape[1] != bt.shape[0] or c.strides[1] != 4 or a.strides[1] != 2
            or bt.strides[1] != 2):
        raise ValueError("gemm_nt needs a [M, Kp], bt [N, Kp] with Kp % 32 == 0 and c [M, N] "
                         "with contiguous rows")


@njit(cache=True)
def gemm_nt(a, bt, c):  # pragma: no cover - compiled
    """``c[i, j] = Σ_k a[i, k]·bt[j, k]`` (int16 operands with a depth padded to a multiple
    of 32, int32 ``c``), one thread."""
    _check_nt(a, bt, c)
    n = bt.shape[0]
    for j0 in range(0, n, COL_BLOCK):
        _dot_block(a, bt, c, j0, min(j0 + COL_BLOCK, n))


@njit(cache=True, parallel=True)
def gemm_nt_parallel(a, bt, c):  # pragma: no cover - compiled
    """:func:`gemm_nt` with column blocks spread over ``numba.get_num_threads()`` threads."""
    _check_nt(a, bt, c)
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


@njit(cache=True)
def gemv_nt(a, w, a_zp, c):  # pragma: no cover - compiled
    """``c[i, n] = Σ_k (a[i, k] − a_zp)·w[n, k]`` mod 2^32 on unpacked row-major operands (few
    rows: no packing pass over the weights)."""
    m, k = a.shape
    n_out = w.shape[0]
    zp = np.int32(a_zp)
    for i in range(m):
        ai = a[i]
        for n in range(n_out):
            wn = w[n]
            s = np.int32(0)
            for kk in range(k):
                s += (np.int32(ai[kk]) - zp) * np.int32(wn[kk])
            c[i, n] = s


def fits_int16(x: np.ndarray, zp: int) -> bool:
    """Whether every ``x − zp`` fits int16 (then the packed ``vpmaddwd`` path is exact)."""
    if x.size == 0:
        return True
    return int(x.min()) - zp >= -32768 and int(x.max()) - zp <= 32767


def matmul_2d(a: np.ndarray, b: np.ndarray, a_zp: int, b_zp: int,
              parallel: bool | None = None) -> np.ndarray:
    """int32 ``(a − a_zp) @ (b − b_zp)`` for 2-D ``a [M, K]``, ``b [K, N]``; ``parallel``
    None: threads from :func:`thread_macs` multiply-adds on (when Numba has more than one)."""
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
    if m >= _BLOCK and fits_int16(a, a_zp) and fits_int16(b, b_zp):
        kp = padded_depth(k)
        pa = pack_rows(a, np.int64(a_zp), kp)
        pb = pack_cols(b, np.int64(b_zp), kp)
        if parallel is None:
            parallel = threads_pay(m, n, k) and numba.get_num_threads() > 1
        (gemm_nt_parallel if parallel else gemm_nt)(pa, pb, c)
    else:
        gemm_rows(a, b, np.int64(a_zp), np.int64(b_zp), c)
    return c


def matmul_nt_2d(a: np.ndarray, w: np.ndarray, a_zp: int, parallel: bool | None = None
                 ) -> np.ndarray:
    """int32 ``(a − a_zp) @ wᵀ`` for ``a [M, K]`` and row-major weights ``w [N, K]``
    (``parallel`` as in :func:`matmul_2d`)."""
    m, k = a.shape
    n = w.shape[0]
    c = np.empty((m, n), np.int32)
    if m == 0 or n == 0:
        return c
    if k == 0:
        c[...] = 0
        return c
    if m >= _BLOCK and fits_int16(a, a_zp) and fits_int16(w, 0):
        kp = padded_depth(k)
        pa = pack_rows(np.ascontiguousarray(a), np.int64(a_zp), kp)
        pw = pack_rows(np.ascontiguousarray(w), np.int64(0), kp)
        if parallel is None:
            parallel = threads_pay(m, n, k) and numba.get_num_threads() > 1
        (gemm_nt_parallel if parallel else gemm_nt)(pa, pw, c)
    elif fits_int16(a, a_zp):
        gemv_nt(np.ascontiguousarray(a), np.ascontiguousarray(w), np.int64(a_zp), c)
    else:
        gemm_rows(np.ascontiguousarray(a), np.ascontiguousarray(w.T), np.int64(a_zp),
                  np.int64(0), c)
    return c
