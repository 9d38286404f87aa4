"""The shared rounding rule against values computed by hand from the TFLite / gemmlowp C
definitions, and its Numba scalar twin against it."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from kernel_cases import BITEXACT

from sdk.kernels import requant as R
from sdk.kernels.fast import requant as F

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


@pytest.mark.parametrize("a,b,expected", [
    (2**30, 2**30, 2**29),          # 0.25 · 2^31 exactly
    (3, 2**30, 2),                  # 1.5: (3·2^30 + 2^30) / 2^31 = 2
    (-3, 2**30, -1),                # −1.5: (−3·2^30 + 1 − 2^30) / 2^31 truncates to −1
    (1, 2**30, 1),                  # 0.5 → 1
    (-1, 2**30, 0),                 # −0.5 → 0 (gemmlowp's nudge, truncating division)
    (-5, 2**30, -2),                # −2.5 → −2
    (INT32_MIN, INT32_MIN, INT32_MAX),  # the one saturating case
    (INT32_MAX, INT32_MAX, INT32_MAX - 1),
    (INT32_MIN, INT32_MAX, -(INT32_MAX)),
    (1000, 1518500250, 707),        # 1000 · 0.70710678 = 707.1
])
def test_srdhm_matches_gemmlowp(a: int, b: int, expected: int) -> None:
    assert int(R.saturating_rounding_doubling_high_mul(a, b)) == expected
    assert F.srdhm(a, b) == expected


@pytest.mark.parametrize("x,e,expected", [
    (5, 1, 3), (-5, 1, -3),         # ±2.5 → ±3 (half away from zero)
    (6, 2, 2), (-6, 2, -2),         # ±1.5 → ±2
    (7, 2, 2), (-7, 2, -2),         # ±1.75 → ±2
    (5, 2, 1), (-5, 2, -1),         # ±1.25 → ±1
    (-4, 1, -2), (0, 5, 0), (123, 0, 123),
    (INT32_MIN, 31, -1), (INT32_MAX, 31, 1),
])
def test_rounding_divide_by_pot(x: int, e: int, expected: int) -> None:
    assert int(R.rounding_divide_by_pot(x, e)) == expected
    assert F.rdpot(x, e) == expected


@pytest.mark.parametrize("m,expected", [
    (0.5, (2**30, 0)), (1.0, (2**30, 1)), (0.75, (1610612736, 0)),
    (0.0, (0, 0)), (2.0**-40, (0, 0)), (-0.5, (-(2**30), 0)),
    (1.0 - 2.0**-40, (2**30, 1)),   # rounds up to 2^31, renormalised
])
def test_quantize_multiplier(m: float, expected: tuple[int, int]) -> None:
    assert R.quantize_multiplier(m) == expected


@pytest.mark.parametrize("x,m,expected", [
    (1000, 0.5, 500), (-3, 0.5, -1), (-3, 0.25, -1), (3, 0.25, 1), (-2, 0.25, -1),
    (255 * 127, 1.0 / 255, 127), (100, 3.0, 300), (2**26, 16.0, -(2**30)),  # 2^26<<5 wraps to -2^31
])
def test_mbqm_hand_values(x: int, m: float, expected: int) -> None:
    m0, shift = R.quantize_multiplier(m)
    assert int(R.mbqm(x, m0, shift)) == expected
    assert F.mbqm(x, m0, shift) == expected


def test_requantize_clamps_and_adds_zero_point() -> None:
    m0, shift = R.quantize_multiplier(0.01)
    out = R.requantize(np.array([-100000, -50, 0, 50, 100000]), m0, shift, 10, -128, 127)
    assert out.tolist() == [-128, 9, 10, 11, 127]  # ±0.5 rounds away from zero


def test_round_half_away_div() -> None:
    num = np.array([5, -5, 7, -7, 6, -6, 0])
    assert R.round_half_away_div(num, 2).tolist() == [3, -3, 4, -4, 3, -3, 0]
    assert R.round_half_away_div(num, 3).tolist() == [2, -2, 2, -2, 2, -2, 0]


@BITEXACT
@given(x=st.integers(INT32_MIN, INT32_MAX), m0=st.integers(INT32_MIN, INT32_MAX),
       shift=st.integers(-31, 30), zp=st.integers(-128, 127))
def test_fast_requant_is_bit_exact(x: int, m0: int, shift: int, zp: int) -> None:
    ref = int(R.requantize(np.int64(x), m0, shift, zp, -128, 127, np.int64))
    assert F.requant(x, m0, shift, zp, -128, 127) == ref
