"""Numba layout twins (concat, transpose, slice, gather) equal the NumPy references."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from kernel_cases import BITEXACT

from sdk.kernels import layout
from sdk.kernels.fast import layout as flayout

shapes = hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=4)
dtypes = st.sampled_from([np.int8, np.int16, np.float32])


def same(a: np.ndarray, b: np.ndarray) -> None:
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(a, b)


@BITEXACT
@given(data=st.data(), shape=shapes, dtype=dtypes)
def test_transpose(data, shape, dtype) -> None:
    x = data.draw(hnp.arrays(dtype, shape))
    perm = data.draw(st.none() | st.permutations(range(len(shape))))
    same(flayout.transpose(x, perm=perm), layout.transpose(x, perm=perm))


@BITEXACT
@given(data=st.data(), shape=shapes)
def test_slice(data, shape) -> None:
    x = data.draw(hnp.arrays(np.int8, shape))
    k = data.draw(st.integers(1, len(shape)))
    axes = data.draw(st.permutations(range(len(shape))))[:k]
    bound = st.one_of(st.integers(-6, 6), st.sampled_from([-(2**63), 2**63 - 1]))
    starts = [data.draw(bound) for _ in axes]
    ends = [data.draw(bound) for _ in axes]
    steps = [data.draw(st.sampled_from([-3, -2, -1, 1, 2, 3])) for _ in axes]
    same(flayout.slice_(x, starts, ends, axes, steps), layout.slice_(x, starts, ends, axes, steps))


@BITEXACT
@given(data=st.data(), shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4),
       idx_shape=hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=3))
def test_gather(data, shape, idx_shape) -> None:
    x = data.draw(hnp.arrays(np.int16, shape))
    axis = data.draw(st.integers(0, len(shape) - 1))
    n = shape[axis]
    idx = data.draw(hnp.arrays(np.int64, idx_shape, elements=st.integers(-n, n - 1)))
    same(flayout.gather(x, idx, axis=axis), layout.gather(x, idx, axis=axis))


@BITEXACT
@given(data=st.data(), shape=shapes, parts=st.integers(1, 3))
def test_concat(data, shape, parts) -> None:
    axis = data.draw(st.integers(0, len(shape) - 1))
    arrays = []
    for _ in range(parts):
        s = list(shape)
        s[axis] = data.draw(st.integers(0, 3))
        arrays.append(data.draw(hnp.arrays(np.int8, tuple(s))))
    same(flayout.concat(arrays, axis=axis), layout.concat(arrays, axis=axis))
