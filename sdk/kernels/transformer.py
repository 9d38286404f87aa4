"""Integer-only transformer ops after I-ViT: Shiftmax, ShiftGELU (plain and λ-clipped),
I-LayerNorm and integer RMSNorm. Pure integer arithmetic on int64 intermediates; every floor
is an arithmetic shift or a floor division, so C firmware reproduces the bits.

Shift-exp (shared by Shiftmax and ShiftGELU), for an integer ``x ≤ 0`` of scale ``S`` and
``x0 = floor(−1/S) ≤ −1``:

* ``t = x + (x >> 1) − (x >> 4)``  (``x·log2 e`` with ``log2 e ≈ 1.0111b``)
* ``t = max(t, n·x0)``; ``q = floor(t / x0)`` (``0 ≤ q ≤ n``); ``r = t − q·x0`` (``x0 < r ≤ 0``)
* ``exp = floor((r/2 − x0) · 2^(n − q)) = ((r − 2·x0) << (n − q)) >> 1`` (scale ``S/2^n``)

i.e. ``2^(S·r) ≈ 1 + S·r/2`` on the fractional part and a shift for the integer part.
The kernels require ``−x0·2^n ≤ 2^30`` so that every exp and every product below fits.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sdk.errors import GraphError, InputError
from sdk.kernels.checks import channel_vector, check_range, integer_array, out_dtype
from sdk.kernels.requant import requantize, round_half_away_div, saturate_int32

INT31 = 2**31 - 1


def check_shift_exp(x0: int, n: int) -> None:
    """``x0 ≤ −1``, ``0 ≤ n`` and ``−x0·2^n ≤ 2^30`` (no overflow in the sums)."""
    if int(x0) > -1:
        raise GraphError(f"shift-exp x0 must be floor(-1/S) <= -1, got {x0}; the input scale "
                         "S must be below 1")
    if int(n) < 0 or -int(x0) * 2 ** int(n) > 2**30:
        raise GraphError(f"shift-exp n={n} with x0={x0} overflows (-x0*2^n > 2^30); "
                         "use a smaller n")


def shift_gelu_n(x0: int, sig_bits: int = 8, n_max: int = 23) -> int:
    """The ``n`` to give ShiftGELU: the largest ``n ≤ n_max`` with ``−x0·2^n ≤ 2^(31 − b)``.

    σ's normaliser ``floor((2^31 − 1)/(e + e_m))`` is floored; its error in σ's units is up
    to ``−x0·2^n / 2^(32 − b)``, so this bound keeps it under half an LSB. I-ViT's fixed
    ``n = 23`` loses several LSBs of σ once ``−x0 > 1`` (measured here: max |error| vs GELU
    0.29 at S = 0.02 with n = 23, 0.044 with n = 18). A larger n than needed buys nothing:
    exps below ``2^−n`` are already under σ's resolution.
    """
    n = int(n_max)
    while n > 0 and -int(x0) * 2**n > 2 ** (31 - int(sig_bits)):
        n -= 1
    return n


def shift_exp(x: np.ndarray, x0: int, n: int) -> np.ndarray:
    """I-ViT shift-exp of ``x ≤ 0`` (module docstring); int64 result of scale ``S/2^n``."""
    x = np.asarray(x, dtype=np.int64)
    x0 = np.int64(x0)
    t = x + (x >> 1) - (x >> 4)
    t = np.maximum(t, np.int64(n) * x0)
    q = t // x0
    r = t - q * x0
    return ((r - 2 * x0) << (np.int64(n) - q)) >> 1


def shiftmax_dtype(out_bits: int) -> np.dtype:
    """int8 for ``out_bits ≤ 8``, int16 up to 16, else int32 (the output is ``< 2^(k−1)``)."""
    if not 2 <= int(out_bits) <= 31:
        raise GraphError(f"Shiftmax out_bits must be in [2, 31], got {out_bits}")
    return np.dtype(np.int8 if out_bits <= 8 else np.int16 if out_bits <= 16 else np.int32)


def shiftmax(x: np.ndarray, *, axis: int = -1, x0: int, n: int = 15,
             out_bits: int = 16) -> np.ndarray:
    """Shiftmax (I-ViT integer softmax) along ``axis``:

    ``e = shift_exp(x − max(x), x0, n)``; ``Σ = min(Σ e, 2^31 − 1)``;
    ``out = floor(e · floor((2^31 − 1)/Σ) / 2^(31 − k + 1))`` with ``k = out_bits``.
    Output scale ``2^−(k−1)``; values in ``[0, 2^(k−1))``; dtype from :func:`shiftmax_dtype`.
    A zero point on ``x`` cancels in ``x − max(x)``.
    """
    x = integer_array(x, "Shiftmax input")
    check_shift_exp(x0, n)
    dt = shiftmax_dtype(out_bits)
    if x.size == 0:
        return np.zeros(x.shape, dtype=dt)
    xi = x.astype(np.int64)
    e = shift_exp(xi - xi.max(axis=axis, keepdims=True), x0, n)
    total = np.minimum(e.sum(axis=axis, keepdims=True), INT31)
    factor = INT31 // total
    return ((e * factor) >> np.int64(32 - int(out_bits))).astype(dt)


def shift_gelu(x: np.ndarray, *, axis: int = -1, x0: int, n: int = 23, sig_bits: int = 8,
               clip_min: int = -(2**31), clip_max: int = 2**31 - 1, x_zp: int = 0, m0: int,
               shift: int, out_zp: int = 0, act_min: int | None = None, act_max: int | None = None,
               dtype: Any = "int8") -> np.ndarray:
    """ShiftGELU, ``GELU(x) ≈ x·σ(1.702·x)`` (I-ViT), with an optional λ clip:

    * ``xc = x − x_zp``; ``xs = clip(xc, clip_min, clip_max)`` (the λ clip: only the
      sigmoid's argument is clipped, the multiplier ``xc`` is not);
    * ``m = max(max(xs along axis), 0)``; ``e = shift_exp(xs − m, x0, n)``,
      ``e_m = shift_exp(−m, x0, n)`` — the sigmoid as ``e^(x−m)/(e^(x−m) + e^(−m))``;
    * ``σ = floor(e · floor((2^31 − 1)/min(e + e_m, 2^31 − 1)) / 2^(31 − b + 1))``,
      ``b = sig_bits`` (scale ``2^−(b−1)``);
    * ``out = requantize(xc·σ, m0, shift, out_zp, act_min, act_max)`` with
      ``M = S·2^−(b−1)/S_out`` and ``x0 = floor(−1/(1.702·S))``; pick ``n`` with
      :func:`shift_gelu_n` (I-ViT's n = 23 is too coarse for σ unless ``x0 = −1``).

    I-ViT takes ``m = max(x)``; this kernel floors it at 0, which keeps both exponents ≤ 0
    when a whole row is negative (the ratio is the same for any ``m``).

    λ-ShiftGELU (our variant for long-tailed activations, I-Segmenter's exact formula was not
    available): with a wide int8 grid set by rare outliers, the row maximum of plain ShiftGELU
    drives ``e^(x−m)`` and ``e^(−m)`` for every typical ``x`` into the shift-exp floor, and
    σ collapses towards 1/2. Clipping the argument at ``±λ`` (``clip = ±round(λ/S)``,
    λ ≈ 4, where ``σ(1.702·λ) ≈ 0.999``) bounds ``m`` so σ keeps its resolution; the
    unclipped ``xc`` keeps the tails linear as GELU is. ``clip = ±2^31`` is plain ShiftGELU.
    """
    x = integer_array(x, "ShiftGELU input")
    check_shift_exp(x0, n)
    if not 2 <= int(sig_bits) <= 16:
        raise GraphError(f"ShiftGELU sig_bits must be in [2, 16], got {sig_bits}")
    if clip_min > clip_max:
        raise GraphError(f"ShiftGELU clip_min {clip_min} is above clip_max {clip_max}")
    dt = out_dtype(dtype)
    act_min, act_max = check_range(act_min, act_max, dt)
    if x.size == 0:
        return np.zeros(x.shape, dtype=dt)
    xc = x.astype(np.int64) - np.int64(x_zp)
    xs = np.clip(xc, clip_min, clip_max)
    m = np.maximum(xs.max(axis=axis, keepdims=True), 0)
    e = shift_exp(xs - m, x0, n)
    total = np.minimum(e + shift_exp(-m, x0, n), INT31)
    sig = (e * (INT31 // total)) >> np.int64(32 - int(sig_bits))
    return requantize(xc * sig, m0, shift, out_zp, act_min, act_max, dt)


def newton_isqrt(v: np.ndarray, iters: int) -> np.ndarray:
    """I-ViT integer square root: ``k ← max(floor((k + floor(v/k))/2), 1)`` ``iters`` times
    from ``k = 2^16`` (the ``max(·, 1)`` only stops ``v = 0`` from reaching a zero divisor)."""
    v = np.asarray(v, dtype=np.int64)
    k = np.full(v.shape, 2**16, dtype=np.int64)
    for _ in range(int(iters)):
        k = np.maximum((k + v // k) >> 1, 1)
    return k


def _norm(x: np.ndarray, beta_q: np.ndarray | None, axis: int, iters: int, m0: Any,
          shift: Any, out_zp: int, act_min: int, act_max: int, dtype: Any,
          centre: bool, what: str) -> np.ndarray:
    x = integer_array(x, f"{what} input")
    dt = out_dtype(dtype)
    act_min, act_max = check_range(act_min, act_max, dt)
    if int(iters) < 1:
        raise GraphError(f"{what} iters must be >= 1, got {iters}")
    if x.ndim == 0:
        raise InputError(f"{what} needs at least a 1-D input")
    ax = axis % x.ndim
    c = x.shape[ax]
    if x.size == 0:
        return np.zeros(x.shape, dtype=dt)
    shape = [1] * x.ndim
    shape[ax] = c
    y = x.astype(np.int64)
    if centre:
        y = y - round_half_away_div(y.sum(axis=ax, keepdims=True), c)
    k = newton_isqrt((y * y).sum(axis=ax, keepdims=True), iters)
    yn = (y * (INT31 // k)) >> 1
    if beta_q is not None:
        yn = yn + channel_vector(beta_q, c, f"{what} beta_q", np.int64).reshape(shape)
    acc = saturate_int32(yn)
    return requantize(acc, channel_vector(m0, c, "m0").reshape(shape),
                      channel_vector(shift, c, "shift").reshape(shape), out_zp, act_min,
                      act_max, dt)


def i_layernorm(x: np.ndarray, beta_q: np.ndarray | None = None, *, axis: int = -1,
                iters: int = 10, m0: Any, shift: Any, out_zp: int = 0, act_min: int | None = None,
                act_max: int | None = None, dtype: Any = "int8") -> np.ndarray:
    """I-LayerNorm (I-ViT) over ``axis`` of length C, no ε:

    ``μ = round_half_away(Σx / C)``; ``y = x − μ``; ``Var = Σ y²`` (no division by C);
    ``k = newton_isqrt(Var, iters)``; ``yn = floor(y · floor((2^31 − 1)/k) / 2)``
    (scale ``√C/2^30``); ``acc = sat32(yn + beta_q[c])``;
    ``out = requantize(acc, m0[c], shift[c], out_zp, act_min, act_max)``.

    γ lives in ``M_c = γ_c·√C/(2^30·S_out)``, β in ``beta_q_c = round(β_c·2^30/(γ_c·√C))``
    (β in yn's units, as I-ViT adds it before the scale). A zero point on ``x`` cancels.
    """
    return _norm(x, beta_q, axis, iters, m0, shift, out_zp, act_min, act_max, dtype, True,
                 "ILayerNorm")


def i_rmsnorm(x: np.ndarray, beta_q: np.ndarray | None = None, *, axis: int = -1,
              iters: int = 10, m0: Any, shift: Any, out_zp: int = 0, act_min: int | None = None,
              act_max: int | None = None, dtype: Any = "int8") -> np.ndarray:
    """Integer RMSNorm: I-LayerNorm without the mean (``y = x``, symmetric input), so
    ``k ≈ √(Σx²)`` and ``yn = floor(x·floor((2^31 − 1)/k)/2)`` has scale ``√C/2^30``;
    γ in ``m0``/``shift``, optional ``beta_q`` as in :func:`i_layernorm`."""
    return _norm(x, beta_q, axis, iters, m0, shift, out_zp, act_min, act_max, dtype, False,
                 "IRMSNorm")
