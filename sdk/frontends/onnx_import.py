"""Float ONNX model → IR Graph.

What import does, in order:

1. Parse the file and check its structure (a truncated or non-ONNX file, or a node that reads
   a tensor nothing defines, is a ModelFormatError).
2. Translate nodes, rewriting older opsets (7 … current) to the newest operand form: operands
   that used to be attributes become constant inputs (Clip, Slice, Pad, Squeeze, Unsqueeze,
   Reduce*, Split, Reshape), Upsample and opset-10 Resize become Resize, and the pre-13
   "coerce to 2-D" Softmax/LogSoftmax becomes Flatten → Softmax → Reshape.
3. Collect every unsupported operator, and every attribute (name or value) the kernels would
   not honour (:func:`attribute_problems`), and raise ONE UnsupportedOpError naming all.
4. Initializers become constant tensors (also those listed as graph inputs, as IR v3 files
   do); the remaining graph inputs are the model's inputs (``dim_param`` dims become -1).
5. Infer shapes, then fold every node whose inputs are all constant (``Constant``,
   ``ConstantOfShape`` weights, ``Shape`` of a static tensor and what follows from them), and
   drop constants nothing reads any more.
6. A ``−inf`` in a constant added to a Softmax input (a causal mask) becomes float32 min
   (:func:`finite_mask_constants`: same softmax, finite values for calibration).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from sdk.errors import GraphError, ModelFormatError, UnsupportedOpError
from sdk.graph.ir import Graph, Tensor
from sdk.ops.shapes import infer_shapes

MIN_OPSET = 7

# ONNX TensorProto element type -> IR dtype (the IR holds no float16/float64/strings).
_ONNX_DTYPE = {1: "float32", 2: "uint8", 3: "int8", 5: "int16", 6: "int32", 7: "int64", 9: "bool"}
_ONNX_TYPE_NAME = {0: "UNDEFINED", 1: "FLOAT", 2: "UINT8", 3: "INT8", 4: "UINT16", 5: "INT16",
                   6: "INT32", 7: "INT64", 8: "STRING", 9: "BOOL", 10: "FLOAT16", 11: "DOUBLE",
                   12: "UINT32", 13: "UINT64", 16: "BFLOAT16"}


def supported_onnx_ops() -> list[str]:
    """Names of the ONNX operators (default domain) the importer accepts."""
    from sdk.ops.float_ops import FLOAT_OPS, INTERNAL_OPS

    return sorted((FLOAT_OPS - INTERNAL_OPS) | {"Upsample"})


# -- loading ---------------------------------------------------------------------------------
def read_onnx_model(source: Any):
    import onnx
    from google.protobuf.message import DecodeError

    if isinstance(source, onnx.ModelProto):
        return source, None
    path = Path(os.fspath(source))
    if not path.is_file():
        raise ModelFormatError(f"{path}: no such model file; check the path")
    data = path.read_bytes()
    if not data:
        raise ModelFormatError(f"{path} is empty; re-export the model")
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise ModelFormatError(f"{path} is not a readable ONNX model (truncated or not ONNX: "
                               f"{str(exc).splitlines()[0] if str(exc) else 'parse error'}); "
                               "re-export it with onnx.save") from None
    if model.ir_version <= 0 or not model.graph.output:
        raise ModelFormatError(f"{path} is not an ONNX model (no IR version or no graph "
                               "outputs); re-export it with onnx.save")
    return model, path.parent


# -- attribute and tensor translation --------------------------------------------------------
def _tensor_array(t, where: str) -> np.ndarray:
    from onnx import numpy_helper

    if t.data_type not in _ONNX_DTYPE:
        raise ModelFormatError(f"{where}: tensor {t.name!r} has element type "
                               f"{_ONNX_TYPE_NAME.get(t.data_type, t.data_type)}, which the SDK "
                               "does not hold (float32 and integer types only); convert the "
                               "model to float32")
    try:
        arr = np.asarray(numpy_helper.to_array(t)).astype(_ONNX_DTYPE[t.data_type], copy=False)
    except (ValueError, TypeError, IndexError, MemoryError) as exc:
        raise ModelFormatError(f"{where}: tensor {t.name!r} (dims {list(t.dims)}) cannot be read "
                               f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
                               "; the file is corrupted: re-export the model") from None
    if arr.dtype.kind == "f" and (np.isnan(arr).any() or np.isposinf(arr).any()):
        raise ModelFormatError(f"{where}: tensor {t.name!r} holds NaN or +inf values; the "
                               "SDK quantizes finite weights only: fix the weights and re-export "
                               "the model")
    return arr


def _attrs(node, where: str) -> dict[str, Any]:
    import onnx
    from onnx import helper

    out: dict[str, Any] = {}
    for a in node.attribute:
        if a.type == onnx.AttributeProto.TENSOR:
            out[a.name] = _tensor_array(a.t, where)
        elif a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
            out[a.name] = None  # control flow: the op is reported unsupported
        else:
            v = helper.get_attribute_value(a)
            if isinstance(v, bytes):
                v = v.decode()
            elif isinstance(v, list) and v and isinstance(v[0], bytes):
                v = [x.decode() for x in v]
            out[a.name] = v
    return out


_POSITIVE_INTS = ("kernel_shape", "strides", "dilations")
_MAX_ELEMENTS = 1 << 31  # a tensor larger than this is not an edge model: a corrupt dim


def node_structure_problem(node, opset: int) -> str:
    """What makes ``node`` malformed against its ONNX schema ('' when nothing): too few or too
    many inputs / outputs, a required input left empty, a missing required attribute, an
    attribute of the wrong type, a non-positive kernel / stride / dilation, a negative pad,
    a non-finite float attribute."""
    import math

    from onnx import defs

    try:
        schema = defs.get_schema(node.op_type, opset)
    except Exception:  # noqa: BLE001 - no schema at this opset: attribute_problems reports it
        return ""
    label = f"node {node.name or node.op_type!r} ({node.op_type})"
    n_in = len(node.input)
    if n_in < schema.min_input or n_in > schema.max_input:
        return (f"{label} has {n_in} input(s); the ONNX schema allows {schema.min_input} to "
                f"{schema.max_input}")
    n_out = len(node.output)
    if n_out < schema.min_output or n_out > schema.max_output:
        return (f"{label} has {n_out} output(s); the ONNX schema allows {schema.min_output} to "
                f"{schema.max_output}")
    for k, formal in enumerate(schema.inputs[:n_in]):
        if formal.option == defs.OpSchema.FormalParameterOption.Single and not node.input[k]:
            return f"{label} leaves its required input {formal.name!r} empty"
    if not node.output[0]:
        return f"{label} leaves its first output empty"
    given = {a.name: a for a in node.attribute}
    for name, spec in schema.attributes.items():
        if spec.required and name not in given:
            return f"{label} lacks its required attribute {name!r}"
    for name, a in given.items():
        spec = schema.attributes.get(name)
        if spec is not None and int(a.type) != int(spec.type):
            return (f"{label} attribute {name!r} has type {int(a.type)}; the schema says "
                    f"{spec.type.name}")
        if name in _POSITIVE_INTS and (any(v < 1 or v > 1 << 16 for v in a.ints)
                                       or (a.type == a.INT and not 1 <= a.i <= 1 << 16)):
            return f"{label} attribute {name!r} = {list(a.ints) or a.i} must hold values >= 1"
        if name == "pads" and any(v < 0 or v > 1 << 16 for v in a.ints):
            return f"{label} attribute 'pads' = {list(a.ints)} must hold values >= 0"
        if a.type == a.FLOAT and not math.isfinite(a.f):
            return f"{label} attribute {name!r} = {a.f} must be finite"
        if a.type == a.FLOATS and not all(math.isfinite(v) for v in a.floats):
            return f"{label} attribute {name!r} holds a non-finite value"
        if name == "perm" and sorted(a.ints) != list(range(len(a.ints))):
            return f"{label} attribute 'perm' = {list(a.ints)} is not a permutation"
        if a.type in (a.STRING, a.STRINGS):
            try:
                for b in [a.s, *a.strings]:
                    b.decode()
            except UnicodeDecodeError:
                return f"{label} attribute {name!r} is not UTF-8 text"
    k = given.get("kernel_shape")
    if k is not None:
        n = len(k.ints)
        for name, want in (("strides", n), ("dilations", n), ("pads", 2 * n)):
            if name in given and len(given[name].ints) != want:
                return (f"{label} attribute {name!r} has {len(given[name].ints)} values; "
                        f"kernel_shape {list(k.ints)} needs {want}")
    return ""


def _value_info_shape(vi) -> tuple[int, ...] | None:
    tt = vi.type.tensor_type
    if not tt.HasField("shape"):
        return None
    return tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim)


# -- opset normalisation ---------------------------------------------------------------------
class _Builder:
    """Adds nodes to the graph, turning old-opset attributes into constant inputs."""

    def __init__(self, graph: Graph, opset: int) -> None:
        self.g = graph
        self.opset = opset
        self.unsupported: list[str] = []

    def const(self, base: str, value: np.ndarray) -> str:
        name = self.g.unique_name(base)
        self.g.add_constant(name, np.asarray(value))
        return name

    def _attr_to_input(self, inputs: list[str], attrs: dict[str, Any], key: str, pos: int,
                       dtype: str, node_name: str) -> None:
        if key not in attrs:
            return
        value = attrs.pop(key)
        while len(inputs) < pos:
            inputs.append("")
        inputs.insert(pos, self.const(f"{node_name}_{key}", np.asarray(value, dtype)))
        del inputs[pos + 1:]

    def add(self, op: str, inputs: list[str], outputs: list[str], attrs: dict[str, Any],
            name: str) -> None:
        v = self.opset
        if op in ("Resize", "Upsample") and _resize_variant(attrs):
            self.unsupported.append(f"{op}({_resize_variant(attrs)})")
            return
        if op == "Clip" and v < 11:
            lo, hi = attrs.pop("min", None), attrs.pop("max", None)
            inputs = [inputs[0],
                      "" if lo is None else self.const(f"{name}_min", np.float32(lo)),
                      "" if hi is None else self.const(f"{name}_max", np.float32(hi))]
        elif op == "Slice" and v < 10:
            parts = [self.const(f"{name}_{k}", np.asarray(attrs.pop(k), np.int64))
                     for k in ("starts", "ends") ]
            axes = attrs.pop("axes", None)
            inputs = [inputs[0], *parts] + ([self.const(f"{name}_axes", np.asarray(axes, np.int64))]
                                            if axes is not None else [])
        elif op == "Pad" and v < 11:
            pads = self.const(f"{name}_pads", np.asarray(attrs.pop("pads"), np.int64))
            value = self.const(f"{name}_value", np.float32(attrs.pop("value", 0.0)))
            inputs = [inputs[0], pads, value]
        elif op in ("Squeeze", "Unsqueeze") and v < 13 or op.startswith("Reduce") and "axes" in attrs:
            self._attr_to_input(inputs, attrs, "axes", 1, "int64", name)
        elif op == "Split":
            if "split" in attrs:
                self._attr_to_input(inputs, attrs, "split", 1, "int64", name)
            elif len(inputs) < 2 or not inputs[1]:
                attrs.setdefault("num_outputs", len(outputs))
        elif op == "Reshape" and "shape" in attrs:
            self._attr_to_input(inputs, attrs, "shape", 1, "int64", name)
        elif op == "Upsample" or (op == "Resize" and v < 11):
            scales = (self.const(f"{name}_scales", np.asarray(attrs.pop("scales"), np.float32))
                      if "scales" in attrs else inputs[1])
            inputs = [inputs[0], "", scales]
            attrs = {"mode": attrs.get("mode", "nearest"),
                     "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}
            op = "Resize"
        elif op in ("Softmax", "LogSoftmax") and v < 13:
            axis = int(attrs.get("axis", 1))
            if axis != -1:
                # pre-13 semantics: flatten to [prod(d<axis), prod(d>=axis)], normalise rows
                shape, flat, norm = (self.g.unique_name(f"{name}_{s}") for s in
                                     ("shape", "flat", "rows"))
                for t in (shape, flat, norm):
                    self.g.add_tensor(Tensor(t, "int64" if t == shape else "float32"))
                self.g.add_node("Shape", [inputs[0]], [shape], name=f"{name}_shape")
                self.g.add_node("Flatten", [inputs[0]], [flat], name=f"{name}_flatten",
                                axis=axis)
                self.g.add_node(op, [flat], [norm], name=name, axis=-1)
                self.g.add_node("Reshape", [norm, shape], outputs, name=f"{name}_reshape")
                return
        elif op == "Cast":
            to = attrs.get("to")
            if to not in _ONNX_DTYPE:
                self.unsupported.append(f"Cast(to={_ONNX_TYPE_NAME.get(to, to)})")
                return
            attrs["to"] = _ONNX_DTYPE[to]
        elif op == "Constant":
            attrs = {"value": _constant_value(attrs, name)}
        elif op == "BatchNormalization":
            if sum(1 for o in outputs if o) > 1 or int(attrs.get("training_mode", 0)):
                self.unsupported.append("BatchNormalization(training outputs)")
                return
            attrs = {"epsilon": attrs.get("epsilon", 1e-5)}
        elif op == "MaxPool" and sum(1 for o in outputs if o) > 1:
            self.unsupported.append("MaxPool(Indices output)")
            return
        elif op == "Dropout":
            attrs = {}
            inputs = inputs[:1]
        self.g.add_node(op, inputs, outputs, name=name, **attrs)


# attribute values the kernels do not implement: op -> (attribute, accepted values, default)
_REFUSED_VALUES: dict[str, list[tuple[str, tuple, Any]]] = {
    "LayerNormalization": [("stash_type", (1,), 1)],
    "RMSNormalization": [("stash_type", (1,), 1)],
    "BatchNormalization": [("spatial", (1,), 1)],
    "Gelu": [("approximate", ("none", "tanh"), "none")],
    "Cast": [("saturate", (0, 1), 1)],
    "Mod": [("fmod", (0, 1), 0)],
}


def attribute_problems(op: str, attrs: dict[str, Any], opset: int) -> list[str]:
    """Every attribute of a node the SDK would not honour, as ``Op(attr=value)`` entries: a
    name the ONNX schema of ``op`` at ``opset`` does not define, or a value the kernels do not
    implement (``_REFUSED_VALUES``). Nothing is silently ignored."""
    from onnx import defs

    try:
        known = set(defs.get_schema(op, opset).attributes)
    except Exception:  # no schema at this opset (e.g. an op newer than the model's opset)
        known = None
    out = []
    if known is not None:
        out += [f"{op}({a})" for a in attrs if a not in known]
    for name, ok, default in _REFUSED_VALUES.get(op, []):
        v = attrs.get(name, default)
        if v not in ok:
            out.append(f"{op}({name}={v})")
    return out


_RESIZE_COORDS = {"half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel",
                  "tf_half_pixel_for_nn", "half_pixel_symmetric"}


def _resize_variant(attrs: dict[str, Any]) -> str:
    """The attribute setting of a Resize the reference kernel lacks ('' when supported)."""
    mode = attrs.get("mode", "nearest")
    if mode not in ("nearest", "linear"):
        return f"mode={mode}"
    if attrs.get("coordinate_transformation_mode", "half_pixel") not in _RESIZE_COORDS:
        return f"coordinate_transformation_mode={attrs['coordinate_transformation_mode']}"
    if int(attrs.get("antialias", 0)):
        return "antialias=1"
    if attrs.get("axes") is not None:
        return "axes"
    if attrs.get("keep_aspect_ratio_policy", "stretch") != "stretch":
        return f"keep_aspect_ratio_policy={attrs['keep_aspect_ratio_policy']}"
    return ""


def _constant_value(attrs: dict[str, Any], name: str) -> np.ndarray:
    if "value" in attrs:
        return np.asarray(attrs["value"])
    for key, dtype in (("value_float", np.float32), ("value_floats", np.float32),
                       ("value_int", np.int64), ("value_ints", np.int64)):
        if key in attrs:
            return np.asarray(attrs[key], dtype)
    raise UnsupportedOpError([f"Constant({', '.join(attrs) or 'no value'})"], "the ONNX importer",
                             f"node {name!r} holds a constant kind the SDK does not read")


# -- folding ---------------------------------------------------------------------------------
def fold_constants(graph: Graph) -> int:
    """Evaluate every node whose inputs are all constant (``Shape`` needs only a static input
    shape) and replace its outputs by constant tensors. Returns the number of folded nodes."""
    from sdk.ops.registry import OPS, load_all

    load_all()
    kept, folded = [], 0
    outputs = set(graph.outputs)
    for node in graph.topological_order():
        present = [i for i in node.inputs if i]
        if node.op == "Shape":
            t = graph.tensor(node.inputs[0])
            ready = t.shape is not None and -1 not in t.shape
            args = [np.zeros(t.shape, np.uint8)] if ready else []
        else:
            ready = all(graph.tensor(i).is_constant for i in present)
            args = [graph.tensor(i).data if i else None for i in node.inputs]
        if not ready or node.op not in OPS or any(o in outputs for o in node.outputs):
            kept.append(node)
            continue
        results = OPS[node.op](args, node.attrs, True)
        for name, value in zip(node.outputs, results):
            if name:
                value = np.asarray(value)  # (ascontiguousarray would make a scalar 1-D)
                graph.tensors[name] = Tensor(name, str(value.dtype),
                                             data=np.ascontiguousarray(value).reshape(value.shape))
        folded += 1
    graph.nodes = kept
    used = {i for n in graph.nodes for i in n.inputs} | set(graph.outputs) | set(graph.inputs)
    produced = {o for n in graph.nodes for o in n.outputs}
    for name in list(graph.tensors):
        if name not in used and name not in produced:
            del graph.tensors[name]
    return folded


# -- entry point -----------------------------------------------------------------------------
def load_onnx(source: Any) -> Graph:
    """Import a float ONNX model (a path or an ``onnx.ModelProto``) as an IR Graph.

    Raises ModelFormatError for a file that is not a valid ONNX model, UnsupportedOpError
    naming every operator the SDK does not implement.
    """
    model, base_dir = read_onnx_model(source)
    where = str(source) if base_dir is not None else "the given ModelProto"
    if base_dir is not None and any(t.data_location == 1 for t in model.graph.initializer):
        from onnx.external_data_helper import load_external_data_for_model

        load_external_data_for_model(model, str(base_dir))
    if not model.opset_import:
        raise ModelFormatError(f"{where} has no opset_import (truncated or not ONNX); "
                               "re-export the model")
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < MIN_OPSET:
        raise ModelFormatError(f"{where} uses ONNX opset {opset}; the SDK reads opset "
                               f"{MIN_OPSET} or newer: upgrade it with "
                               "onnx.version_converter.convert_version(model, 13)")
    g = model.graph
    graph = Graph(g.name or "model")
    graph.metadata.update({"source": "onnx", "opset": int(opset),
                           "producer": model.producer_name})
    init_names = set()
    for t in g.initializer:
        graph.add_constant(t.name, _tensor_array(t, where))
        init_names.add(t.name)
    for vi in g.input:
        if vi.name in init_names:
            continue
        et = vi.type.tensor_type.elem_type
        if et not in _ONNX_DTYPE:
            raise ModelFormatError(f"{where}: input {vi.name!r} has element type "
                                   f"{_ONNX_TYPE_NAME.get(et, et)}; the SDK imports float32 "
                                   "models: convert the model to float32")
        shape = _value_info_shape(vi)
        if shape is None:
            raise ModelFormatError(f"{where}: input {vi.name!r} has no shape; export the "
                                   "model with input shapes (dynamic axes are fine)")
        bad = [d for d, dim in zip(shape, vi.type.tensor_type.shape.dim)
               if dim.HasField("dim_value") and d < 1]
        if bad or int(np.prod([float(d) for d in shape if d > 0])) > _MAX_ELEMENTS:
            raise ModelFormatError(f"{where}: input {vi.name!r} has shape {list(shape)}; every "
                                   f"dim must be >= 1 (or symbolic) and the tensor at most "
                                   f"{_MAX_ELEMENTS} elements: fix the input shape and re-export")
        graph.add_tensor(Tensor(vi.name, _ONNX_DTYPE[et], shape))
        graph.inputs.append(vi.name)

    builder = _Builder(graph, opset)
    supported = set(supported_onnx_ops())
    for k, node in enumerate(g.node):
        op = node.op_type
        if node.domain not in ("", "ai.onnx"):
            builder.unsupported.append(f"{node.domain}.{op}")
            continue
        if op not in supported:
            builder.unsupported.append(op)
            continue
        name = node.name or f"{op}_{k}"
        problem = node_structure_problem(node, opset)
        if problem:
            raise ModelFormatError(f"{where}: {problem}; the model is malformed: re-export it")
        node_attrs = _attrs(node, where)
        problems = attribute_problems(op, node_attrs, opset)
        if problems:
            builder.unsupported.extend(problems)
            continue
        for o in node.output:
            if o and o not in graph.tensors:
                graph.add_tensor(Tensor(o, "float32"))
        builder.add(op, list(node.input), list(node.output), node_attrs, name)
    if builder.unsupported:
        raise UnsupportedOpError(builder.unsupported, "the ONNX importer",
                                 "sdk.frontends.supported_onnx_ops() lists what it reads")
    graph.outputs = [o.name for o in g.output]
    try:
        graph.validate()
    except GraphError as exc:
        raise ModelFormatError(f"{where}: {exc}") from None
    try:
        infer_shapes(graph)
        fold_constants(graph)
        infer_shapes(graph)
    except (IndexError, KeyError, TypeError, ValueError, ZeroDivisionError, OverflowError,
            MemoryError) as exc:
        if isinstance(exc, GraphError):
            raise ModelFormatError(f"{where}: {str(exc).splitlines()[0]}") from None
        # a shape rule that met operands its op cannot have (rank, perm, pads ...)
        raise ModelFormatError(f"{where}: the graph's shapes are inconsistent ("
                               f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                               "); the model is malformed: re-export it") from None
    _check_operands(graph, where)
    finite_mask_constants(graph)
    for t in graph.tensors.values():  # a -inf left outside an attention mask is corrupt data
        if t.data is not None and t.dtype == "float32" and np.isneginf(t.data).any():
            raise ModelFormatError(f"{where}: constant {t.name!r} holds -inf outside an "
                                   "attention mask; the SDK quantizes finite weights only: "
                                   "fix the weights and re-export the model")
    return graph


def _check_operands(graph: Graph, where: str) -> None:
    """Constant operands the quantizer folds, checked against the shapes they meet: a
    BatchNormalization's four parameter vectors hold one value per channel; a Clip bound of
    -inf (no lower bound) is dropped, a non-finite upper one refused."""
    for node in graph.nodes:
        if node.op == "BatchNormalization" and len(node.inputs) >= 5:
            x = graph.tensor(node.inputs[0]).shape
            c = x[1] if x is not None and len(x) > 1 else None
            for i in node.inputs[1:5]:
                t = graph.tensor(i)
                if c is not None and c > 0 and t.shape is not None and tuple(t.shape) != (c,):
                    raise ModelFormatError(
                        f"{where}: node {node.name!r} (BatchNormalization) parameter {i!r} has "
                        f"shape {list(t.shape)}; the input has {c} channels: re-export the model")
        if node.op == "Conv" and len(node.inputs) > 2 and node.inputs[2]:
            w, b = graph.tensor(node.inputs[1]).shape, graph.tensor(node.inputs[2]).shape
            if w is not None and b is not None and len(w) > 0 and tuple(b) != (w[0],):
                raise ModelFormatError(
                    f"{where}: node {node.name!r} (Conv) bias {node.inputs[2]!r} has shape "
                    f"{list(b)}; the weights have {w[0]} output channels: re-export the model")
        if node.op in ("LayerNormalization", "RMSNormalization"):
            x = graph.tensor(node.inputs[0]).shape
            axis = int(node.attrs.get("axis", -1))
            if x is not None and -len(x) <= axis < len(x) and all(d > 0 for d in x[axis:]):
                want = int(np.prod(x[axis:]))
                for i in node.inputs[1:3]:
                    t = graph.tensor(i) if i else None
                    if t is not None and t.shape is not None and int(np.prod(t.shape)) != want:
                        raise ModelFormatError(
                            f"{where}: node {node.name!r} ({node.op}) parameter {i!r} has shape "
                            f"{list(t.shape)}; the normalized axes {list(x[axis:])} need "
                            f"{want} values: re-export the model")
        if node.op == "Clip":
            for pos in (1, 2):
                if len(node.inputs) <= pos or not node.inputs[pos]:
                    continue
                t = graph.tensor(node.inputs[pos])
                if t.data is None or np.all(np.isfinite(t.data)):
                    continue
                if pos == 1 and np.all(np.isneginf(t.data)):
                    node.inputs[pos] = ""  # min = -inf: no lower bound
                else:
                    raise ModelFormatError(f"{where}: node {node.name!r} (Clip) bound "
                                           f"{node.inputs[pos]!r} is not finite; re-export "
                                           "the model")


def specialize_input_shapes(graph: Graph, shapes: dict[str, Any]) -> Graph:
    """Give the graph inputs static ``shapes`` (name → shape; e.g. from calibration samples) in
    place, then infer shapes and fold again: a dynamic-axes export's ``Shape → Gather →
    Concat → Reshape`` chains and attention-mask arithmetic become constants or simple masks,
    as in a static export. Returns the graph."""
    for name, shape in shapes.items():
        if name not in graph.inputs:
            raise GraphError(f"{name!r} is not an input of the graph; inputs: {graph.inputs}")
        old = graph.tensor(name).shape
        new = tuple(int(d) for d in shape)
        if old is not None and (len(old) != len(new)
                                or any(o >= 0 and o != n for o, n in zip(old, new))):
            raise GraphError(f"input {name!r} has shape {old}; it cannot become {new}")
        graph.tensor(name).shape = new
    for t in graph.tensors.values():  # forget inferred dynamic shapes: infer them again
        if t.data is None and t.name not in graph.inputs:
            t.shape = None
    infer_shapes(graph)
    fold_constants(graph)
    infer_shapes(graph)
    finite_mask_constants(graph)
    return graph


_HEAVY = {"MatMul", "Gemm", "Conv", "ConvTranspose", "Gather"}  # never inside a mask


def _mask_constants(graph: Graph, producers: dict, operand: str) -> list[Tensor]:
    """The constants ``operand`` is computed from when it depends only on constants and
    integer inputs through light ops (a mask); else []."""
    consts, stack, seen = [], [operand], set()
    while stack:
        name = stack.pop()
        if not name or name in seen:
            continue
        seen.add(name)
        t = graph.tensors.get(name)
        if t is not None and t.data is not None:
            consts.append(t)
        elif name in graph.inputs:
            if t is None or t.dtype == "float32":
                return []
        elif name in producers and producers[name].op not in _HEAVY and len(seen) <= 256:
            stack.extend(producers[name].inputs)
        else:
            return []
    return consts


def finite_mask_constants(graph: Graph) -> int:
    """Replace ``−inf`` by ``float32 min`` in attention masks: constants that reach a Softmax
    input through ``Add``/``Where`` nodes (a causal ``triu(-inf)`` buffer, ``masked_fill(…,
    -inf)``), and those behind a mask operand of such a node that is computed from constants
    and integer inputs only (SDPA's ``where(mask, 0, -inf)``). The softmax is the same (both
    give weight 0 next to any finite score; a fully masked row becomes uniform instead of
    NaN) and calibration sees finite values. Returns the number of constants changed."""
    producers, changed = graph.producers(), 0
    for sm in [n for n in graph.nodes if n.op == "Softmax"]:
        frontier, seen = [sm.inputs[0]], set()
        while frontier:
            name = frontier.pop()
            p = producers.get(name)
            if name in seen or p is None or p.op not in ("Add", "Where"):
                continue
            seen.add(name)
            for operand in p.inputs[1:] if p.op == "Where" else p.inputs:
                t = graph.tensors.get(operand)
                consts = [t] if t is not None and t.data is not None else \
                    _mask_constants(graph, producers, operand)
                for c in consts:
                    if c.dtype == "float32" and np.any(np.isneginf(c.data)):
                        c.data = np.where(np.isneginf(c.data), np.finfo(np.float32).min,
                                          c.data).astype(np.float32)
                        changed += 1
                frontier.append(operand)
    return changed
