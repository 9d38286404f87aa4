"""Integer matrix products: int8×int8→int32, fully-connected (per-channel weights), MatMul.

Accumulators are int32 as in C: the exact sum is wrapped to 32 bits (two's complement), which
only matters for K > 33 000 at int8 (|(a−za)(b−zb)| ≤ 255² per term).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sdk.errors import InputError
from sdk.kernels.checks import channel_vector, check_range, integer_array, out_dtype
from sdk.kernels.requant import requantize, wrap_int32


def matmul_int32(a: np.ndarray, b: np.ndarray, a_zp: int = 0, b_zp: int = 0) -> np.ndarray:
    """``acc[..., m, n] = wrap32(Σ_k (a[..., m, k] − a_zp)·(b[..., k, n] − b_zp))`` (int32).

    ONNX MatMulInteger semantics; batch dimensions broadcast as in ``np.matmul``; 1-D operands
    are not promoted (give ``[M, K]`` and ``[K, N]`` at least).
    """
    a = integer_array(a, "MatMul input A")
    b = integer_array(b, "MatMul input B")
    if a.ndim < 2 or b.ndim < 2 or a.shape[-1] != b.shape[-2]:
        raise InputError(f"MatMul shapes {a.shape} and {b.shape} do not chain: need "
                         "[..., M, K] and [..., K, N]")
    acc = np.matmul(a.astype(np.int64) - a_zp, b.astype(np.int64) - b_zp)
    return wrap_int32(acc).astype(np.int32)


def fully_connected(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, *, x_zp: int = 0,
                    m0: Any, shift: Any, out_zp: int = 0, act_min: int | None = None,
                    act_max: int | None = None, dtype: Any = "int8") -> np.ndarray:
    """QFullyConnected: ``acc[..., n] = wrap32(Σ_k (x[..., k] − x_zp)·w[n, k] + bias[n])``,
    ``out = requantize(acc, m0[n], shift[n], out_zp, act_min, act_max)``.

    Weights are symmetric (zero point 0), ``[N, K]``; ``m0``/``shift`` per output channel n
    (a scalar applies to all).
    """
    x = integer_array(x, "FullyConnected input")
    w = integer_array(w, "FullyConnected weights")
    if w.ndim != 2 or x.ndim < 1 or x.shape[-1] != w.shape[1]:
        raise InputError(f"FullyConnected input {x.shape} does not match weights {w.shape}; "
                         "need x [..., K] and w [N, K]")
    n = w.shape[0]
    dt = out_dtype(dtype)
    act_min, act_max = check_range(act_min, act_max, dt)
    acc = (x.astype(np.int64) - x_zp) @ w.astype(np.int64).T
    if bias is not None:
        acc = acc + channel_vector(bias, n, "FullyConnected bias", np.int64)
    acc = wrap_int32(acc)
    return requantize(acc, channel_vector(m0, n, "m0"), channel_vector(shift, n, "shift"),
                      out_zp, act_min, act_max, dt)


def qmatmul(a: np.ndarray, b: np.ndarray, *, a_zp: int = 0, b_zp: int = 0, m0: Any,
            shift: Any, out_zp: int = 0, act_min: int | None = None, act_max: int | None = None,
            dtype: Any = "int8") -> np.ndarray:
    """QMatMul: ``acc = matmul_int32(a, b, a_zp, b_zp)``,
    ``out = requantize(acc, m0, shift, out_zp, act_min, act_max)``.

    ``m0``/``shift`` are per tensor or per output column n (last axis).
    """
    acc = matmul_int32(a, b, a_zp, b_zp)
    dt = out_dtype(dtype)
    act_min, act_max = check_range(act_min, act_max, dt)
    n = acc.shape[-1]
    return requantize(acc, channel_vector(m0, n, "m0"), channel_vector(shift, n, "shift"),
                      out_zp, act_min, act_max, dt)
