"""Acceptance: a PTQ'd decoder-only transformer block with a fixed-capacity integer KV cache.

The float block (``kv_models.decoder_block``, onnx.helper) is compiled with calibration to an
integer graph (ILayerNorm, QFullyConnected, QMatMul, Shiftmax, QAdd); ``add_kv_cache`` gives
it two int8 caches written by ``KVCacheWrite`` and a ``CausalMask`` before the Shiftmax. The
same integer graph is then shaped twice: ``prefill`` (P tokens at once) and ``decode_step``
(one token per call), two entries of one bundle over one weight store.
"""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
from kv_models import decoder_block, tokens

import sdk
from sdk.compile.bundle import FORMAT_VERSION, load_bundle
from sdk.errors import InputError, ModelFormatError
from sdk.graph.state import add_kv_cache
from sdk.kernels import cache as ref
from sdk.kernels.fast import cache as fast_cache
from sdk.ops.shapes import with_input_shapes

C, D, P = 16, 32, 12  # cache capacity, model width, prefill length


@pytest.fixture(scope="module")
def compiled():
    return sdk.compile_model(decoder_block(t=C, d=D), {"x": tokens(32, C, D)[:, 0]})


@pytest.fixture(scope="module")
def cached(compiled):
    g = compiled.graph.copy()
    add_kv_cache(g, {"k_rows": "k_cache", "v_rows": "v_cache"}, ["scores"], C)
    return g


@pytest.fixture(scope="module")
def bundle(cached):
    prefill = with_input_shapes(cached, {"x": [1, P, D]})
    step = with_input_shapes(cached, {"x": [1, 1, D]})
    return sdk.Bundle.from_graphs({"prefill": prefill, "decode_step": step}, name="lm_block")


def _quantized(x: np.ndarray, sess: sdk.Session) -> np.ndarray:
    from sdk.kernels.quantize import quantize_linear

    q = sess.inputs[0].quant
    return quantize_linear(x, q.scale, q.zero_point, sess.inputs[0].dtype)


# -- kernels -------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["int8", "int16"])
def test_kernels_numba_equals_numpy_bit_for_bit(dtype):
    rng = np.random.default_rng(3)
    info = np.iinfo(dtype)
    for trial in range(20):
        b, h, cap, d = rng.integers(1, 3), rng.integers(1, 4), rng.integers(1, 9), rng.integers(1, 6)
        t = int(rng.integers(1, cap + 1))
        pos = np.int32(rng.integers(0, cap - t + 1))
        cache = rng.integers(info.min, info.max + 1, (b, h, cap, d)).astype(dtype)
        new = rng.integers(info.min, info.max + 1, (b, h, t, d)).astype(dtype)
        a = ref.kv_cache_write(cache, new, pos)
        f = fast_cache.kv_cache_write(cache, new, pos)
        assert a.dtype == f.dtype == cache.dtype and np.array_equal(a, f)
        assert np.array_equal(a[:, :, pos:pos + t], new)
        assert np.array_equal(np.delete(a, np.s_[pos:pos + t], 2),
                              np.delete(cache, np.s_[pos:pos + t], 2))
        scores = rng.integers(info.min, info.max + 1, (b, h, t, cap)).astype(dtype)
        m, mf = ref.causal_mask(scores, pos), fast_cache.causal_mask(scores, pos)
        assert np.array_equal(m, mf)
        for i in range(t):
            assert np.array_equal(m[..., i, :pos + i + 1], scores[..., i, :pos + i + 1])
            assert np.all(m[..., i, pos + i + 1:] == info.min)
    # the rows axis is an attribute: [B, C, D] caches too
    cache = np.zeros((2, 5, 3), np.int8)
    new = np.ones((2, 2, 3), np.int8)
    assert np.array_equal(ref.kv_cache_write(cache, new, 1, axis=1),
                          fast_cache.kv_cache_write(cache, new, 1, axis=1))


def test_masked_columns_get_probability_exactly_zero():
    from sdk.kernels.transformer import shiftmax

    rng = np.random.default_rng(4)
    scores = rng.integers(-3000, 3000, (2, 3, 5, 8)).astype(np.int16)
    for pos in range(0, 4):
        p = shiftmax(ref.causal_mask(scores, np.int32(pos)), axis=-1, x0=-40, n=15)
        for i in range(5 if pos + 5 <= 8 else 0):
            assert np.all(p[..., i, pos + i + 1:] == 0) and np.all(p[..., i, :pos + i + 1].sum(-1) > 0)


@pytest.mark.parametrize("impl", [ref, fast_cache])
def test_write_past_capacity_is_a_one_line_error(impl):
    cache = np.zeros((1, 2, 4, 3), np.int8)
    with pytest.raises(InputError) as err:
        impl.kv_cache_write(cache, np.zeros((1, 2, 2, 3), np.int8), np.int32(3))
    msg = str(err.value)
    assert "\n" not in msg and "capacity 4" in msg and "position 3" in msg


def test_cache_ops_are_registered_with_shape_rules(cached):
    from sdk.ops.registry import load_all
    from sdk.ops.schema import opdef

    assert {"KVCacheWrite", "CausalMask"} <= set(load_all())
    assert opdef("KVCacheWrite").shape is not None and opdef("CausalMask").shape is not None
    ops = [n.op for n in cached.nodes]
    assert ops.count("KVCacheWrite") == 2 and ops.count("CausalMask") == 1
    assert {"ILayerNorm", "QFullyConnected", "QMatMul", "Shiftmax", "QAdd"} <= set(ops)


# -- state declared in the IR ---------------------------------------------------------------
def test_state_is_declared_and_serialized(bundle, tmp_path):
    decls = bundle.entry("decode_step").state
    assert [(d.input, d.output, d.kind, d.capacity, d.position, d.dtype) for d in decls] == [
        ("k_cache", "k_cache_next", "kv_cache", C, "pos", "int8"),
        ("v_cache", "v_cache_next", "kv_cache", C, "pos", "int8")]
    loaded = load_bundle(bundle.save(tmp_path / "lm.edge"))
    for name in ("prefill", "decode_step"):
        assert [d.to_json() for d in loaded.entry(name).state] == \
            [d.to_json() for d in bundle.entry(name).state]


def test_old_onnx_step_graph_gets_its_state_declared_at_import(tmp_path):
    import sys
    from pathlib import Path

    import onnx

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "streaming"))
    from step_graphs import calibration, recurrent_step

    path = tmp_path / "step.onnx"
    onnx.save(recurrent_step(0), path)
    graph = sdk.Session(path).graph
    assert {(d.input, d.output, d.kind) for d in graph.state} == {
        ("buf", "buf_next", "recurrent"), ("h", "h_next", "recurrent")}
    compiled = sdk.compile_model(path, calibration(0))  # the lowering keeps the declaration
    assert {d.input for d in compiled.graph.state} == {"buf", "h"}
    assert all(d.dtype in ("int8", "int16") and d.quant is not None
               for d in compiled.graph.state)


# -- step by step == prefill, bit for bit ---------------------------------------------------
@pytest.mark.parametrize("fast", [False, True])
def test_one_token_per_call_equals_prefill_bit_for_bit(bundle, fast):
    prefill = sdk.Session(bundle, fast=fast, integer_io=True, entry="prefill")
    step = prefill.entry("decode_step")
    x = _quantized(tokens(1, P, D, seed=7)[0], prefill)
    full_state = prefill.new_state()
    full = prefill.run({"x": x}, state=full_state)["y"]
    assert full.dtype.kind == "i" and full.shape == (1, P, D) and full_state.position == P
    state = step.new_state()
    rows = []
    for i in range(P):
        assert state.position == i
        rows.append(step.run({"x": x[:, i:i + 1]}, state=state)["y"])
    assert np.array_equal(np.concatenate(rows, axis=1), full)
    assert state.position == P
    for k in ("k_cache", "v_cache"):
        assert np.array_equal(state.values[k], full_state.values[k])


def test_numpy_spec_and_numba_path_agree_on_every_step(bundle):
    x = tokens(1, C, D, seed=8)[0]
    outs = []
    for fast in (False, True):
        s = sdk.Session(bundle, fast=fast, integer_io=True, entry="decode_step")
        st = s.new_state()
        outs.append(np.concatenate([s.run({"x": _quantized(x[:, i:i + 1], s)}, state=st)["y"]
                                    for i in range(C)], axis=1))
    assert np.array_equal(outs[0], outs[1])


def test_prefill_then_steps_continues_the_same_sequence(bundle, compiled):
    """P tokens by prefill, then C − P single steps == C single steps."""
    step = sdk.Session(bundle, integer_io=True, entry="decode_step")
    prefill = step.entry("prefill")
    x = _quantized(tokens(1, C, D, seed=9)[0], step)
    ref_state = step.new_state()
    expected = [step.run({"x": x[:, i:i + 1]}, state=ref_state)["y"] for i in range(C)]
    state = prefill.new_state()
    got = [prefill.run({"x": x[:, :P]}, state=state)["y"]]
    got += [step.run({"x": x[:, i:i + 1]}, state=state)["y"] for i in range(P, C)]
    assert np.array_equal(np.concatenate(got, 1), np.concatenate(expected, 1))
    # and the last token saw everything before it: it equals the full (unmasked) block's
    full = sdk.Session(compiled, integer_io=True).run({"x": x})["y"]
    assert np.array_equal(expected[-1][0, 0], full[0, -1])


def test_unused_cache_rows_never_change_the_output(bundle):
    s = sdk.Session(bundle, integer_io=True, entry="decode_step")
    x = _quantized(tokens(1, 4, D, seed=10)[0], s)
    clean, dirty = s.new_state(), s.new_state()
    rng = np.random.default_rng(0)
    for k, v in dirty.values.items():
        dirty.values[k] = rng.integers(-128, 128, v.shape).astype(v.dtype)
    for i in range(4):
        a = s.run({"x": x[:, i:i + 1]}, state=clean)["y"]
        b = s.run({"x": x[:, i:i + 1]}, state=dirty)["y"]
        assert np.array_equal(a, b)


def test_quantized_block_tracks_the_float_block(bundle):
    """The last prefill token sees every token: compare it with the float model."""
    x = tokens(1, P, D, seed=11)[0]
    want = sdk.Session(sdk.load_onnx(decoder_block(t=P, d=D))).run({"x": x})["y"][0, -1]
    prefill = sdk.Session(bundle, entry="prefill")
    got = prefill.run({"x": x}, state=prefill.new_state())["y"][0, -1]
    err = np.abs(got - want).max() / np.abs(want).max()
    assert err < 0.1, err


def test_write_past_capacity_through_the_session_is_one_line(bundle):
    s = sdk.Session(bundle, entry="decode_step")
    st = s.new_state()
    x = tokens(1, 1, D)[0]
    for _ in range(C):
        s.run({"x": x}, state=st)
    with pytest.raises(InputError) as err:
        s.run({"x": x}, state=st)
    assert "\n" not in str(err.value) and f"capacity {C}" in str(err.value)
    assert st.position == C  # a refused write leaves the state as it was


def test_state_reset_starts_the_sequence_again(bundle):
    s = sdk.Session(bundle, integer_io=True, entry="decode_step")
    x = _quantized(tokens(1, 3, D, seed=12)[0], s)
    st = s.new_state()
    first = [s.run({"x": x[:, i:i + 1]}, state=st)["y"] for i in range(3)]
    st.reset()
    assert st.position == 0
    assert all(np.all(v == int(d.quant.zero_point)) for v, d in
               zip(st.values.values(), s.state_decls))
    again = [s.run({"x": x[:, i:i + 1]}, state=st)["y"] for i in range(3)]
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    with pytest.raises(InputError, match="state feeds it"):
        s.run({"x": x[:, :1], "pos": np.int32(0)}, state=st)


# -- multi-entry bundle ---------------------------------------------------------------------
def test_multi_entry_bundle_saves_loads_shares_weights_and_runs(bundle, tmp_path):
    path = bundle.save(tmp_path / "lm.edge")
    alone = {k: sdk.Bundle.from_graphs({k: bundle.entry(k)}).to_bytes()
             for k in bundle.entry_names}
    store = bundle.manifest["weight_store_bytes"]
    single = {}
    for k, data in alone.items():
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            single[k] = len(z.read("weights.bin"))
    # one weight store: the shared constants are stored once
    assert store == single["prefill"] == single["decode_step"]
    assert path.stat().st_size < sum(len(d) for d in alone.values()) - store // 2
    with zipfile.ZipFile(path) as z:
        m = json.loads(z.read("manifest.json"))
        names = set(z.namelist())
    assert m["format_version"] == FORMAT_VERSION == 3
    assert [e["name"] for e in m["entries"]] == ["prefill", "decode_step"]
    assert {"entries/decode_step/graph.json", "entries/decode_step/memory_plan.json"} <= names
    assert all(e["memory"]["planned"] for e in m["entries"])
    loaded = load_bundle(path)
    assert loaded.entry_names == ["prefill", "decode_step"]
    assert loaded.plans["decode_step"].arena_bytes < loaded.plans["prefill"].arena_bytes
    x = tokens(1, 1, D, seed=13)[0]
    a = sdk.Session(bundle, entry="decode_step")
    b = sdk.Session(path, entry="decode_step")
    assert np.array_equal(a.run({"x": x}, state=a.new_state())["y"],
                          b.run({"x": x}, state=b.new_state())["y"])
    with pytest.raises(InputError, match="no entry 'decoder'.*prefill"):
        loaded.entry("decoder")


def test_tampered_entry_part_fails_its_checksum(bundle, tmp_path):
    path = bundle.save(tmp_path / "lm.edge")
    with zipfile.ZipFile(path) as zin, zipfile.ZipFile(tmp_path / "bad.edge", "w") as zout:
        for n in zin.namelist():
            data = zin.read(n)
            if n == "entries/decode_step/graph.json":
                data = data.replace(b'"KVCacheWrite"', b'"KVCacheRead"')
            zout.writestr(n, data)
    with pytest.raises(ModelFormatError, match="checksum mismatch in part "
                                               "'entries/decode_step/graph.json'"):
        load_bundle(tmp_path / "bad.edge")


def test_old_version_bundle_loads_as_the_single_entry_main(compiled, tmp_path):
    data = compiled.to_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        parts = {n: z.read(n) for n in z.namelist()}
    m = json.loads(parts.pop("manifest.json"))
    m["format_version"] = 2
    for k in ("entries", "main_entry", "weight_store_bytes"):
        m.pop(k)
    old = tmp_path / "v2.edge"
    with zipfile.ZipFile(old, "w") as z:
        z.writestr("manifest.json", json.dumps(m))
        for n, b in parts.items():
            z.writestr(n, b)
    loaded = load_bundle(old)
    assert loaded.entry_names == ["main"] and loaded.manifest["entries"][0]["name"] == "main"
    x = tokens(1, C, D, seed=14)[0]
    assert np.array_equal(sdk.Session(old, entry="main").run({"x": x})["y"],
                          compiled.run({"x": x})["y"])


# -- resume from intermediates --------------------------------------------------------------
def test_resume_from_intermediates_equals_a_full_run(compiled):
    s = sdk.Session(compiled, integer_io=True)
    x = _quantized(tokens(1, C, D, seed=15)[0], s)
    full = s.run({"x": x})["y"]
    ck = s.run_until({"x": x}, ["add_38"])  # stage 1: through the attention residual
    assert set(ck.tensors) == {"add_38"}
    assert np.array_equal(s.resume(ck, ["y"])["y"], full)
    # the kept tensor is what resume uses: nothing before it runs again
    ck.tensors["add_38"] = np.zeros_like(ck["add_38"])
    assert not np.array_equal(s.resume(ck, ["y"])["y"], full)


def test_resume_with_state_advances_like_run(bundle):
    s = sdk.Session(bundle, integer_io=True, entry="decode_step")
    x = _quantized(tokens(1, 2, D, seed=16)[0], s)
    a, b = s.new_state(), s.new_state()
    want = [s.run({"x": x[:, i:i + 1]}, state=a)["y"] for i in range(2)]
    got = []
    for i in range(2):
        ck = s.run_until({"x": x[:, i:i + 1]}, ["k_cache_next", "v_cache_next"], state=b)
        assert b.position == i  # run_until does not advance the state
        got.append(s.resume(ck, ["y"], state=b)["y"])
    assert all(np.array_equal(p, q) for p, q in zip(want, got)) and b.position == 2


def test_one_entry_with_a_dynamic_token_axis_advances_by_the_rows_written(cached, bundle):
    """x [1, -1, D]: any number of tokens per call; the position advances by each call's T."""
    anyt = sdk.Session(with_input_shapes(cached, {"x": [1, -1, D]}), integer_io=True)
    step = sdk.Session(bundle, integer_io=True, entry="decode_step")
    x = _quantized(tokens(1, 6, D, seed=17)[0], step)
    st = anyt.new_state()
    got = [anyt.run({"x": x[:, :3]}, state=st)["y"]]
    assert st.position == 3
    got += [anyt.run({"x": x[:, 3:4]}, state=st)["y"], anyt.run({"x": x[:, 4:]}, state=st)["y"]]
    assert st.position == 6
    ref_state = step.new_state()
    want = [step.run({"x": x[:, i:i + 1]}, state=ref_state)["y"] for i in range(6)]
    assert np.array_equal(np.concatenate(got, 1), np.concatenate(want, 1))


def test_streaming_session_carries_a_kv_cache_too(bundle):
    """StreamingSession is a user of the session state API: a decode step streams."""
    ss = sdk.StreamingSession(bundle.entry("decode_step"), integer_io=True)
    assert [i.name for i in ss.stream_inputs] == ["x"] and ss.pairs == {}
    step = sdk.Session(bundle, integer_io=True, entry="decode_step")
    x = _quantized(tokens(1, 5, D, seed=18)[0], step)
    streamed = ss.steps(x[0][:, None, None, :].reshape(5, 1, 1, D))["y"]
    st = step.new_state()
    want = np.stack([step.run({"x": x[:, i:i + 1]}, state=st)["y"] for i in range(5)])
    assert np.array_equal(streamed, want) and ss.state.position == 5
    ss.reset()
    assert ss.state.position == 0
