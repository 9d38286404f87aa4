"""Numba twins of :mod:`sdk.kernels.linear` (same signatures, same bits)."""

from __future__ import annotations

from typing import Any

import numpy as np

from sdk.errors import InputError
from sdk.kernels.checks import channel_vector, check_range, integer_array, out_dtype
from sdk.kernels.fast.gemm import matmul_2d, matmul_nt_2d
from sdk.kernels.fast.requant_loops import requant_cols


def _batched(a: np.ndarray, b: np.ndarray, a_zp: int, b_zp: int, parallel: bool | None
             ) -> np.ndarray:
    a = integer_array(a, "MatMul input A")
    b = integer_array(b, "MatMul input B")
    if a.ndim < 2 or b.ndim < 2 or a.shape[-1] != b.shape[-2]:
        raise InputError(f"MatMul shapes {a.shape} and {b.shape} do not chain: need "
                         "[..., M, K] and [..., K, N]")
    if a.ndim == 2 and b.ndim == 2:
        return matmul_2d(a, b, int(a_zp), int(b_zp), parallel)
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    m, n = a.shape[-2], b.shape[-1]
    nb = int(np.prod(batch, dtype=np.int64))
    a3 = np.broadcast_to(a, batch + a.shape[-2:]).reshape((nb,) + a.shape[-2:])
    b3 = np.broadcast_to(b, batch + b.shape[-2:]).reshape((nb,) + b.shape[-2:])
    out = np.empty((a3.shape[0], m, n), np.int32)
    for i in range(a3.shape[0]):
        out[i] = matmul_2d(a3[i], b3[i], int(a_zp), int(b_zp), parallel)
    return out.reshape(batch + (m, n))


def matmul_int32(a: np.ndarray, b: np.ndarray, a_zp: int = 0, b_zp: int = 0) -> np.ndarray:
    """Fast :func:`sdk.kernels.linear.matmul_int32`: one thread below ``thread_macs()``
    multiply-adds per product (sdk/kernels/fast/gemm.py), Numba's threads from there on."""
    return _batched(a, b, a_zp, b_zp, parallel=None)


def matmul_int32_parallel(a: np.ndarray, b: np.ndarray, a_zp: int = 0, b_zp: int = 0
                          ) -> np.ndarray:
    """:func:`matmul_int32` on ``numba.get_num_threads()`` threads (set with
    ``numba.set_num_threads``); same bits."""
    return _batched(a, b, a_zp, b_zp, parallel=True)


def _requant_last(acc: np.ndarray, bias: np.ndarray | None, m0: Any, shift: Any, out_zp: int,
                  act_min: int, act_max: int, dt: np.dtype) -> np.ndarray:
    n = acc.shape[-1]
    acc2 = acc.reshape(int(np.prod(acc.shape[:-1], dtype=np.int64)), n)
    b = (np.zeros(n, np.int64) if bias is None
         else channel_vector(bias, n, "bias", np.int64))
    out = np.empty(acc2.shape, dt)
    requant_cols(acc2, b, channel_vector(m0, n, "m0", np.int64),
                 channel_vector(shift, n, "shift", np.int64), np.int64(out_zp),
                 np.int64(act_min), np.int64(act_max), out)
    return out.reshape(acc.shape)


def fully_connected(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, *, x_zp: int = 0,
                    m0: Any, shift: Any, out_zp: int = 0, act_min: int | None = None,
                    act_max: int | None = None, dtype: Any = "int8") -> np.ndarray:
    """Fast :func:`sdk.kernels.linear.fully_connected`."""
    x = integer_array(x, "FullyConnected input")
    w = integer_array(w, "FullyConnected weights")
    if w.ndim != 2 or x.ndim < 1 or x.shape[-1] != w.shape[1]:
        raise InputError(f"FullyConnected input {x.shape} does not match weights {w.shape}; "
                         "need x [..., K] and w [N, K]")
    dt = out_dtype(dtype)
    act_min, act_max = check_range(act_min, act_max, dt)
    rows = int(np.prod(x.shape[:-1], dtype=np.int64))
    acc = matmul_nt_2d(x.reshape(rows, x.shape[-1]), w, int(x_zp))
    out = _requant_last(acc, bias, m0, shift, out_zp, act_min, act_max, dt)
    return out.reshape(x.shape[:-1] + (w.shape[0],))


def qmatmul(a: np.ndarray, b: np.ndarray, *, a_zp: int = 0, b_zp: int = 0, m0: Any,
            shift: Any, out_zp: int = 0, act_min: int | None = None, act_max: int | None = None,
            dtype: Any = "int8") -> np.ndarray:
    """Fast :func:`sdk.kernels.linear.qmatmul`."""
    dt = out_dtype(dtype)
    act_min, act_max = check_range(act_min, act_max, dt)
    acc = matmul_int32(a, b, a_zp, b_zp)
    return _requant_last(acc, None, m0, shift, out_zp, act_min, act_max, dt)
