"""Compiled whole-graph programs (sdk.ops.codegen) equal the NumPy specification bit for bit:
on every integer/boundary op's example call of tests/ops/test_schema.py (all in one program),
on the sample graphs of sdk.backends.sample_graphs, on the keyword-spotting step graph of
samples/kws (hop by hop, state carried) and on a KV-cache decoder step; and the paths around
them: the interpreter takes a request with a node the generator refuses (and says why), a
compiled kernel's refusal is re-run on the interpreter to give the specification's error,
and a new process with a warm cache loads the machine code instead of compiling it.

Numba compiles each new program once per machine (cached under $EDGE_CACHE_DIR); the graphs
here are merged so that the whole file compiles a handful of programs.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sdk.backends import sample_graphs as sg
from sdk.errors import EdgeError
from sdk.graph.ir import Graph, Tensor
from sdk.ops.codegen import CompiledExecutor, CompiledProgram, Unsupported, compile_check
from sdk.ops.interpreter import Interpreter
from sdk.ops.registry import load_all

ROOT = Path(__file__).resolve().parents[2]
KWS = ROOT / "samples" / "kws" / "models"


def _examples() -> dict:
    spec = importlib.util.spec_from_file_location("schema_examples",
                                                  ROOT / "tests" / "ops" / "test_schema.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.EXAMPLES


EXAMPLES = _examples()
_DYNAMIC = {"QAdd", "QMul", "QMatMul", "KVCacheWrite", "CausalMask"}  # every operand fed


def _all_ops_graph(seed: int) -> tuple[Graph, dict, dict]:
    """One graph holding every example call as its own branch: (graph, feeds, spec outputs)."""
    g = Graph("all_ops")
    feeds, want = {}, {}
    for op, make in EXAMPLES.items():
        inputs, attrs = make(np.random.default_rng(seed))
        names = []
        for i, v in enumerate(inputs):
            v = np.asarray(v)
            name = f"{op}.in{i}"
            if i == 0 or op in _DYNAMIC:
                g.add_tensor(Tensor(name, v.dtype.name, v.shape))
                g.inputs.append(name)
                feeds[name] = v
            else:
                g.add_constant(name, v)
            names.append(name)
        ref = load_all()[op]([np.asarray(v) for v in inputs], attrs, False)[0]
        out = f"{op}.y"
        g.add_tensor(Tensor(out, ref.dtype.name, ref.shape))
        g.outputs.append(out)
        g.add_node(op, names, [out], name=op, **attrs)
        want[out] = ref
    return g, feeds, want


def test_every_example_op_compiles_and_equals_the_specification() -> None:
    g, feeds, want = _all_ops_graph(seed=0)
    assert compile_check(g) is None, compile_check(g)
    prog = CompiledProgram(g, sorted(feeds), g.outputs)
    assert "def stage_0(" in prog.source  # over STAGE_LINES: a stage function
    got = dict(zip(g.outputs, prog.run(feeds)))
    bad = [o for o in g.outputs
           if got[o].dtype != want[o].dtype or not np.array_equal(got[o], want[o])]
    assert not bad, f"compiled output differs from the NumPy spec: {bad}"
    # the same program, other data: a second run reuses the arena without leaking values
    feeds2 = {k: (np.flip(v).copy() if v.ndim else v) for k, v in feeds.items()}
    ref2 = Interpreter(g, fast=False).run(feeds2)
    got2 = dict(zip(g.outputs, prog.run(feeds2)))
    assert all(np.array_equal(got2[o], ref2[o]) for o in g.outputs)


def _merged(graphs: dict[str, Graph]) -> Graph:
    """The graphs side by side in one (names prefixed), to compile them as one program."""
    out = Graph("merged")
    for prefix, g in graphs.items():
        rename = {n: f"{prefix}.{n}" for n in g.tensors}
        for n, t in g.tensors.items():
            out.add_tensor(Tensor(rename[n], t.dtype, t.shape, t.quant, t.data))
        for node in g.nodes:
            out.add_node(node.op, [rename[i] if i else "" for i in node.inputs],
                         [rename[o] if o else "" for o in node.outputs],
                         name=f"{prefix}.{node.name}", **node.attrs)
        out.inputs += [rename[i] for i in g.inputs]
        out.outputs += [rename[o] for o in g.outputs]
    return out


def test_sample_graphs_compile_and_equal_the_specification() -> None:
    g = _merged({"cnn": sg.cnn_graph(hw=16, width=8), "conv": sg.conv_graph(),
                 "att": sg.attention_graph(t=8, d=16), "rnn": sg.step_graph(),
                 "seg": sg.segmentation_graph(), "fc": sg.fc_graph(batch=8, k=64, n=32),
                 "gemv": sg.fc_graph(batch=1, k=40, n=12), "add": sg.add_graph()})
    feeds = sg.random_feeds(g, seed=3)
    prog = CompiledProgram(g, sorted(feeds), g.outputs)
    assert "def stage_1(" in prog.source  # cut into stages that pass arena views along
    got = prog.run(feeds)
    ref = Interpreter(g, fast=False).run(feeds)
    for name, value in zip(g.outputs, got):
        assert np.array_equal(value, ref[name]), name
    from sdk.backends import compile_for
    from sdk.backends.reference import ReferenceBackend

    exe = compile_for(g, ReferenceBackend(fast=True, compiled=True), "laptop")
    out = exe.run(feeds)  # the reference backend runs the same (cached) program
    assert all(np.array_equal(out[o], ref[o]) for o in g.outputs)


@pytest.fixture(scope="module")
def kws_bundle():
    model = KWS / "kws_lmuformer_nonspiking.onnx"
    if not model.is_file():
        pytest.skip("trained keyword model not committed")
    import sdk

    rng = np.random.default_rng(0)
    float_ss = sdk.StreamingSession(model)
    return sdk.compile_model(model, float_ss.record_feeds(
        rng.normal(0, 1, (60, 1, 40)).astype(np.float32)))


def test_kws_step_graph_streams_compiled_bit_exact_with_the_specification(kws_bundle) -> None:
    import sdk

    xs = np.random.default_rng(1).normal(0, 1.2, (40, 1, 40)).astype(np.float32)
    fast = sdk.StreamingSession(kws_bundle, compiled=True)
    spec = sdk.StreamingSession(kws_bundle, fast=False)
    assert fast.executor == "compiled", fast.executor
    assert spec.executor.startswith("interpreter")
    for x in xs:
        a, b = fast.step(x), spec.step(x)
        assert np.array_equal(a.outputs["logits"], b.outputs["logits"])
    for k, v in fast.get_state().items():
        assert np.array_equal(v, spec.get_state()[k]), k
    # the float-in/float-out Session compiles the boundary (quantize, dequantize) too
    sess = sdk.Session(kws_bundle, compiled=True)
    ref = sdk.Session(kws_bundle, fast=False)
    st, rst = sess.new_state(), ref.new_state()
    for x in xs[:10]:
        y, r = sess.run({"x": x}, state=st), ref.run({"x": x}, state=rst)
        assert np.array_equal(y["logits"], r["logits"])
    assert "compiled" in sess._exe.status.values()


def test_kv_cache_decoder_step_compiles_and_a_write_past_the_cache_is_the_spec_error() -> None:
    sys.path.insert(0, str(ROOT / "tests" / "runtime"))
    try:
        from kv_models import decoder_block, tokens
    finally:
        sys.path.pop(0)
    import sdk
    from sdk.graph.state import add_kv_cache
    from sdk.ops.shapes import with_input_shapes

    cap, d = 8, 32
    bundle = sdk.compile_model(decoder_block(t=cap, d=d), {"x": tokens(16, cap, d)[:, 0]})
    g = bundle.graph.copy()
    add_kv_cache(g, {"k_rows": "k_cache", "v_rows": "v_cache"}, ["scores"], cap)
    step = with_input_shapes(g, {"x": [1, 1, d]})
    fast = sdk.Session(step, compiled=True)
    spec = sdk.Session(step, fast=False)
    assert fast.executor == "compiled", fast.executor
    s1, s2 = fast.new_state(), spec.new_state()
    xs = tokens(cap + 1, 1, d, seed=4)
    for k in range(cap):
        a = fast.run({"x": xs[k]}, state=s1)
        b = spec.run({"x": xs[k]}, state=s2)
        for name in a:
            assert np.array_equal(a[name], b[name]), (k, name)
    for name in s1.values:
        assert np.array_equal(s1.values[name], s2.values[name])
    with pytest.raises(EdgeError) as fast_err:  # the ninth token: past the capacity
        fast.run({"x": xs[cap]}, state=s1)
    with pytest.raises(EdgeError) as spec_err:
        spec.run({"x": xs[cap]}, state=s2)
    assert str(fast_err.value) == str(spec_err.value)


def test_a_node_without_compiled_form_runs_on_the_interpreter_and_says_which() -> None:
    g = sg.fc_graph(batch=2, k=8, n=4)
    g.add_tensor(Tensor("yf", "float32", (2, 4)))
    g.add_node("Relu", ["y"], ["yf"], name="float_relu")  # a float op: no compiled form
    g.outputs = ["yf"]
    why = compile_check(g)
    assert why is not None and "float_relu" in why and "Relu" in why
    with pytest.raises(Unsupported, match="float_relu"):
        CompiledProgram(g, ["x"], ["yf"], load=False)
    import sdk

    sess = sdk.Session(g, compiled=True, integer_io=True)
    assert sess.executor.startswith("interpreter: node 'float_relu'")
    feeds = sg.random_feeds(g, 0)
    want = Interpreter(g, fast=False).run(feeds)["yf"]
    assert np.array_equal(sess.run(feeds)["yf"], want)
    assert sdk.Session(g, compiled=False).executor == "interpreter: compiled=False"
    assert sdk.Session(g, fast=False).executor.startswith("interpreter: fast=False")


def test_auto_mode_compiles_a_hot_request_and_a_warm_cache_at_once(tmp_path) -> None:
    from sdk.ops import codegen

    g = sg.step_graph(n_in=8, n_state=16, n_out=4)
    feeds = sg.random_feeds(g, 1)
    ref = Interpreter(g, fast=False).run(feeds)
    ex = CompiledExecutor(g, Interpreter(g), directory=tmp_path, eager=False)
    for k in range(codegen.COMPILE_AFTER + 1):
        out = ex.run(feeds)
        assert all(np.array_equal(out[o], ref[o]) for o in g.outputs)
        if k == 0:
            assert list(ex.status.values()) == ["pending (1 runs)"]
    assert list(ex.status.values()) == ["compiled"]
    warm = CompiledExecutor(g, Interpreter(g), directory=tmp_path, eager=False)
    warm.run(feeds)
    assert list(warm.status.values()) == ["compiled"]


def test_auto_mode_leaves_a_program_over_the_size_limit_on_the_interpreter(tmp_path,
                                                                           monkeypatch) -> None:
    """A cold-cache program bigger than AUTO_MAX_LINES is never compiled in "auto" mode (LLVM
    took 543 s on a 485-line decoder step): the interpreter keeps answering, with the same
    bits, and the status says why; ``eager`` (compiled=True) still compiles it."""
    from sdk.ops import codegen

    g = sg.step_graph(n_in=7, n_state=13, n_out=5)   # a program no other test loads
    lines = CompiledProgram(g, list(g.inputs), list(g.outputs), tmp_path,
                            load=False).source.count("\n")
    monkeypatch.setattr(codegen, "AUTO_MAX_LINES", lines - 1)
    feeds = sg.random_feeds(g, 1)
    ref = Interpreter(g, fast=False).run(feeds)
    ex = CompiledExecutor(g, Interpreter(g), directory=tmp_path, eager=False)
    for _ in range(codegen.COMPILE_AFTER + 2):
        out = ex.run(feeds)
        assert all(np.array_equal(out[o], ref[o]) for o in g.outputs)
    (status,) = ex.status.values()
    assert status.startswith("interpreter:") and "automatic limit" in status
    assert not list(tmp_path.glob("*/__pycache__/*.nbi"))        # nothing was compiled
    eager = CompiledExecutor(g, Interpreter(g), directory=tmp_path, eager=True)
    eager.run(feeds)
    assert list(eager.status.values()) == ["compiled"]


def test_the_language_model_steps_are_over_the_automatic_limit() -> None:
    """The committed G2P decoder steps are the programs the limit is for."""
    import sdk
    from sdk.ops import codegen

    root = Path(__file__).resolve().parents[2] / "samples" / "slm"
    for name in ("encdec.edge", "deconly.edge"):
        g = sdk.load_bundle(root / name).entries["decoder_step"]
        lines = CompiledProgram(g, list(g.inputs), list(g.outputs), load=False).source
        assert lines.count("\n") > codegen.AUTO_MAX_LINES, name


def test_a_new_process_with_a_warm_cache_loads_the_program_without_compiling(tmp_path) -> None:
    code = (
        "import sys, numpy as np\n"
        "from sdk.backends import sample_graphs as sg\n"
        "from sdk.ops.codegen import CompiledProgram\n"
        "g = sg.step_graph(n_in=8, n_state=16, n_out=4)\n"
        "p = CompiledProgram(g, sorted(g.inputs), g.outputs, load=False)\n"
        "was = p.cached\n"
        "p.load()\n"
        "st = p._fn.stats\n"
        "print(was, p.cached, len(st.cache_hits), len(st.cache_misses))\n")
    env = dict(os.environ, EDGE_CACHE_DIR=str(tmp_path))
    first = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, text=True,
                           capture_output=True, check=True).stdout.split()
    second = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, text=True,
                            capture_output=True, check=True).stdout.split()
    assert first[:2] == ["False", "True"] and first[3] != "0"   # compiled (a cache miss)
    assert second == ["True", "True", "1", "0"]                 # loaded from the cache


def test_int16_attention_probabilities_times_int8_values_take_the_packed_gemm_exactly() -> None:
    # Shiftmax writes int16 probabilities (zero point 0); P·V multiplies them by int8 values.
    # Extreme operands (−32768 pairs) wrap like C int32 in the packed path too.
    g = Graph("pv")
    g.add_tensor(Tensor("p", "int16", (2, 8, 16)))
    g.add_tensor(Tensor("v", "int8", (2, 16, 8)))
    g.add_tensor(Tensor("ctx", "int8", (2, 8, 8)))
    g.add_node("QMatMul", ["p", "v"], ["ctx"], name="pv", a_zp=0, b_zp=0, m0=1518500250,
               shift=-20, out_zp=3)
    g.inputs, g.outputs = ["p", "v"], ["ctx"]
    rng = np.random.default_rng(5)
    feeds = {"p": rng.integers(-32768, 32768, (2, 8, 16)).astype(np.int16),
             "v": rng.integers(-128, 128, (2, 16, 8)).astype(np.int8)}
    feeds["p"][0, :4] = -32768
    feeds["v"][0, :, :4] = -128
    prog = CompiledProgram(g, ["p", "v"], ["ctx"])
    assert "gemm_nt(" in prog.source and "gemm_rows(" not in prog.source
    want = Interpreter(g, fast=False).run(feeds)["ctx"]
    assert np.array_equal(prog.run(feeds)[0], want)


def test_gather_compiles_with_constant_and_fed_indices_and_an_index_out_of_range_is_the_spec_error(
        ) -> None:
    # q/k/v picked from a stacked tensor (a scalar constant index: copies), a constant index
    # table (negative entries wrap), indices fed at run time, and an embedding-table lookup
    g = Graph("gather")
    g.add_tensor(Tensor("x", "int8", (3, 2, 5, 4)))
    g.add_tensor(Tensor("ids", "int64", (3,)))
    g.add_tensor(Tensor("tok", "int64", (1, 4)))
    g.inputs = ["x", "ids", "tok"]
    g.add_constant("k1", np.array(1, np.int64))
    g.add_constant("rows", np.array([[4, -1, 0], [2, 2, -5]], np.int64))
    g.add_constant("table", np.random.default_rng(1).integers(-128, 128, (10, 6)).astype(np.int8))
    for name, ins, shape, axis, dt in (("y0", ["x", "k1"], (2, 5, 4), 0, "int8"),
                                       ("y1", ["x", "rows"], (3, 2, 2, 3, 4), 2, "int8"),
                                       ("y2", ["x", "ids"], (3, 3, 5, 4), 1, "int8"),
                                       ("y3", ["table", "tok"], (1, 4, 6), 0, "int8")):
        g.add_tensor(Tensor(name, dt, shape))
        g.add_node("Gather", ins, [name], name=f"gather_{name}", axis=axis)
        g.outputs.append(name)
    rng = np.random.default_rng(2)
    feeds = {"x": rng.integers(-128, 128, (3, 2, 5, 4)).astype(np.int8),
             "ids": np.array([1, -2, 0], np.int64), "tok": np.array([[9, 0, -10, 3]], np.int64)}
    assert compile_check(g) is None, compile_check(g)
    prog = CompiledProgram(g, sorted(feeds), g.outputs)
    assert "gather_rows(" in prog.source and "copy_into(" in prog.source
    want = Interpreter(g, fast=False).run(feeds)
    for name, value in zip(g.outputs, prog.run(feeds)):
        assert value.dtype == want[name].dtype and np.array_equal(value, want[name]), name
    ex = CompiledExecutor(g, Interpreter(g), eager=True)
    bad = dict(feeds, tok=np.array([[9, 0, 10, 3]], np.int64))   # 10: past the 10-row table
    with pytest.raises(EdgeError) as compiled_err:
        ex.run(bad)
    with pytest.raises(EdgeError) as interp_err:
        Interpreter(g).run(bad)
    assert str(compiled_err.value) == str(interp_err.value)
    assert list(ex.status.values()) == ["compiled"]


def test_edge_inspect_names_the_executor_and_the_gemm_path(tmp_path, monkeypatch, capsys) -> None:
    import json

    import sdk
    from sdk.cli.main import main
    from sdk.kernels.fast import vnni

    monkeypatch.setenv("EDGE_CACHE_DIR", str(tmp_path / "programs"))
    g = sg.step_graph(n_in=6, n_state=12, n_out=3)   # a program no other test loads
    path = tmp_path / "step.edge"
    sdk.Bundle.from_graph(g).save(path)
    assert main(["inspect", str(path), "--json"]) == 0
    ex = json.loads(capsys.readouterr().out)["executor"]
    assert ex["executor"] == "compiled" and not ex["cached"] and "cold cache" in ex["why"]
    assert ex["gemm_path"] == vnni.gemm_path() and ex["gemm_path"].split()[0] in (
        "vnni", "sdot", "int16", "portable")
    CompiledProgram(g, sorted(g.inputs), g.outputs)          # compiles into the cache
    assert main(["inspect", str(path)]) == 0
    text = capsys.readouterr().out
    line = [x for x in text.splitlines() if x.startswith("executor:")]
    assert line and "machine code cached" in line[0] and "int8 GEMM path: " in line[0]
    from sdk.kernels.fast.gemm import thread_note
    assert ex["gemm_threads"] == thread_note() and thread_note() in " ".join(text.split())
    g.add_tensor(Tensor("yf", "float32", (1, 3)))
    g.add_node("Relu", [g.outputs[0]], ["yf"], name="float_relu")
    g.outputs = ["yf"]
    sdk.Bundle.from_graph(g).save(path)
    assert main(["inspect", str(path)]) == 0
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith("executor:")]
    assert line and line[0].startswith("executor: interpreter (node 'float_relu' (Relu)")


def test_the_first_numba_call_does_not_import_scipy_linalg_and_blas_still_works() -> None:
    # Numba's target set-up asks for a BLAS by importing scipy.linalg (~0.35 s of a first
    # inference); sdk.kernels.fast answers from the package index, BLAS users import it later
    code = (
        "import sys, numpy as np\n"
        "from sdk.backends import sample_graphs as sg\n"
        "from sdk.ops.interpreter import Interpreter\n"
        "g = sg.fc_graph(batch=2, k=8, n=4)\n"
        "Interpreter(g).run(sg.random_feeds(g, 0))\n"
        "print('scipy.linalg' in sys.modules)\n"
        "from numba import njit\n"
        "f = njit(lambda a, b: np.dot(a, b))\n"
        "print(f(np.ones((2, 3)), np.ones((3, 2)))[1, 1], 'scipy.linalg' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, text=True,
                         capture_output=True, check=True).stdout.split()
    assert out == ["False", "3.0", "True"]
