"""Argument checks shared by the integer kernels: one-line errors that name the fix."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from sdk.errors import GraphError, InputError

_INT_DTYPES = {"int8": np.int8, "uint8": np.uint8, "int16": np.int16, "int32": np.int32}


def out_dtype(dtype: Any) -> np.dtype:
    """The integer output dtype named by an op's ``dtype`` attribute."""
    name = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
    if name not in _INT_DTYPES:
        raise GraphError(f"integer op output dtype {dtype!r} is not supported; "
                         f"use one of {sorted(_INT_DTYPES)}")
    return np.dtype(_INT_DTYPES[name])


def integer_array(x: Any, what: str) -> np.ndarray:
    """``x`` as an integer ndarray, or an InputError naming the tensor."""
    a = np.asarray(x)
    if not np.issubdtype(a.dtype, np.integer):
        raise InputError(f"{what} must be an integer tensor, got dtype {a.dtype}; "
                         "quantize it first (QuantizeLinear)")
    return a


def int_tuple(v: Any, n: int, what: str) -> tuple[int, ...]:
    """An attribute as a tuple of ``n`` ints (a scalar is repeated)."""
    t = tuple(int(e) for e in np.atleast_1d(np.asarray(v)).ravel())
    if len(t) == 1 and n > 1:
        t = t * n
    if len(t) != n:
        raise GraphError(f"attribute {what} needs {n} values, got {list(t)}")
    return t


def channel_vector(v: Any, n: int, what: str, dtype: Any = np.int32) -> np.ndarray:
    """A per-channel attribute (``m0``, ``shift``, ``bias``) of length ``n`` (scalars broadcast)."""
    a = np.asarray(v, dtype=np.int64).ravel()
    if a.size == 1:
        a = np.repeat(a, n)
    if a.size != n:
        raise GraphError(f"{what} has {a.size} entries but the op has {n} output channels; "
                         f"give one per channel or a single value")
    return a.astype(dtype)


def check_range(act_min: int | None, act_max: int | None, dtype: np.dtype) -> tuple[int, int]:
    """The output clamp ``[act_min, act_max]`` (None: the dtype's bound), checked to be
    non-empty and inside the output dtype."""
    info = np.iinfo(dtype)
    act_min = int(info.min) if act_min is None else int(act_min)
    act_max = int(info.max) if act_max is None else int(act_max)
    if not (info.min <= act_min <= act_max <= info.max):
        raise GraphError(f"output clamp [{act_min}, {act_max}] is empty or outside {dtype.name} "
                         f"[{info.min}, {info.max}]; fix act_min/act_max")
    return act_min, act_max


def positive(values: Sequence[int], what: str) -> None:
    if any(v <= 0 for v in values):
        raise GraphError(f"attribute {what} must be positive, got {list(values)}")


def non_negative(values: Sequence[int], what: str) -> None:
    if any(v < 0 for v in values):
        raise GraphError(f"attribute {what} must be >= 0, got {list(values)}")
