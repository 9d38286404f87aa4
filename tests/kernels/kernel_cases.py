"""Hypothesis strategies shared by the kernel tests: int8 tensors with edge values, zero
points, dyadic multipliers (including 0, negative and saturating ones)."""

from __future__ import annotations

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

# Bit-exactness tests: enough random cases to hit edges, few enough for the 2-minute budget.
BITEXACT = settings(max_examples=40, deadline=None)

int8_values = st.integers(-128, 127)
zero_points = st.one_of(st.sampled_from([-128, 0, 127]), st.integers(-128, 127))
# Q31 multipliers as quantize_multiplier makes them, plus the corner cases of the rule.
m0s = st.one_of(st.integers(2**30, 2**31 - 1), st.integers(-(2**31) + 1, -(2**30)),
                st.sampled_from([0, 2**30, 2**31 - 1, -(2**31)]))
# Realistic right shifts dominate; some left shifts exercise the int32 wrap.
shifts = st.one_of(st.integers(-31, 0), st.integers(1, 12))


def int_tensor(shape, dtype=np.int8, lo=None, hi=None):
    info = np.iinfo(dtype)
    lo = info.min if lo is None else lo
    hi = info.max if hi is None else hi
    return hnp.arrays(dtype, shape, elements=st.integers(lo, hi))


@st.composite
def out_clamp(draw, dtype=np.int8):
    """``(out_zp, act_min, act_max)`` inside ``dtype``, sometimes a fused-ReLU-like clamp."""
    info = np.iinfo(dtype)
    zp = draw(st.integers(int(info.min), int(info.max)))
    lo = draw(st.sampled_from([int(info.min), zp, None]))
    hi = draw(st.sampled_from([int(info.max), None]))
    lo = int(info.min) if lo is None else lo
    hi = int(info.max) if hi is None else max(hi, lo)
    return zp, lo, hi


def dims(lo=0, hi=4):
    return st.integers(lo, hi)
