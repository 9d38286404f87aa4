"""Integer convolutions, ONNX layout (NCHW / NCL), padding with the input zero point.

For output channel ``o`` in group ``g = o // (O/group)``:

``acc[n, o, y, x] = wrap32(bias[o] + Σ_{c, i, j} (xp[n, g·C/group + c, y·sh + i·dh, x·sw + j·dw]
− x_zp) · w[o, c, i, j])``

where ``xp`` is ``x`` padded by ``pads = [top, left, bottom, right]`` with the value ``x_zp``
(so padding contributes zero), and
``out = requantize(acc, m0[o], shift[o], out_zp, act_min, act_max)``.
Output size: ``OH = (H + top + bottom − dh·(kh − 1) − 1) // sh + 1`` (likewise OW).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sdk.errors import GraphError, InputError
from sdk.kernels.checks import (
    channel_vector,
    check_range,
    int_tuple,
    integer_array,
    non_negative,
    out_dtype,
    positive,
)
from sdk.kernels.requant import requantize, wrap_int32


@dataclass(frozen=True)
class ConvGeometry:
    """Checked shapes and attributes of one 2-D convolution."""

    n: int
    c: int
    h: int
    w: int
    o: int
    kh: int
    kw: int
    group: int
    strides: tuple[int, int]
    pads: tuple[int, int, int, int]
    dilations: tuple[int, int]
    oh: int
    ow: int


def conv_geometry(x_shape: tuple[int, ...], w_shape: tuple[int, ...], strides: Any,
                  pads: Any, dilations: Any, group: int) -> ConvGeometry:
    """Check a 2-D convolution's shapes/attributes and compute its output size."""
    if len(x_shape) != 4 or len(w_shape) != 4:
        raise InputError(f"Conv2d needs x [N,C,H,W] and w [O,C/group,kh,kw], got {x_shape} "
                         f"and {w_shape}")
    n, c, h, w = x_shape
    o, cg, kh, kw = w_shape
    st = int_tuple(strides, 2, "strides")
    pd = int_tuple(pads, 4, "pads")
    dl = int_tuple(dilations, 2, "dilations")
    positive(st, "strides")
    positive(dl, "dilations")
    non_negative(pd, "pads")
    group = int(group)
    if group < 1 or c % group or o % group or c // group != cg:
        raise GraphError(f"Conv group={group} does not fit input channels {c}, output channels "
                         f"{o} and weights {w_shape}: need C % group == 0, O % group == 0 and "
                         "w.shape[1] == C/group")
    oh = (h + pd[0] + pd[2] - dl[0] * (kh - 1) - 1) // st[0] + 1
    ow = (w + pd[1] + pd[3] - dl[1] * (kw - 1) - 1) // st[1] + 1
    if oh < 0 or ow < 0 or kh < 1 or kw < 1:
        raise InputError(f"Conv kernel {kh}x{kw} (dilations {dl}) is larger than the padded "
                         f"input {h}x{w} (pads {pd}); add padding or use a smaller kernel")
    return ConvGeometry(n, c, h, w, o, kh, kw, group, st, pd, dl, max(oh, 0), max(ow, 0))


def conv2d_int32(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, g: ConvGeometry,
                 x_zp: int) -> np.ndarray:
    """The int32 accumulator ``acc[n, o, y, x]`` of the module formula."""
    t, l, b, r = g.pads
    xs = np.pad(x.astype(np.int64) - x_zp, ((0, 0), (0, 0), (t, b), (l, r)))
    w64 = w.astype(np.int64)
    acc = np.zeros((g.n, g.o, g.oh, g.ow), dtype=np.int64)
    cg, og = g.c // g.group, g.o // g.group
    sh, sw = g.strides
    dh, dw = g.dilations
    for grp in range(g.group):
        xg = xs[:, grp * cg:(grp + 1) * cg]
        wg = w64[grp * og:(grp + 1) * og]
        for i in range(g.kh):
            for j in range(g.kw):
                patch = xg[:, :, i * dh:i * dh + sh * (g.oh - 1) + 1:sh,
                           j * dw:j * dw + sw * (g.ow - 1) + 1:sw]
                acc[:, grp * og:(grp + 1) * og] += np.einsum("nchw,oc->nohw", patch,
                                                             wg[:, :, i, j])
    if bias is not None:
        acc += channel_vector(bias, g.o, "Conv bias", np.int64)[None, :, None, None]
    return wrap_int32(acc)


def conv2d(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None = None, *,
           strides: Any = (1, 1), pads: Any = (0, 0, 0, 0), dilations: Any = (1, 1),
           group: int = 1, x_zp: int = 0, m0: Any, shift: Any, out_zp: int = 0,
           act_min: int | None = None, act_max: int | None = None, dtype: Any = "int8") -> np.ndarray:
    """QConv2d (see the module docstring for the formula)."""
    x = integer_array(x, "Conv input")
    w = integer_array(w, "Conv weights")
    g = conv_geometry(x.shape, w.shape, strides, pads, dilations, group)
    dt = out_dtype(dtype)
    act_min, act_max = check_range(act_min, act_max, dt)
    acc = conv2d_int32(x, w, bias, g, x_zp)
    m = channel_vector(m0, g.o, "m0")[None, :, None, None]
    s = channel_vector(shift, g.o, "shift")[None, :, None, None]
    return requantize(acc, m, s, out_zp, act_min, act_max, dt)


def depthwise_conv2d(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None = None, *,
                     strides: Any = (1, 1), pads: Any = (0, 0, 0, 0), dilations: Any = (1, 1),
                     group: int | None = None, x_zp: int = 0, m0: Any, shift: Any,
                     out_zp: int = 0, act_min: int | None = None, act_max: int | None = None,
                     dtype: Any = "int8") -> np.ndarray:
    """QDepthwiseConv2d: QConv2d with ``group = C`` and weights ``[C·mult, 1, kh, kw]``
    (output channel ``o`` reads input channel ``o // mult``)."""
    x = integer_array(x, "DepthwiseConv input")
    c = x.shape[1] if x.ndim == 4 else -1
    if group is not None and int(group) != c:
        raise GraphError(f"DepthwiseConv2d needs group == C ({c}), got {group}")
    if np.ndim(w) != 4 or np.shape(w)[1] != 1:
        raise InputError(f"DepthwiseConv2d weights must be [C*mult, 1, kh, kw], got "
                         f"{np.shape(w)}")
    return conv2d(x, w, bias, strides=strides, pads=pads, dilations=dilations, group=c,
                  x_zp=x_zp, m0=m0, shift=shift, out_zp=out_zp, act_min=act_min,
                  act_max=act_max, dtype=dtype)


def conv1d(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None = None, *, stride: Any = 1,
           pads: Any = (0, 0), dilation: Any = 1, group: int = 1, x_zp: int = 0, m0: Any,
           shift: Any, out_zp: int = 0, act_min: int | None = None, act_max: int | None = None,
           dtype: Any = "int8") -> np.ndarray:
    """QConv1d on ``x [N, C, L]``, ``w [O, C/group, k]``, ``pads = [left, right]``: the 2-D
    formula with ``H = kh = 1``: ``acc[n,o,t] = wrap32(bias[o] + Σ_{c,j} (xp[n, c', t·s + j·d]
    − x_zp)·w[o, c, j])``."""
    x = integer_array(x, "Conv1d input")
    w = integer_array(w, "Conv1d weights")
    if x.ndim != 3 or w.ndim != 3:
        raise InputError(f"Conv1d needs x [N,C,L] and w [O,C/group,k], got {x.shape} and "
                         f"{w.shape}")
    pl, pr = int_tuple(pads, 2, "pads")
    out = conv2d(x[:, :, None, :], w[:, :, None, :], bias,
                 strides=(1, int_tuple(stride, 1, "stride")[0]), pads=(0, pl, 0, pr),
                 dilations=(1, int_tuple(dilation, 1, "dilation")[0]), group=group, x_zp=x_zp,
                 m0=m0, shift=shift, out_zp=out_zp, act_min=act_min, act_max=act_max,
                 dtype=dtype)
    return out[:, :, 0, :]
