"""The SMLAD kernels' 32-bit requantization (firmware/src/kernels_packed.c requant_fast) and
their blocked paths at the edges of the int32 range.

The packer enables the 32-bit path only where it is provably the reference's bits
(op_encoders._fast_requant). Here: the formula itself, emulated in NumPy on extreme and random
values, equals sdk.kernels.requant for every (m0, shift, zero point, clamp) the packer accepts;
and the device, on both firmware builds, equals the reference for FC layers whose
accumulators span the whole int32 range, with the fast path on and off, through every blocked
path (3 input rows at a time, then single rows; an odd channel count)."""

from __future__ import annotations

import numpy as np
import pytest

from firmware_bridge.image import pack_image
from firmware_bridge.op_encoders import _fast_requant
from firmware_bridge.session import DeviceModel
from sdk.graph.ir import Graph, Tensor
from sdk.kernels.linear import fully_connected
from sdk.kernels.requant import requantize

I32_MIN, I32_MAX = -(2**31), 2**31 - 1


def _requant_fast_emulated(acc, m0, shift, zp, lo, hi):
    """kernels_packed.c requant_fast, step by step in int64 NumPy."""
    acc, m0, e = (np.asarray(v, np.int64) for v in (acc, m0, -np.asarray(shift)))
    t = (acc * m0 + (1 << 30)) >> 31
    s = np.minimum(t + (np.int64(1) << (e - 1)), I32_MAX)      # QADD (t + half > 0 only)
    v = ((s + (t >> 63)) >> e) + zp
    return np.clip(v, lo, hi)


def test_32bit_requantization_equals_the_reference_where_the_packer_allows_it():
    rng = np.random.default_rng(7)
    edges = np.array([I32_MIN, I32_MIN + 1, -(2**30) - 1, -(2**30), -1, 0, 1, 2**30, I32_MAX],
                     np.int64)
    checked = refused = 0
    for shift in range(-31, 3):
        for m0 in (2**30, 2**30 + 1, 1518500250, I32_MAX - 1, I32_MAX, 1, 12345):
            for zp, lo, hi in ((0, -128, 127), (-128, -128, 127), (127, -128, 127), (5, 5, 127),
                               (0, -32768, 32767), (-20, -128, 40)):
                acc = np.concatenate([edges, rng.integers(I32_MIN, I32_MAX, 300, np.int64),
                                      rng.integers(-5000, 5000, 100)])
                # the edges include acc = INT32_MAX with m0 = INT32_MAX: QADD saturates there
                a = {"m0": m0, "shift": shift, "out_zp": zp}
                if not _fast_requant(a, 1, hi):
                    refused += 1
                    continue
                ref = requantize(acc, np.int64(m0), np.int64(shift), zp, lo, hi, np.int64)
                got = _requant_fast_emulated(acc, m0, shift, zp, lo, hi)
                assert np.array_equal(got, ref), (m0, shift, zp, lo, hi)
                checked += 1
    assert checked > 1000 and refused > 0
    # the packer's limits: a left shift, shift 0, INT32_MIN, and e so large that the saturated
    # value 2^(31-e) - 1 + zp could fall below act_max
    assert not _fast_requant({"m0": 2**30, "shift": 1}, 1, 127)
    assert not _fast_requant({"m0": 2**30, "shift": 0}, 1, 127)
    assert not _fast_requant({"m0": I32_MIN, "shift": -3}, 1, 127)
    assert not _fast_requant({"m0": 2**30, "shift": -31, "out_zp": 0}, 1, 127)
    assert _fast_requant({"m0": 2**30, "shift": -23, "out_zp": -128}, 1, 127)
    assert not _fast_requant({"m0": [2**30, 2**30], "shift": [-3, 2]}, 2, 127)


def test_rounding_ties_of_the_32bit_path():
    """t exactly halfway between two multiples of 2^e, both signs: half away from zero."""
    for e in range(1, 24):
        for k in (-5, -1, 0, 1, 4):
            t = k * 2**e + 2 ** (e - 1)
            for tt in (t, -t):
                # acc * 2^30 (m0 = 2^30) gives t = acc / 2 exactly when acc is even
                acc = np.array([2 * tt], np.int64)
                if not I32_MIN <= acc[0] <= I32_MAX:
                    continue
                ref = requantize(acc, np.int64(2**30), np.int64(-e), 0, I32_MIN, I32_MAX,
                                 np.int64)
                got = _requant_fast_emulated(acc, 2**30, -e, 0, I32_MIN, I32_MAX)
                assert got[0] == ref[0], (e, tt)


def _fc_case(rng, rows: int, k: int, n: int, shift_range: tuple[int, int], zp: int,
             lo: int, hi: int):
    g = Graph("fc_edges")
    g.add_tensor(Tensor("x", "int8", (rows, k)))
    g.add_tensor(Tensor("y", "int8", (rows, n)))
    w = rng.choice(np.array([-127, -1, 0, 1, 127], np.int8), (n, k))
    bias = rng.integers(I32_MIN, I32_MAX, n, np.int64).astype(np.int32)   # whole int32 range
    m0 = rng.integers(2**30, 2**31, n, np.int64).astype(np.int32)
    m0[0] = I32_MAX
    shift = rng.integers(*shift_range, n).astype(np.int32)
    if shift_range[1] > 0:       # a left shift and e = 31 always present
        shift[0], shift[-1] = shift_range[1] - 1, -31
    g.add_constant("w", w)
    g.add_constant("b", bias)
    attrs = {"x_zp": int(rng.integers(-128, 128)), "m0": m0, "shift": shift, "out_zp": zp,
             "act_min": lo, "act_max": hi, "dtype": "int8"}
    g.add_node("QFullyConnected", ["x", "w", "b"], ["y"], **attrs)
    g.inputs, g.outputs = ["x"], ["y"]
    x = rng.choice(np.array([-128, 127, 0, -1], np.int8), (rows, k))
    return g, x, fully_connected(x, w, bias, **attrs), _fast_requant(attrs, n, hi)


@pytest.mark.parametrize("shift_range,zp,lo,hi,fast", [
    ((-24, 0), 3, -128, 127, 1),       # 32-bit path, SSAT clamp
    ((-22, 0), -128, -128, 127, 1),    # zero point at the bottom: saturation case still exact
    ((-12, -1), 7, 7, 100, 1),         # 32-bit path, activation clamp
    ((-31, 3), 0, -128, 127, 0),       # left shifts and e = 31: the general path
])
def test_packed_fc_bit_exact_at_int32_extremes(device, shift_range, zp, lo, hi, fast):
    rng = np.random.default_rng([abs(shift_range[0]), zp & 0xFF, hi])
    for rows, k, n in ((4, 5, 9), (1, 13, 6), (3, 30, 7)):
        g, x, ref, flag = _fc_case(rng, rows, k, n, shift_range, zp, lo, hi)
        assert flag == fast
        got = DeviceModel(device, pack_image(g)).run({"x": x})["y"]
        assert np.array_equal(got, ref), f"{rows}x{k}->{n}: {np.count_nonzero(got != ref)} differ"


@pytest.mark.parametrize("da,db,out", [("int16", "int8", "int8"), ("int8", "int8", "int16"),
                                       ("uint8", "int16", "int16"), ("int8", "uint8", "int8")])
def test_packed_matmul_operand_types(device, da, db, out):
    """QMatMul on the SMLAD path (kernels_packed.c matmul_packed): 8-bit operands with any
    zero point, int16 ones with zero point 0 (attention probabilities), int8/int16 outputs;
    odd K and N, M not a multiple of 3, a broadcast batch; a nonzero int16 zero point takes
    the generic loop. All bit-exact with sdk.kernels.linear.qmatmul."""
    from sdk.kernels.linear import qmatmul

    rng = np.random.default_rng([len(da), len(db), len(out)])
    lo_hi = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767)}
    def operand(dt, shape):
        lo, hi = lo_hi[dt]
        return rng.integers(lo, hi + 1, shape).astype(dt)

    def zp(dt, zp16):
        return zp16 if dt == "int16" else int(rng.integers(-128, 128))

    for m, k, n, zp16 in ((7, 5, 3, 0), (3, 64, 32, 0), (4, 9, 2, 3), (1, 1, 1, 0)):
        a, b = operand(da, (2, m, k)), operand(db, (k, n))
        m0, sh = (rng.integers(2**30, 2**31, n).astype(np.int32),
                  rng.integers(-20, -8, n).astype(np.int32))
        lo, hi = lo_hi[out]
        attrs = {"a_zp": zp(da, zp16), "b_zp": zp(db, zp16), "m0": m0, "shift": sh,
                 "out_zp": int(rng.integers(-5, 5)), "act_min": lo, "act_max": hi, "dtype": out}
        ref = qmatmul(a, b, **attrs)
        g = Graph("mm")
        g.add_tensor(Tensor("a", da, a.shape))
        g.add_tensor(Tensor("b", db, b.shape))
        g.add_tensor(Tensor("y", out, ref.shape))
        g.add_node("QMatMul", ["a", "b"], ["y"], **attrs)
        g.inputs, g.outputs = ["a", "b"], ["y"]
        got = DeviceModel(device, pack_image(g)).run({"a": a, "b": b})["y"]
        assert np.array_equal(got, ref), f"{(m, k, n)}: {np.count_nonzero(got != ref)} differ"
