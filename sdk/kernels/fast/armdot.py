"""int8 GEMM on the ARMv8.2 dot-product instruction (``sdot``), picked at load time from the
CPU's features, with the zero-point correction that keeps it bit-exact.

``sdot v.4s, a.16b, b.16b`` multiplies 16 signed bytes by 16 signed bytes and adds each group of
four products to one of four int32 lanes (the products fit int16, the sums wrap like C int32).
It is reached from Numba through the LLVM intrinsic ``llvm.aarch64.neon.sdot.v4i32.v16i8``
(``udot``, its u8×u8 twin, is emitted by the same block builder with ``signed=False``; the
SDK's weights are signed, so the GEMM uses ``sdot``). Activations are stored as int8: int8 ones
as they are, uint8 ones with the sign bit flipped (``x − 128``). The zero point is corrected
with the weight sums:

    Σ_k (x − x_zp)·w = Σ_k x_s·w − (x_zp − off)·Σ_k w        (mod 2^32, exact)

with ``off = 0`` for int8 and ``128`` for uint8 activations. Layout: ``a [M, Kp]`` and
``w [N, Kp]`` int8, the depth padded with zeros to a multiple of 16 (zero weights add nothing).
The 4×4 register block keeps 16 accumulators of 4 lanes and issues 16 ``sdot`` per 16-byte
step (8 vector loads; 24 of AArch64's 32 vector registers); the last ``M mod 4`` rows take 1×4
blocks, the last ``N mod 4`` columns a scalar dot product.

Which CPU has it (:data:`HAS_SDOT`): on Linux arm64 the ``Features`` line of /proc/cpuinfo
lists ``asimddp`` (Pi 5's Cortex-A76, Jetson Orin's A78AE; not Pi 4's A72). Where /proc/cpuinfo
has no ``Features`` line (QEMU user mode shows the host's file) the kernel's ``AT_HWCAP`` bit
``HWCAP_ASIMDDP`` answers. A CPU without it keeps the portable int16 path of
:mod:`sdk.kernels.fast.gemm`.

The functions holding the intrinsic are compiled with ``+dotprod`` added to their own LLVM
``target-features`` (the rest of the process keeps Numba's host target): LLVM's host detection
can miss the feature (it reads /proc/cpuinfo, which an emulator may not emulate), and the
functions are only called where the CPU reports it. LLVM does not inline them into callers
without the feature.
"""

from __future__ import annotations

import ctypes
import platform

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

K_ALIGN = 16  # bytes per sdot step
_BLOCK = 4
COL_BLOCK = 64  # columns of w per block (64 rows × Kp bytes stay in L2); also the thread unit
AT_HWCAP = 16
HWCAP_ASIMDDP = 1 << 20  # arch/arm64/include/uapi/asm/hwcap.h
SDOT = "llvm.aarch64.neon.sdot.v4i32.v16i8"
UDOT = "llvm.aarch64.neon.udot.v4i32.v16i8"


def dotprod_from(cpuinfo: str | None, hwcap: int | None) -> bool:
    """Whether an arm64 Linux CPU has the dot-product instructions: every ``Features`` line of
    ``/proc/cpuinfo`` lists ``asimddp``; without such lines, the ``AT_HWCAP`` bit."""
    lines = [ln.split(":", 1)[1].split() for ln in (cpuinfo or "").splitlines()
             if ln.split(":", 1)[0].strip() == "Features" and ":" in ln]
    if lines:
        return all("asimddp" in feats for feats in lines)
    return bool(hwcap is not None and hwcap & HWCAP_ASIMDDP)


def _hwcap() -> int | None:
    try:
        libc = ctypes.CDLL(None)
        libc.getauxval.restype = ctypes.c_ulong
        libc.getauxval.argtypes = [ctypes.c_ulong]
        return int(libc.getauxval(AT_HWCAP))
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        return None


def cpu_has_dotprod() -> bool:
    """This process's CPU (False on anything but Linux arm64)."""
    if platform.system() != "Linux" or platform.machine() not in ("aarch64", "arm64"):
        return False
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        text = None
    return dotprod_from(text, _hwcap())


HAS_SDOT = cpu_has_dotprod()


def padded_depth(k: int) -> int:
    return max((k + K_ALIGN - 1) // K_ALIGN * K_ALIGN, K_ALIGN)


@njit(cache=True)
def pack_s8(a, off, kp):  # pragma: no cover - compiled
    """``out[i, k] = a[i, k] − off`` as int8 (``off`` 0 for int8, 128 for uint8 activations),
    0 for ``k ≥ K`` (the padding pairs with zero weights)."""
    m, k = a.shape
    out = np.zeros((m, kp), np.int8)
    for i in range(m):
        for j in range(k):
            out[i, j] = np.int8(np.int32(a[i, j]) - off)
    return out


def pack_weights(w: np.ndarray, kp: int) -> np.ndarray:
    """Weights ``[N, K]`` int8 as ``[N, Kp]`` with zero padding."""
    out = np.zeros((w.shape[0], kp), np.int8)
    out[:, :w.shape[1]] = w
    return out


def emit_dot_block(builder: ir.IRBuilder, abase, bbase, cbase, kp, lda, ldb, ldc, row0, col0,
                   rows: int, cols: int, signed: bool = True) -> None:
    """LLVM IR of one ``rows``×``cols`` register block:
    ``c[row0+r, col0+s] = Σ_k a[row0+r, k]·b[col0+s, k]`` over ``kp`` bytes (a multiple of 16),
    int32 mod 2^32. ``abase``/``bbase``/``cbase`` are ``i8*``, the rest ``i64`` (strides and
    ``kp`` in bytes). One ``sdot`` (``udot`` when not ``signed``) per (r, s) per 16 bytes."""
    i64, i32 = ir.IntType(64), ir.IntType(32)
    v4 = ir.VectorType(i32, 4)
    v16b = ir.VectorType(ir.IntType(8), 16)

    def row_ptr(base, first, r, stride):
        return builder.gep(base, [builder.mul(builder.add(first, ir.Constant(i64, r)), stride)])

    arow = [row_ptr(abase, row0, r, lda) for r in range(rows)]
    brow = [row_ptr(bbase, col0, s, ldb) for s in range(cols)]
    acc = [[cgutils.alloca_once_value(builder, ir.Constant(v4, None))
            for _ in range(cols)] for _ in range(rows)]
    dp = cgutils.get_or_insert_function(builder.module, ir.FunctionType(v4, [v4, v16b, v16b]),
                                        SDOT if signed else UDOT)
    steps = builder.udiv(kp, ir.Constant(i64, K_ALIGN))
    with cgutils.for_range(builder, steps) as loop:
        off = builder.mul(loop.index, ir.Constant(i64, K_ALIGN))

        def load(rowp):
            p = builder.bitcast(builder.gep(rowp, [off]), v16b.as_pointer())
            return builder.load(p, align=1)

        va = [load(p) for p in arow]
        vb = [load(p) for p in brow]
        for r in range(rows):
            for s in range(cols):
                builder.store(builder.call(dp, [builder.load(acc[r][s]), va[r], vb[s]]),
                              acc[r][s])
    reduce_add = cgutils.get_or_insert_function(builder.module, ir.FunctionType(i32, [v4]),
                                                "llvm.vector.reduce.add.v4i32")
    for r in range(rows):
        crow = row_ptr(cbase, row0, r, ldc)
        for s in range(cols):
            col = builder.mul(builder.add(col0, ir.Constant(i64, s)), ir.Constant(i64, 4))
            dst = builder.bitcast(builder.gep(crow, [col]), i32.as_pointer())
            builder.store(builder.call(reduce_add, [builder.load(acc[r][s])]), dst)


def _with_dotprod(context, fn: ir.Function) -> None:
    """Compile ``fn`` (the function the block is lowered into) with ``+dotprod`` on top of the
    process's target features. llvmlite's attribute set only lists flag attributes, so the
    string attribute goes in through ``set.add`` (it is written verbatim into the IR)."""
    if any(str(a).startswith('"target-features"') for a in fn.attributes):
        return
    feats = [f for f in str(getattr(context.codegen(), "_tm_features", "") or "").split(",")
             if f and f not in ("+dotprod", "-dotprod")]
    set.add(fn.attributes, '"target-features"="{}"'.format(",".join(feats + ["+dotprod"])))


def _make_dot(rows: int, cols: int):
    @intrinsic
    def dot_block(typingctx, a, bt, c, i, j):  # pragma: no cover - compiled
        sig = types.void(a, bt, c, i, j)

        def codegen(context, builder, signature, args):
            at, btt, ct = signature.args[:3]
            aa = cgutils.create_struct_proxy(at)(context, builder, value=args[0])
            bb = cgutils.create_struct_proxy(btt)(context, builder, value=args[1])
            cc = cgutils.create_struct_proxy(ct)(context, builder, value=args[2])
            byte_ptr = ir.IntType(8).as_pointer()
            _with_dotprod(context, builder.function)
            emit_dot_block(builder, builder.bitcast(aa.data, byte_ptr),
                           builder.bitcast(bb.data, byte_ptr), builder.bitcast(cc.data, byte_ptr),
                           builder.extract_value(aa.shape, 1),
                           builder.extract_value(aa.strides, 0),
                           builder.extract_value(bb.strides, 0),
                           builder.extract_value(cc.strides, 0), args[3], args[4], rows, cols)
            return context.get_dummy_value()

        return sig, codegen

    return dot_block


_dot_s8_4x4 = _make_dot(4, 4)
_dot_s8_1x4 = _make_dot(1, 4)


@njit(cache=True)
def _dot(ai, bj):  # pragma: no cover - compiled
    s = np.int32(0)
    for k in range(ai.size):
        s += np.int32(ai[k]) * np.int32(bj[k])
    return s


@njit(cache=True)
def _check(a, bt, c):  # pragma: no cover - compiled
    # the blocks read raw memory: shapes must match exactly
    if (a.shape[1] != bt.shape[1] or a.shape[1] % K_ALIGN != 0 or c.shape[0] != a.shape[0]
            or c.shape[1] != bt.shape[0] or c.strides[1] != 4 or a.strides[1] != 1
            or bt.strides[1] != 1):
        raise ValueError("gemm_s8s8 needs a [M, Kp] s8, bt [N, Kp] s8 with Kp % 16 == 0 and "
                         "c [M, N] with contiguous rows")


@njit(cache=True)
def _columns(a, bt, c, j0, j1):  # pragma: no cover - compiled
    """Columns ``j0:j1`` of ``c``: 4×4 blocks, 1×4 on the last rows, scalar dots on the
    last columns."""
    m = a.shape[0]
    m4 = m - m % _BLOCK
    j4 = j0 + (j1 - j0) - (j1 - j0) % _BLOCK
    for i in range(0, m4, _BLOCK):
        for j in range(j0, j4, _BLOCK):
            _dot_s8_4x4(a, bt, c, i, j)
    for i in range(m4, m):
        for j in range(j0, j4, _BLOCK):
            _dot_s8_1x4(a, bt, c, i, j)
    for i in range(m):
        for j in range(j4, j1):
            c[i, j] = _dot(a[i], bt[j])


@njit(cache=True)
def gemm_s8s8(a, bt, c):  # pragma: no cover - compiled
    """``c[i, j] = Σ_k a[i, k]·bt[j, k]`` for int8 ``a [M, Kp]``, ``bt [N, Kp]`` (Kp % 16 == 0),
    int32 ``c`` (mod 2^32), one thread. Only on a CPU with the dot-product extension."""
    _check(a, bt, c)
    n = bt.shape[0]
    for j0 in range(0, n, COL_BLOCK):
        _columns(a, bt, c, j0, min(j0 + COL_BLOCK, n))


@njit(cache=True, parallel=True)
def gemm_s8s8_parallel(a, bt, c):  # pragma: no cover - compiled
    """:func:`gemm_s8s8` with column blocks spread over ``numba.get_num_threads()`` threads."""
    _check(a, bt, c)
    n = bt.shape[0]
    nblocks = (n + COL_BLOCK - 1) // COL_BLOCK
    for b in prange(nblocks):
        _columns(a, bt, c, b * COL_BLOCK, min(b * COL_BLOCK + COL_BLOCK, n))


def matmul_nt(a: np.ndarray, w: np.ndarray, a_zp: int, parallel: bool = False) -> np.ndarray:
    """int32 ``(a − a_zp) @ wᵀ`` for int8/uint8 ``a [M, K]`` and int8 weights ``w [N, K]`` on
    the ``sdot`` path (callers check :data:`HAS_SDOT`)."""
    m, k = a.shape
    kp = padded_depth(k)
    off = 128 if a.dtype == np.uint8 else 0
    c = np.empty((m, w.shape[0]), np.int32)
    if m and w.shape[0]:
        (gemm_s8s8_parallel if parallel else gemm_s8s8)(
            pack_s8(np.ascontiguousarray(a), np.int32(off), kp), pack_weights(w, kp), c)
    wsum = w.astype(np.int64).sum(axis=1)
    return (c.astype(np.int64) - (int(a_zp) - off) * wsum[None, :]).astype(np.int32)



@njit(cache=True)
def peak_loop(n, out):  # pragma: no cover - compiled
    """``n`` rounds of 16 independent ``sdot`` (the throughput bound: 2·16·16 int8 ops a
    round); the accumulators are stored to ``out`` (int32, 4 lanes) so nothing is optimized
    away. Only on a CPU with the dot-product extension."""
    _peak(n, out)


@intrinsic
def _peak(typingctx, n, out):  # pragma: no cover - compiled
    sig = types.void(n, out)

    def codegen(context, builder, signature, args):
        oo = cgutils.create_struct_proxy(signature.args[1])(context, builder, value=args[1])
        i32 = ir.IntType(32)
        v4 = ir.VectorType(i32, 4)
        v16b = ir.VectorType(ir.IntType(8), 16)
        _with_dotprod(context, builder.function)
        dp = cgutils.get_or_insert_function(builder.module,
                                            ir.FunctionType(v4, [v4, v16b, v16b]), SDOT)
        a = ir.Constant(v16b, [(3 * t + 1) % 127 for t in range(16)])
        b = ir.Constant(v16b, [(5 * t + 2) % 127 - 60 for t in range(16)])
        acc = [cgutils.alloca_once_value(builder, ir.Constant(v4, [t] * 4)) for t in range(16)]
        with cgutils.for_range(builder, args[0]):
            vals = [builder.load(p) for p in acc]
            for p, v in zip(acc, vals):
                builder.store(builder.call(dp, [v, a, b]), p)
        total = builder.load(acc[0])
        for p in acc[1:]:
            total = builder.add(total, builder.load(p))
        builder.store(total, builder.bitcast(oo.data, v4.as_pointer()), align=4)
        return context.get_dummy_value()

    return sig, codegen
