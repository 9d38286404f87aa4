"""Shape rules of the integer ops: ``rule(shapes, dtypes, values, attrs) -> [(shape, dtype)]``.

The same signature as the float rules of :mod:`sdk.ops.shapes`, which consults an op's
:attr:`~sdk.ops.schema.OpDef.shape` before falling back to running the kernel on zeros.
Dimensions of ``-1`` are known only at run time and propagate. A requantizing op's output
dtype is its ``dtype`` attribute (int8 when absent); other ops keep their input's dtype.
"""

from __future__ import annotations

from typing import Any

DYN = -1


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _out_dtype(dtypes: list, attrs: dict, requantizes: bool) -> str:
    if "dtype" in attrs and attrs["dtype"] is not None:
        return _text(attrs["dtype"])
    return "int8" if requantizes else dtypes[0]


def _broadcast(*shapes: tuple[int, ...]) -> tuple[int, ...]:
    rank = max(len(s) for s in shapes)
    out = []
    for i in range(rank):
        dims = [s[len(s) - rank + i] for s in shapes if len(s) - rank + i >= 0]
        known = [d for d in dims if d not in (1, DYN)]
        out.append(known[0] if known else (DYN if DYN in dims else 1))
    return tuple(out)


def same_rule(shapes: list, dtypes: list, values: list, attrs: dict) -> list:
    """Output shaped like the first input."""
    return [(tuple(shapes[0]), _out_dtype(dtypes, attrs, "m0" in attrs))]


def broadcast_rule(shapes: list, dtypes: list, values: list, attrs: dict) -> list:
    """Output of the two inputs broadcast (ONNX multidirectional)."""
    return [(_broadcast(shapes[0], shapes[1]), _out_dtype(dtypes, attrs, True))]


def fc_rule(shapes: list, dtypes: list, values: list, attrs: dict) -> list:
    """x ``[..., K]``, w ``[N, K]`` → ``[..., N]``."""
    return [(tuple(shapes[0][:-1]) + (shapes[1][0],), _out_dtype(dtypes, attrs, True))]


def matmul_rule(shapes: list, dtypes: list, values: list, attrs: dict) -> list:
    """a ``[..., M, K]``, b ``[..., K, N]`` → ``[..., M, N]`` with batch dims broadcast."""
    a, b = shapes[0], shapes[1]
    batch = _broadcast(tuple(a[:-2]), tuple(b[:-2])) if len(a) > 2 or len(b) > 2 else ()
    return [(batch + (a[-2], b[-1]), _out_dtype(dtypes, attrs, True))]


def _window(n: int, k: int, s: int, d: int, pb: int, pe: int) -> int:
    return DYN if n == DYN else (n + pb + pe - d * (k - 1) - 1) // s + 1


def _per_axis(v: Any, k: int, default: int) -> list[int]:
    if v is None:
        return [default] * k
    t = [int(e) for e in (v if isinstance(v, (list, tuple)) else [v])]
    return t * k if len(t) == 1 else t


def _spatial(x: tuple, kernel: list[int], strides: Any, dilations: Any, pads: Any) -> list[int]:
    k = len(kernel)
    st, dl = _per_axis(strides, k, 1), _per_axis(dilations, k, 1)
    pd = _per_axis(pads, 2 * k, 0)
    return [_window(x[2 + i], kernel[i], st[i], dl[i], pd[i], pd[i + k]) for i in range(k)]


def conv_rule(shapes: list, dtypes: list, values: list, attrs: dict) -> list:
    """x ``[N, C, *S]``, w ``[O, C/g, *k]`` → ``[N, O, *S']`` (1-D and 2-D)."""
    x, w = shapes[0], shapes[1]
    kernel = list(w[2:])
    if len(kernel) == 1:
        sp = _spatial(x, kernel, attrs.get("stride", 1), attrs.get("dilation", 1),
                      attrs.get("pads", (0, 0)))
    else:
        sp = _spatial(x, kernel, attrs.get("strides"), attrs.get("dilations"),
                      attrs.get("pads"))
    return [((x[0], w[0], *sp), _out_dtype(dtypes, attrs, True))]


def pool_rule(shapes: list, dtypes: list, values: list, attrs: dict) -> list:
    x = shapes[0]
    sp = _spatial(x, list(attrs["kernel"]), attrs.get("strides"), attrs.get("dilations"),
                  attrs.get("pads"))
    return [((x[0], x[1], *sp), dtypes[0])]


def gap_rule(shapes: list, dtypes: list, values: list, attrs: dict) -> list:
    x = shapes[0]
    return [((x[0], x[1]) + (1,) * (len(x) - 2), _out_dtype(dtypes, attrs, True))]


def resize_rule(shapes: list, dtypes: list, values: list, attrs: dict) -> list | None:
    sizes = attrs.get("sizes")
    if sizes is None:
        return None  # scales only: the kernel decides (abstract evaluation)
    return [(tuple(int(s) for s in sizes), dtypes[0])]
