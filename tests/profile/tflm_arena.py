"""TFLite Micro's own arena figure for a .tflite file, and the file's tensor graph as IR.

TFLite Micro's PyPI host interpreter, created with ``InterpreterConfig.kAllocationRecording``
(spelled ``intrepreter_config``), prints its RecordingMicroAllocator summary on stderr:
``[RecordingMicroAllocator] Arena allocation total N bytes`` then ``head`` and ``tail``
(older builds put them on one line, ``(head H, tail T)``). There is no Python getter, so the
interpreter runs in a subprocess and the lines are parsed. The head is the planned
(non-persistent) tensor memory; the tail holds persistent runtime structures whose sizes are
those of a 64-bit host, not of a 32-bit microcontroller.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import tflite

from sdk.frontends.tflite_format import IR_DTYPE
from sdk.graph.ir import Graph, Tensor

_SCRIPT = """
import sys
import numpy as np
from tflite_micro.python.tflite_micro import runtime
it = runtime.Interpreter.from_file(
    sys.argv[1], intrepreter_config=runtime.InterpreterConfig.kAllocationRecording)
d = it.get_input_details(0)
it.set_input(np.zeros(d["shape"], d["dtype"]), 0)
it.invoke()
it.print_allocations()
"""
_ONE = re.compile(r"Arena allocation (total|head|tail) (\d+) bytes")
_COMBINED = re.compile(r"Arena allocation total (\d+) bytes \(head (\d+), tail (\d+)\)")


def parse_allocations(text: str) -> dict[str, int]:
    m = _COMBINED.search(text)
    if m:
        return dict(zip(("total", "head", "tail"), map(int, m.groups())))
    found = {k: int(v) for k, v in _ONE.findall(text)}
    if set(found) != {"total", "head", "tail"}:
        raise AssertionError(f"no RecordingMicroAllocator summary in:\n{text[-2000:]}")
    return found


def tflm_arena(path: Path) -> dict[str, int]:
    """Run the model once in TFLite Micro and return its total / head / tail arena bytes."""
    r = subprocess.run(check=False, args=[sys.executable, "-c", _SCRIPT, str(path)], capture_output=True,
                       text=True, timeout=300)
    if r.returncode != 0:
        raise AssertionError(f"TFLite Micro failed on {path}:\n{r.stderr[-2000:]}")
    return parse_allocations(r.stdout + r.stderr)


# builtin codes whose IR twin matters to the planner (views and element-wise ops)
_OPS = {0: "QAdd", 18: "QMul", 22: "Reshape", 39: "Transpose", 114: "QuantizeLinear",
        6: "DequantizeLinear", 3: "QConv2d", 4: "QDepthwiseConv2d", 9: "QFullyConnected",
        1: "QAvgPool2d", 17: "QMaxPool2d", 34: "Pad", 2: "Concat"}


def tflite_tensor_graph(path: Path) -> Graph:
    """Exactly the tensors and operators TFLite Micro plans, as an IR graph (no numerics)."""
    model = tflite.Model.GetRootAsModel(Path(path).read_bytes(), 0)
    sg = model.Subgraphs(0)
    g = Graph(Path(path).stem + "_tflite")
    names = []
    for i in range(sg.TensorsLength()):
        t = sg.Tensors(i)
        name = f"t{i}"
        dtype = IR_DTYPE[t.Type()]
        shape = tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()
        buf = model.Buffers(t.Buffer())
        if buf is not None and buf.DataLength():
            data = np.frombuffer(buf.DataAsNumpy().tobytes(), dtype).reshape(shape)
            g.add_constant(name, data)
        else:
            g.add_tensor(Tensor(name, dtype, shape))
        names.append(name)
    for k in range(sg.OperatorsLength()):
        op = sg.Operators(k)
        code = model.OperatorCodes(op.OpcodeIndex())
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        ins = [names[j] if j >= 0 else "" for j in op.InputsAsNumpy()]
        outs = [names[j] for j in op.OutputsAsNumpy()]
        g.add_node(_OPS.get(builtin, f"TFLITE_{builtin}"), ins, outs, name=f"op{k}")
    g.inputs = [names[j] for j in sg.InputsAsNumpy()]
    g.outputs = [names[j] for j in sg.OutputsAsNumpy()]
    return g
