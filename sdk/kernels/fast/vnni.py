"""int8 GEMM on the u8×s8 dot-product instruction (AVX-512 VNNI ``vpdpbusd``), picked at load
time from the CPU's features, with the zero-point correction that keeps it bit-exact.

``vpdpbusd`` multiplies 64 unsigned bytes by 64 signed bytes and adds each group of four
products to one of 16 int32 lanes (no saturation: the products fit int16 and the sums wrap like
C int32). Activations are signed, so they are stored shifted to unsigned
(``x_u = x + 128``, the sign bit flipped) and the shift is corrected with the weight sums:

    Σ_k (x − x_zp)·w = Σ_k x_u·w − (128 + x_zp)·Σ_k w        (mod 2^32, exact)

(for uint8 activations ``x_u = x`` and the correction is ``x_zp·Σ w``). Layout: ``a_u8 [M, Kp]``
and ``w_s8 [N, Kp]`` with the depth padded with zeros to a multiple of 64 (zero weights add
nothing). The 4×4 register block keeps 16 accumulators of 16 lanes and issues 16
``vpdpbusd`` per 64-byte step; the last ``M mod 4`` rows (every row of a GEMV) take 1×4
blocks, the last ``N mod 4`` columns a scalar dot product.

``HAS_VNNI`` says whether this CPU has the instruction (LLVM's host feature ``avx512vnni``);
without it callers keep the portable int16 path of :mod:`sdk.kernels.fast.gemm` (Pi 4's A72,
older x86). ARMv8.2 dot-product cores use ``sdot`` (:mod:`sdk.kernels.fast.armdot`);
:func:`gemm_path` names the path this CPU gets. ``gemm_u8s8_parallel`` spreads
the column blocks over threads (same bits; see ``thread_macs`` in
:mod:`sdk.kernels.fast.gemm`).
"""

from __future__ import annotations

import numpy as np
from llvmlite import binding, ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from sdk.kernels.fast.requant import requant, wrap32

K_ALIGN = 64  # bytes per vpdpbusd step
_BLOCK = 4


def _host_features() -> set[str]:
    try:
        text = binding.get_host_cpu_features().flatten()
    except RuntimeError:  # pragma: no cover - an LLVM without feature queries
        return set()
    return {f[1:] for f in text.split(",") if f.startswith("+")}


HAS_VNNI = "avx512vnni" in _host_features() and "avx512bw" in _host_features()


def gemm_path() -> str:
    """The int8 GEMM path this process uses, picked from the CPU's features: ``"vnni ..."``
    (AVX-512 VNNI ``vpdpbusd``), ``"sdot ..."`` (ARMv8.2 dot product, ``asimddp``),
    ``"int16 ..."`` (operands widened to int16, pairs multiplied and added by
    ``vpmaddwd``/``vpdpwssd`` on AVX2/AVX-512BW or NEON's ``smlal``, vectorised by LLVM) or
    ``"portable ..."`` (the same loops, scalar)."""
    from sdk.kernels.fast.armdot import HAS_SDOT

    if HAS_VNNI:
        return "vnni (avx512-vnni vpdpbusd, u8×s8)"
    if HAS_SDOT:
        return "sdot (armv8.2 dotprod sdot, s8×s8)"
    feats = _host_features()
    if feats & {"avx2", "avx512bw", "neon"}:
        simd = "neon" if "neon" in feats else ("avx512bw" if "avx512bw" in feats else "avx2")
        return f"int16 ({simd} int16 pair multiply-add)"
    return "portable (scalar int32 loops)"


def padded_depth(k: int) -> int:
    return max((k + K_ALIGN - 1) // K_ALIGN * K_ALIGN, K_ALIGN)


@njit(cache=True)
def pack_u8(a, kp):  # pragma: no cover - compiled
    """``out[i, k] = a[i, k] + 128`` (int8 → uint8, the sign bit flipped), 0 for ``k ≥ K``
    (the padding pairs with zero weights)."""
    m, k = a.shape
    out = np.zeros((m, kp), np.uint8)
    for i in range(m):
        for j in range(k):
            out[i, j] = np.uint8(np.int32(a[i, j]) + 128)
    return out


def pack_s8(w: np.ndarray, kp: int) -> np.ndarray:
    """Weights ``[N, K]`` int8 as ``[N, Kp]`` with zero padding."""
    out = np.zeros((w.shape[0], kp), np.int8)
    out[:, :w.shape[1]] = w
    return out


def _make_dot(rows: int, cols: int):
    """The ``rows``×``cols`` register block: ``c[i+r, j+s] = Σ_k a[i+r, k]·bt[j+s, k]``
    (u8 × s8, int32 mod 2^32). ``a`` uint8 / ``bt`` int8, C-contiguous rows of ``Kp`` bytes
    (a multiple of 64); ``c`` int32 rows with unit element stride. Per 64-byte step:
    ``rows + cols`` vector loads and ``rows·cols`` ``vpdpbusd``."""

    @intrinsic
    def dot_block(typingctx, a, bt, c, i, j):  # pragma: no cover - compiled
        sig = types.void(a, bt, c, i, j)

        def codegen(context, builder, signature, args):
            at, btt, ct = signature.args[:3]
            aa = cgutils.create_struct_proxy(at)(context, builder, value=args[0])
            bb = cgutils.create_struct_proxy(btt)(context, builder, value=args[1])
            cc = cgutils.create_struct_proxy(ct)(context, builder, value=args[2])
            row0, col0 = args[3], args[4]
            i64, i32 = ir.IntType(64), ir.IntType(32)
            byte_ptr = ir.IntType(8).as_pointer()
            v16 = ir.VectorType(i32, 16)
            kp = builder.extract_value(aa.shape, 1)
            lda = builder.extract_value(aa.strides, 0)
            ldb = builder.extract_value(bb.strides, 0)
            ldc = builder.extract_value(cc.strides, 0)
            abase = builder.bitcast(aa.data, byte_ptr)
            bbase = builder.bitcast(bb.data, byte_ptr)

            def row_ptr(base, first, r, stride):
                return builder.gep(base, [builder.mul(builder.add(first, ir.Constant(i64, r)),
                                                      stride)])

            arow = [row_ptr(abase, row0, r, lda) for r in range(rows)]
            brow = [row_ptr(bbase, col0, s, ldb) for s in range(cols)]
            acc = [[cgutils.alloca_once_value(builder, ir.Constant(v16, None))
                    for _ in range(cols)] for _ in range(rows)]
            dp = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(v16, [v16] * 3), "llvm.x86.avx512.vpdpbusd.512")
            steps = builder.udiv(kp, ir.Constant(i64, K_ALIGN))
            with cgutils.for_range(builder, steps) as loop:
                off = builder.mul(loop.index, ir.Constant(i64, K_ALIGN))

                def load(rowp):
                    p = builder.bitcast(builder.gep(rowp, [off]), v16.as_pointer())
                    return builder.load(p, align=1)

                va = [load(p) for p in arow]
                vb = [load(p) for p in brow]
                for r in range(rows):
                    for s in range(cols):
                        builder.store(builder.call(dp, [builder.load(acc[r][s]), va[r], vb[s]]),
                                      acc[r][s])
            reduce_add = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(i32, [v16]), "llvm.vector.reduce.add.v16i32")
            cbase = builder.bitcast(cc.data, byte_ptr)
            for r in range(rows):
                crow = row_ptr(cbase, row0, r, ldc)
                for s in range(cols):
                    col = builder.mul(builder.add(col0, ir.Constant(i64, s)),
                                      ir.Constant(i64, 4))
                    dst = builder.bitcast(builder.gep(crow, [col]), i32.as_pointer())
                    builder.store(builder.call(reduce_add, [builder.load(acc[r][s])]), dst)
            return context.get_dummy_value()

        return sig, codegen

    return dot_block


_dot_u8s8_4x4 = _make_dot(4, 4)
_dot_u8s8_1x4 = _make_dot(1, 4)


@njit(cache=True)
def _dot(ai, bj):  # pragma: no cover - compiled
    s = np.int32(0)
    for k in range(ai.size):
        s += np.int32(ai[k]) * np.int32(bj[k])
    return s


@njit(cache=True)
def gemm_u8s8(a, bt, c):  # pragma: no cover - compiled
    """``c[i, j] = Σ_k a[i, k]·bt[j, k]`` for ``a`` uint8 ``[M, Kp]``, ``bt`` int8 ``[N, Kp]``
    (Kp % 64 == 0), int32 ``c`` (mod 2^32). Only on a CPU with AVX-512 VNNI."""
    if (a.shape[1] != bt.shape[1] or a.shape[1] % K_ALIGN != 0 or c.shape[0] != a.shape[0]
            or c.shape[1] != bt.shape[0] or c.strides[1] != 4 or a.strides[1] != 1
            or bt.strides[1] != 1):
        raise ValueError("gemm_u8s8 needs a [M, Kp] u8, bt [N, Kp] s8 with Kp % 64 == 0 and "
                         "c [M, N] with contiguous rows")
    n = bt.shape[0]
    for j0 in range(0, n, 64):
        _columns(a, bt, c, j0, min(j0 + 64, n))


@njit(cache=True)
def _columns(a, bt, c, j0, j1):  # pragma: no cover - compiled
    m = a.shape[0]
    m4 = m - m % _BLOCK
    j4 = j0 + (j1 - j0) - (j1 - j0) % _BLOCK
    for i in range(0, m4, _BLOCK):
        for j in range(j0, j4, _BLOCK):
            _dot_u8s8_4x4(a, bt, c, i, j)
    for i in range(m4, m):  # the last rows (all of them for a GEMV): 1×4 blocks
        for j in range(j0, j4, _BLOCK):
            _dot_u8s8_1x4(a, bt, c, i, j)
    for i in range(m):
        for j in range(j4, j1):
            c[i, j] = _dot(a[i], bt[j])


@njit(cache=True, parallel=True)
def gemm_u8s8_parallel(a, bt, c):  # pragma: no cover - compiled
    """:func:`gemm_u8s8` with its 64-column blocks spread over ``numba.get_num_threads()``
    threads (same bits)."""
    if (a.shape[1] != bt.shape[1] or a.shape[1] % K_ALIGN != 0 or c.shape[0] != a.shape[0]
            or c.shape[1] != bt.shape[0] or c.strides[1] != 4 or a.strides[1] != 1
            or bt.strides[1] != 1):
        raise ValueError("gemm_u8s8 needs a [M, Kp] u8, bt [N, Kp] s8 with Kp % 64 == 0 and "
                         "c [M, N] with contiguous rows")
    n = bt.shape[0]
    for b in prange((n + 63) // 64):
        _columns(a, bt, c, b * 64, min(b * 64 + 64, n))



@njit(cache=True)
def requant_u8s8(acc, wsum, corr, bias, m0, shift, zp, lo, hi, out):  # pragma: no cover
    """``out[i, j] = requant(wrap32(acc[i, j] − corr·wsum[j] + bias[j]), m0[j], shift[j])``:
    the zero-point correction of the u8 shift, then the per-column requantization."""
    m, n = acc.shape
    for i in range(m):
        for j in range(n):
            v = np.int64(acc[i, j]) - corr * wsum[j] + bias[j]
            out[i, j] = requant(wrap32(v), m0[j], shift[j], zp, lo, hi)


@njit(cache=True)
def peak_loop(n, out):  # pragma: no cover - compiled
    """``n`` rounds of 16 independent ``vpdpbusd`` (the throughput bound: 2·64·16 int8 ops a
    round); the accumulators are stored to ``out`` so nothing is optimized away."""
    _peak(n, out)


@intrinsic
def _peak(typingctx, n, out):  # pragma: no cover - compiled
    sig = types.void(n, out)

    def codegen(context, builder, signature, args):
        oo = cgutils.create_struct_proxy(signature.args[1])(context, builder, value=args[1])
        i32 = ir.IntType(32)
        v16 = ir.VectorType(i32, 16)
        dp = cgutils.get_or_insert_function(builder.module, ir.FunctionType(v16, [v16] * 3),
                                            "llvm.x86.avx512.vpdpbusd.512")
        a = ir.Constant(v16, [0x01020304 + t for t in range(16)])
        b = ir.Constant(v16, [0x05060708 - t for t in range(16)])
        acc = [cgutils.alloca_once_value(builder, ir.Constant(v16, [t] * 16))
               for t in range(16)]
        with cgutils.for_range(builder, args[0]):
            vals = [builder.load(p) for p in acc]
            for p, v in zip(acc, vals):
                builder.store(builder.call(dp, [v, a, b]), p)
        base = builder.bitcast(oo.data, v16.as_pointer())
        total = builder.load(acc[0])
        for p in acc[1:]:
            total = builder.add(total, builder.load(p))
        builder.store(total, base, align=4)
        return context.get_dummy_value()

    return sig, codegen


def matmul_nt(a: np.ndarray, w: np.ndarray, a_zp: int, parallel: bool = False) -> np.ndarray:
    """int32 ``(a − a_zp) @ wᵀ`` for int8 ``a [M, K]`` and int8 weights ``w [N, K]`` on the
    VNNI path (callers check :data:`HAS_VNNI`)."""
    m, k = a.shape
    kp = padded_depth(k)
    c = np.empty((m, w.shape[0]), np.int32)
    (gemm_u8s8_parallel if parallel else gemm_u8s8)(pack_u8(np.ascontiguousarray(a), kp),
                                                     pack_s8(w, kp), c)
    corr = np.int64(128 + int(a_zp))
    wsum = w.astype(np.int64).sum(axis=1)
    return (c.astype(np.int64) - corr * wsum[None, :]).astype(np.int32)  # wraps mod 2^32
