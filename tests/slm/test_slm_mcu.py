"""The G2P encoder-decoder generates on the microcontroller: the Cortex-M4 firmware in QEMU
(``mps2-an386``) runs the encoder once per word and the decoder step per token with its
self-attention KV cache held in the device's arena, and every step's integer logits, every
generated token and the final KV caches equal the host's integer generation bit for bit.
The language-model kernels (KV_CACHE_WRITE, CAUSAL_MASK) are checked on random cases against
the NumPy reference on the host build and in QEMU.

Both images (~1 MB) are programmed into the emulator's flash file by the host build of the
same firmware over its pty (the emulated UART moves ~10 KB/s: minutes for a megabyte), as a
debug probe would flash a board; the emulator then boots them (CRC-checked) from its slots.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from firmware_bridge.build import toolchain_missing
from firmware_bridge.client import DeviceClient, DeviceStatusError
from firmware_bridge.qemu import qemu_missing, ticks_to_instructions
from sdk.errors import InputError
from sdk.graph.ir import Graph, Node, Tensor
from sdk.kernels.cache import causal_mask, kv_cache_write

SLM = Path(__file__).resolve().parents[2] / "samples" / "slm"

N_WORDS = 8  # held-out words generated in QEMU


def _need(kind: str) -> None:
    why = toolchain_missing(kind) or (qemu_missing() if kind == "m4" else None)
    if why:
        pytest.skip(f"{kind} firmware unavailable: {why}")


@pytest.fixture(scope="module")
def images():
    from firmware_bridge.generation import pack_generation
    from sdk.compile import load_bundle

    return pack_generation(load_bundle(SLM / "encdec.edge"))


@pytest.fixture(scope="module")
def qemu_g2p(images, tmp_path_factory):
    """QEMU mps2-an386 booted from a flash holding the encoder and decoder images."""
    _need("m4")
    _need("host")
    from firmware_bridge.generation import program_flash_file
    from firmware_bridge.qemu import QemuFirmware

    flash = tmp_path_factory.mktemp("slm_mcu") / "flash.bin"
    program_flash_file(flash, images)
    with QemuFirmware(flash) as q:
        client = DeviceClient(q.url, timeout=1.0)
        yield client, q
        client.close()


@pytest.fixture(scope="module", params=["host", "m4"])
def kernel_device(request):
    _need(request.param)
    if request.param == "host":
        from firmware_bridge.host_firmware import HostFirmware as Fw
        timeout = 1.0
    else:
        from firmware_bridge.qemu import QemuFirmware as Fw
        timeout = 1.0
    with Fw() as fw:
        client = DeviceClient(fw.url, timeout=timeout)
        yield client
        client.close()


# -- kernels ----------------------------------------------------------------------------------
def _cache_case(rng: np.random.Generator) -> tuple[Graph, dict, dict]:
    h, cap, d = int(rng.integers(1, 4)), int(rng.integers(2, 12)), int(rng.integers(1, 9))
    t = int(rng.integers(1, min(cap, 3) + 1))
    dtype = str(rng.choice(["int8", "int16"]))
    info = np.iinfo(dtype)
    cache = rng.integers(info.min, info.max + 1, (1, h, cap, d)).astype(dtype)
    new = rng.integers(info.min, info.max + 1, (1, h, t, d)).astype(dtype)
    pos = np.int32(rng.integers(0, cap - t + 1))
    s_dtype = str(rng.choice(["int8", "int16"]))
    si = np.iinfo(s_dtype)
    scores = rng.integers(si.min, si.max + 1, (1, h, t, cap)).astype(s_dtype)
    g = Graph("lm_kernels")
    for name, v in (("cache", cache), ("new", new), ("scores", scores)):
        g.add_tensor(Tensor(name, str(v.dtype), v.shape))
    g.add_tensor(Tensor("pos", "int32", ()))
    g.add_tensor(Tensor("cache_next", dtype, cache.shape))
    g.add_tensor(Tensor("masked", s_dtype, scores.shape))
    g.nodes = [Node("KVCacheWrite", ["cache", "new", "pos"], ["cache_next"], {"axis": 2},
                    name="write"),
               Node("CausalMask", ["scores", "pos"], ["masked"], {}, name="mask")]
    g.inputs = ["cache", "new", "scores", "pos"]
    g.outputs = ["cache_next", "masked"]
    feeds = {"cache": cache, "new": new, "scores": scores, "pos": pos}
    expected = {"cache_next": kv_cache_write(cache, new, pos),
                "masked": causal_mask(scores, pos)}
    return g, feeds, expected


def _matmul_case(rng: np.random.Generator, da: str, db: str) -> tuple[Graph, dict, dict]:
    """Attention's QMatMul with 8/16-bit operands (the typed fast path of the C kernel)."""
    from sdk.kernels import linear
    from sdk.kernels.requant import quantize_multiplier_array

    m, k, n = (int(v) for v in rng.integers(1, 30, 3))
    batch = [((2, 3), (3,)), ((4,), (4,)), ((), ())][int(rng.integers(0, 3))]
    a = rng.integers(np.iinfo(da).min, np.iinfo(da).max + 1, batch[0] + (m, k)).astype(da)
    b = rng.integers(np.iinfo(db).min, np.iinfo(db).max + 1, batch[1] + (k, n)).astype(db)
    a.reshape(-1)[0], b.reshape(-1)[-1] = np.iinfo(da).min, np.iinfo(db).max
    m0, sh = quantize_multiplier_array(np.exp(rng.uniform(np.log(1e-9), np.log(1e-2), n)))
    attrs = {"a_zp": int(rng.integers(-128, 128)) if da == "int8" else 0,
             "b_zp": int(rng.integers(-128, 128)) if db == "int8" else 0, "m0": m0,
             "shift": sh, "out_zp": int(rng.integers(-20, 20)), "act_min": -128,
             "act_max": 127, "dtype": "int8"}
    ref = linear.qmatmul(a, b, **attrs)
    g = Graph("matmul16")
    for name, v in (("a", a), ("b", b)):
        g.add_tensor(Tensor(name, str(v.dtype), v.shape))
    g.add_tensor(Tensor("y", "int8", ref.shape))
    g.add_node("QMatMul", ["a", "b"], ["y"], **attrs)
    g.inputs, g.outputs = ["a", "b"], ["y"]
    return g, {"a": a, "b": b}, {"y": ref}


def test_lm_kernels_bit_exact_with_the_reference(kernel_device):
    from firmware_bridge.image import pack_image
    from firmware_bridge.session import DeviceModel

    m4 = kernel_device.info.board != "host"
    for seed in range(3 if m4 else 8):
        g, feeds, expected = _cache_case(np.random.default_rng([seed, 24]))
        model = DeviceModel(kernel_device, pack_image(g, state=[]))
        got = model.run(feeds)
        for k, ref in expected.items():
            assert got[k].dtype == ref.dtype and np.array_equal(got[k], ref), (seed, k)
    for seed, (da, db) in enumerate([(a, b) for a in ("int8", "int16")
                                     for b in ("int8", "int16")] * (1 if m4 else 3)):
        g2, f2, e2 = _matmul_case(np.random.default_rng([seed, 15]), da, db)
        got = DeviceModel(kernel_device, pack_image(g2)).run(f2)
        assert np.array_equal(got["y"], e2["y"]), (seed, g2.tensor("a").dtype)
    # a write past the capacity fails the invocation instead of writing out of bounds
    model = DeviceModel(kernel_device, pack_image(g, state=[]))
    cap = feeds["cache"].shape[2]
    bad = dict(feeds, pos=np.int32(cap - feeds["new"].shape[2] + 1))
    with pytest.raises(DeviceStatusError, match="INVOKE_FAILED"):
        model.run(bad)


# -- generation -------------------------------------------------------------------------------
def _host_steps(host, ids, tokens):
    """The host's integer logits for every step of a given token sequence, and its state."""
    feeds, state, lg = host.start(ids)
    rows = [lg]
    for t in tokens:
        rows.append(host._decode(feeds, [t], state))
    return rows, state


def test_g2p_on_the_cortex_m4_equals_the_host_bit_for_bit(qemu_g2p, encdec, heldout):
    import sdk
    from firmware_bridge.generation import DeviceGenerationSession

    client, q = qemu_g2p
    dev = DeviceGenerationSession(SLM / "encdec.edge", client)
    assert client.info.board == "mps2-an386"
    assert set(dev.slots.values()) == {0, 1}   # both images were already in flash
    tok = sdk.G2PTokenizer()
    words = heldout[:: max(1, len(heldout) // N_WORDS)][:N_WORDS]
    steps = 0
    for w in words:
        ids = tok.encode_word(w)
        got = dev.generate(ids)
        host = encdec.generate(ids)
        assert got.tokens == host.tokens, w
        assert got.finished == host.finished, w
        ref, state = _host_steps(encdec, ids, got.tokens)
        # one device step per token, plus the stop token's step
        assert len(dev.last_logits) == len(ref) - (got.finished != "stop"), w
        for k, (a, b) in enumerate(zip(dev.last_logits, ref)):
            assert a.dtype == b.dtype and np.array_equal(a, b), (w, k)
        steps += len(dev.last_logits)
        # the KV caches the device holds are the host's, every row (unwritten rows: zero point)
        if got.finished == "stop":
            cache = dev.kv_cache()
            assert set(cache) == {k for k in state.values if k.startswith(("k_cache", "v_cache"))}
            for k, v in cache.items():
                assert np.array_equal(v, state.values[k]), (w, k)
        instr = [ticks_to_instructions(t, q.icount_shift) for t in dev.ticks["steps"]]
        assert dev.ticks["encoder"] > 0 and min(instr) > 1e4
    assert steps >= 3 * len(words)


def test_device_sampling_and_streaming_and_refusals(qemu_g2p, encdec):
    """Seeded sampling picks the host's tokens from the device's logits; the token stream is
    generate()'s; what the device cannot do is refused in one line."""
    import sdk
    from firmware_bridge.generation import DeviceGenerationSession

    client, _ = qemu_g2p
    dev = DeviceGenerationSession(SLM / "encdec.edge", client)
    ids = sdk.G2PTokenizer().encode_word("kitchen")
    cfg = sdk.GenerationConfig(strategy="sample", top_k=5, temperature=1.5, seed=3)
    assert dev.generate(ids, cfg).tokens == encdec.generate(ids, cfg).tokens
    assert list(dev.stream(ids)) == encdec.generate(ids).tokens
    with pytest.raises(InputError, match="compiled for at most 20"):
        dev.generate(list(range(5, 26)))
    with pytest.raises(InputError, match="beam search on the device"):
        dev.generate([5, 6, 7], sdk.GenerationConfig(strategy="beam", num_beams=2))
    with pytest.raises(InputError, match="max_new_tokens=30 does not fit"):
        dev.generate([5, 6, 7], sdk.GenerationConfig(max_new_tokens=30))


def test_g2p_on_the_host_firmware_build(images, encdec, heldout, tmp_path):
    """The host build of the firmware (a Linux process) generates the same bits."""
    _need("host")
    import sdk
    from firmware_bridge.generation import DeviceGenerationSession
    from firmware_bridge.host_firmware import HostFirmware

    tok = sdk.G2PTokenizer()
    with HostFirmware(tmp_path / "flash.bin") as fw:
        client = DeviceClient(fw.url, timeout=1.0)
        dev = DeviceGenerationSession(SLM / "encdec.edge", client)  # loads both images
        for w in heldout[1:4]:
            ids = tok.encode_word(w)
            got = dev.generate(ids)
            assert got.tokens == encdec.generate(ids).tokens, w
            ref, _ = _host_steps(encdec, ids, got.tokens)
            assert all(np.array_equal(a, b) for a, b in zip(dev.last_logits, ref)), w
        client.close()


def test_decoder_only_on_the_host_firmware_build(deconly, heldout, tmp_path):
    """The decoder-only G2P model on the device: its prompt goes through the KV-cached step
    token by token (the device image has static shapes), and the logits from the separator
    on equal the host's (prefill entry, then steps) bit for bit."""
    _need("host")
    import sdk
    from firmware_bridge.generation import DeviceGenerationSession
    from firmware_bridge.host_firmware import HostFirmware

    tok = sdk.G2PTokenizer()
    with HostFirmware(tmp_path / "flash.bin") as fw:
        client = DeviceClient(fw.url, timeout=1.0)
        dev = DeviceGenerationSession(SLM / "deconly.edge", client)
        assert dev.images.encoder is None and dev.capacity == 48
        for w in heldout[5:7]:
            ids = tok.encode_word(w)
            got = dev.generate(ids)
            assert got.tokens == deconly.generate(ids).tokens, w
            ref, _ = _host_steps(deconly, ids, got.tokens)
            n = dev.ticks["prompt_steps"]
            assert n == len(ids) + 1
            mine = dev.last_logits[n - 1:]
            assert len(mine) == len(ref) - (got.finished != "stop"), w
            assert all(np.array_equal(a, b) for a, b in zip(mine, ref)), w
        client.close()


def test_edge_generate_on_the_device(encdec, tmp_path, capsys):
    """`edge generate --backend mcu --port URL` (a real process; the firmware's host build on
    a pty): the same phonemes as the host, the device's counts on stderr."""
    _need("host")
    import subprocess
    import sys

    import sdk
    from firmware_bridge.host_firmware import HostFirmware

    tok = sdk.G2PTokenizer()
    words = ["abashed", "zebra"]
    want = "".join(f"{w}\t{' '.join(tok.decode(encdec.generate(tok.encode_word(w)).tokens))}\n"
                   for w in words)
    edge = [sys.executable, "-m", "sdk.cli.main", "generate", str(SLM / "encdec.edge")]
    with HostFirmware(tmp_path / "flash.bin") as fw:
        r = subprocess.run(edge + ["--text", " ".join(words), "--backend", "mcu", "--port",
                                   fw.url], check=False, capture_output=True, text=True,
                           timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout == want
    assert "loading the encoder and decoder-step images" in r.stderr
    assert r.stderr.count("# host: first token") == len(words)

    from sdk.cli.main import main

    capsys.readouterr()
    assert main(["generate", str(SLM / "encdec.edge"), "--text", "zebra", "--backend",
                 "mcu"]) != 0
    err = capsys.readouterr().err
    assert "pass --port URL" in err and len(err.strip().splitlines()) == 1
