"""The op schema, iterated: every integer op has a spec, a twin that matches it bit for bit, a
shape rule, a cost formula and a docs row; every exporter encodes an op or says why not; the
firmware's C opcode enum matches the Python table."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from firmware_bridge.op_encoders import ENCODERS, OPCODES
from sdk.backends.onnxruntime.export import EXPORTERS
from sdk.compile.tflite_writer import SUPPORTED_OPS as TFLITE_OPS
from sdk.errors import GraphError
from sdk.graph.ir import Graph, Node, Tensor
from sdk.kernels.elementwise import add_params
from sdk.kernels.requant import quantize_multiplier, quantize_multiplier_array
from sdk.kernels.transformer import shift_gelu_n
from sdk.ops.cost import node_cost
from sdk.ops.registry import load_all
from sdk.ops.schema import SCHEMA, Cost, load_schema

ROOT = Path(__file__).resolve().parents[2]
Example = Callable[[np.random.Generator], tuple[list[Any], dict[str, Any]]]


def _i8(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.integers(-128, 128, size=shape, dtype=np.int8)


def _mult(rng: np.random.Generator, n: int | None = None, lo: float = 1e-4, hi: float = 0.9):
    """(m0, shift) of random real multipliers (one, or a per-channel vector of n)."""
    if n is None:
        return quantize_multiplier(float(rng.uniform(lo, hi)))
    m0, sh = quantize_multiplier_array(rng.uniform(lo, hi, n))
    return m0.astype(np.int64), sh.astype(np.int64)


def _requant(rng: np.random.Generator, n: int | None = None, **kw: Any) -> dict[str, Any]:
    m0, sh = _mult(rng, n, **kw)
    return {"m0": m0, "shift": sh, "out_zp": int(rng.integers(-5, 6))}


def _conv(rng, x, w, **attrs):
    o = w.shape[0]
    bias = rng.integers(-2000, 2000, o).astype(np.int32)
    return [x, w, bias], {"x_zp": int(rng.integers(-3, 4)), **attrs,
                          **_requant(rng, o, lo=1e-4, hi=1e-2)}


def _norm(rng):
    x = rng.integers(-600, 600, (2, 3, 16)).astype(np.int16)
    beta = rng.integers(-2**20, 2**20, 16).astype(np.int32)
    return [x, beta], {"iters": 10, **_requant(rng, 16, lo=1e-5, hi=1e-3)}


# One example per integer (and boundary) op: a real call the twin must match bit for bit.
# Declaring a new op without adding its example here fails test_every_integer_op_has_an_example.
EXAMPLES: dict[str, Example] = {
    "QuantizeLinear": lambda r: ([r.normal(0, 3, (2, 3, 4)).astype(np.float32)],
                                {"scale": np.float32(0.05), "zero_point": np.int8(3),
                                 "dtype": "int8"}),
    "DequantizeLinear": lambda r: ([_i8(r, 2, 5)], {"scale": np.float32(0.1),
                                                    "zero_point": np.int8(2)}),
    "Requantize": lambda r: ([r.integers(-2**20, 2**20, (2, 5)).astype(np.int32)],
                             {"in_zp": 0, **_requant(r, lo=1e-5, hi=1e-3)}),
    "QFullyConnected": lambda r: ([_i8(r, 3, 8), _i8(r, 4, 8),
                                   r.integers(-500, 500, 4).astype(np.int32)],
                                  {"x_zp": -1, **_requant(r, 4, lo=1e-3, hi=5e-2)}),
    "QMatMul": lambda r: ([_i8(r, 2, 3, 5), _i8(r, 2, 5, 4)],
                          {"a_zp": 1, "b_zp": 0, **_requant(r, lo=1e-3, hi=5e-2)}),
    "QConv1d": lambda r: _conv(r, _i8(r, 1, 4, 10), _i8(r, 6, 4, 3), stride=1, pads=(1, 1)),
    "QConv2d": lambda r: _conv(r, _i8(r, 1, 3, 8, 8), _i8(r, 4, 3, 3, 3), strides=(2, 2),
                               pads=(1, 1, 1, 1)),
    "QDepthwiseConv2d": lambda r: _conv(r, _i8(r, 1, 4, 6, 6), _i8(r, 4, 1, 3, 3), group=4,
                                        pads=(1, 1, 1, 1)),
    "QAdd": lambda r: ([_i8(r, 2, 6), _i8(r, 2, 6)],
                       {"a_zp": 3, "b_zp": -2, "out_zp": 1, **add_params(0.1, 0.07, 0.12, 20)}),
    "QMul": lambda r: ([_i8(r, 2, 6), _i8(r, 1, 6)],
                       {"a_zp": 3, "b_zp": -2, **_requant(r, lo=1e-3, hi=1e-2)}),
    "QClamp": lambda r: ([_i8(r, 3, 7)], {"min": -10, "max": 50}),
    "QLut": lambda r: ([_i8(r, 4, 9), _i8(r, 256)], {}),
    "QMaxPool2d": lambda r: ([_i8(r, 1, 2, 6, 6)], {"kernel": (2, 2), "strides": (2, 2)}),
    "QAvgPool2d": lambda r: ([_i8(r, 1, 2, 6, 6)], {"kernel": (3, 3), "pads": (1, 1, 1, 1)}),
    "QGlobalAvgPool": lambda r: ([_i8(r, 1, 3, 4, 4)], {"x_zp": 2, **_requant(r, lo=1e-3,
                                                                            hi=5e-2)}),
    "Shiftmax": lambda r: ([_i8(r, 2, 4, 7)], {"axis": -1, "x0": -20, "n": 15,
                                                "out_bits": 16}),
    "ShiftGELU": lambda r: ([_i8(r, 2, 16)], {"x0": -12, "n": shift_gelu_n(-12),
                                              **_requant(r, lo=1e-3, hi=1e-2)}),
    "ILayerNorm": _norm,
    "IRMSNorm": _norm,
    "ResizeNearest": lambda r: ([_i8(r, 1, 2, 3, 3)], {"sizes": (1, 2, 6, 5)}),
    "ResizeBilinear": lambda r: ([_i8(r, 1, 2, 3, 4)], {"sizes": (1, 2, 7, 8),
                                                        "coord_mode": "half_pixel",
                                                        "zero_point": -3}),
    "KVCacheWrite": lambda r: ([_i8(r, 1, 2, 8, 4), _i8(r, 1, 2, 3, 4), np.int32(2)], {}),
    "CausalMask": lambda r: ([r.integers(-3000, 3000, (1, 2, 3, 8)).astype(np.int16),
                              np.int32(4)], {}),
}

SCHEMA_NOW = load_schema()
KERNEL_OPS = sorted(n for n, d in SCHEMA_NOW.items()
                    if d.family in ("integer", "boundary") or d.spec is not None)


def _run(op: str, fast: bool, seed: int) -> tuple[list[np.ndarray], list, dict]:
    inputs, attrs = EXAMPLES[op](np.random.default_rng(seed))
    return load_all()[op](list(inputs), attrs, fast), inputs, attrs


def test_every_registered_op_is_declared_and_every_declared_op_has_a_kernel() -> None:
    ops = load_all()
    assert sorted(set(ops) - set(SCHEMA)) == []
    assert sorted(set(SCHEMA) - set(ops)) == []


@pytest.mark.parametrize("op", KERNEL_OPS)
def test_every_integer_op_has_an_example(op: str) -> None:
    assert op in EXAMPLES, f"add an example call of {op} to EXAMPLES"


@pytest.mark.parametrize("op", KERNEL_OPS)
def test_integer_op_has_a_spec_in_kernels_and_a_twin_in_kernels_fast(op: str) -> None:
    d = SCHEMA[op]
    assert d.spec and d.spec.startswith("sdk.kernels.") and ".fast." not in d.spec
    assert d.twin and d.twin.startswith("sdk.kernels.fast.")
    spec, twin = d.kernel(False), d.kernel(True)
    assert spec is not twin
    assert spec.__doc__ and twin.__doc__, "the formula lives in the spec's docstring"


@pytest.mark.parametrize("op", KERNEL_OPS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_twin_matches_spec_bit_for_bit(op: str, seed: int) -> None:
    ref, _, _ = _run(op, False, seed)
    fast, _, _ = _run(op, True, seed)
    assert len(ref) == len(fast)
    for a, b in zip(ref, fast):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("op", [o for o in KERNEL_OPS if SCHEMA_NOW[o].family != "boundary"])
def test_shape_rule_predicts_the_kernels_output(op: str) -> None:
    d = SCHEMA[op]
    assert d.shape is not None, f"{op} declares no shape rule"
    out, inputs, attrs = _run(op, False, 0)
    shapes = [None if a is None else tuple(np.shape(a)) for a in inputs]
    dtypes = [None if a is None else np.asarray(a).dtype.name for a in inputs]
    predicted = d.shape(shapes, dtypes, [None] * len(inputs), attrs)
    assert [(tuple(s), dt) for s, dt in predicted] == [(o.shape, o.dtype.name) for o in out]


def _graph_of(op: str) -> tuple[Graph, Node, list[np.ndarray]]:
    out, inputs, attrs = _run(op, False, 0)
    d = SCHEMA[op]
    g = Graph(op)
    names = []
    for k, a in enumerate(inputs):
        name = d.inputs[k].rstrip("?")
        names.append(name)
        a = np.asarray(a)
        g.add_tensor(Tensor(name, a.dtype.name, tuple(a.shape), data=a if k else None))
    g.add_tensor(Tensor("y", out[0].dtype.name, tuple(out[0].shape)))
    node = Node(op, names, ["y"], attrs, "n")
    g.nodes.append(node)
    g.inputs, g.outputs = [names[0]], ["y"]
    return g, node, out


@pytest.mark.parametrize("op", KERNEL_OPS)
def test_cost_formula_counts_the_example(op: str) -> None:
    g, node, out = _graph_of(op)
    cost = node_cost(g, node)
    assert isinstance(cost, Cost)
    assert min(cost.macs, cost.adds, cost.muls, cost.requants, cost.other) >= 0
    n = out[0].size
    if "requantizes" in SCHEMA[op].traits:
        assert cost.requants == n
    if op == "QFullyConnected":      # rows·N·K
        assert cost.macs == 3 * 4 * 8
    if op == "QConv2d":              # |out|·(C/g)·kh·kw
        assert cost.macs == n * 3 * 3 * 3
    if op == "QMatMul":              # |out|·K
        assert cost.macs == n * 5


def _docs_ops() -> set[str]:
    text = (ROOT / "docs" / "ops.md").read_text()
    return set(re.findall(r"^\| `(\w+)` \|", text, re.M)) | set(re.findall(r"`(\w+)`", text))


@pytest.mark.parametrize("op", sorted(n for n, d in SCHEMA_NOW.items() if d.family != "float"))
def test_every_integer_layout_and_boundary_op_has_a_docs_row(op: str) -> None:
    text = (ROOT / "docs" / "ops.md").read_text()
    if SCHEMA[op].family in ("integer", "boundary"):
        assert re.search(rf"^\| `{op}` \|", text, re.M), f"docs/ops.md has no row for {op}"
    else:
        assert op in _docs_ops(), f"docs/ops.md does not mention the layout op {op}"


@pytest.mark.parametrize("op", sorted(n for n, d in SCHEMA_NOW.items() if d.family != "float"))
def test_every_exporter_encodes_the_op_or_says_why_not(op: str) -> None:
    d = SCHEMA[op]
    if d.family != "boundary":
        if d.firmware is not None:
            assert op in ENCODERS and d.firmware in OPCODES, op
        else:
            assert op not in ENCODERS and d.firmware_why_not, op
    for exporter, table in (("onnxruntime", EXPORTERS), ("tflite", TFLITE_OPS)):
        encoded = op in table
        why = d.exporters_skip.get(exporter)
        assert encoded != bool(why), (
            f"{op}: the {exporter} exporter {'encodes it and' if encoded else 'neither encodes it nor'}"
            f" {'gives a reason not to' if why else 'says why not'}")


def test_firmware_opcode_enum_matches_the_python_table() -> None:
    src = (ROOT / "firmware_bridge" / "firmware" / "src" / "model.c").read_text()
    enum = dict((name, int(v)) for name, v in re.findall(r"\bOP_([A-Z0-9_]+) = (\d+)", src))
    # the op encoders' table, and the exit rules the firmware evaluates between stages
    from sdk.exits.device import OPCODES as EXIT_OPCODES

    assert enum == {**OPCODES, **{f"EXIT_{k.upper()}": v for k, v in EXIT_OPCODES.items()}}
    assert re.search(r"OP_COUNT\b", src)


def test_prepare_fills_defaults_and_types() -> None:
    p = SCHEMA["QFullyConnected"].prepare({"m0": [1 << 30], "shift": np.int64(-3)})
    assert p["x_zp"] == 0 and p["out_zp"] == 0 and p["dtype"] == "int8"
    assert p["shift"] == -3 and p["m0"].dtype == np.int64


def test_an_attribute_the_op_does_not_take_is_refused_in_one_line() -> None:
    _, attrs = EXAMPLES["QAdd"](np.random.default_rng(0))
    with pytest.raises(GraphError, match="QAdd does not take attribute.*saturate") as e:
        load_all()["QAdd"]([_i8(np.random.default_rng(0), 2), _i8(np.random.default_rng(1), 2)],
                           {**attrs, "saturate": 1}, False)
    assert "\n" not in str(e.value)


def test_a_missing_required_attribute_is_named() -> None:
    with pytest.raises(GraphError, match="Shiftmax node lacks attribute.*x0"):
        load_all()["Shiftmax"]([np.zeros((2, 3), np.int8)], {}, False)


def test_a_mistyped_attribute_is_named() -> None:
    with pytest.raises(GraphError, match="QClamp attribute min"):
        load_all()["QClamp"]([np.zeros((2, 3), np.int8)], {"min": "low", "max": 3}, False)


def _c_param_minimums() -> dict[int, int]:
    """opcode -> the parameter count its C kernel requires (its opening ``if (n < N``)."""
    src = ROOT / "firmware_bridge" / "firmware" / "src"
    text = "".join(f.read_text() for f in sorted(src.glob("kernels*.c")))
    need = {m.group(1): int(m.group(2)) for m in re.finditer(
        r"KERNEL int (k_\w+)\([^)]*\)\s*\{\s*if \(\w+ < (\d+)[ )|]", text)}
    model = (src / "model.c").read_text()
    enum = dict((name, int(v)) for name, v in re.findall(r"\b(OP_[A-Z0-9_]+) = (\d+)", model))
    table = re.search(r"KERNELS\[OP_COUNT\] = \{(.*?)\};", model, re.S).group(1)
    kernels: dict[int, str] = {}
    code = 0
    for entry in (e.strip() for e in table.split(",") if e.strip()):
        slot = re.fullmatch(r"\[(OP_\w+)\] = (k_\w+)", entry)  # designated: [OP_X] = k_x
        code, name = (enum[slot.group(1)], slot.group(2)) if slot else (code, entry)
        kernels[code] = name
        code += 1  # C: the next positional entry follows the last one
    return {code: need[k] for code, k in kernels.items() if k in need}


FIRMWARE_OPS = sorted(o for o in KERNEL_OPS if SCHEMA_NOW[o].firmware is not None)


@pytest.mark.parametrize("op", FIRMWARE_OPS)
@pytest.mark.parametrize("packed", [False, True])
def test_firmware_encoding_gives_the_c_kernel_its_parameters(op: str, packed: bool) -> None:
    from firmware_bridge.image import _Packer

    minimums = _c_param_minimums()
    g, node, _ = _graph_of(op)
    record = ENCODERS[op](node, _Packer(g, packed))
    assert record.opcode in minimums, f"no C kernel with a parameter check for {op}"
    assert len(record.params) >= minimums[record.opcode], (
        f"{op}: encoder writes {len(record.params)} parameters, the C kernel needs "
        f"{minimums[record.opcode]}")
