"""Mutation fuzzer for the SDK's file and wire readers.

    python tools/fuzz.py --quick                      # every target, a few hundred cases each
    python tools/fuzz.py --target bundle --cases 2000 --seed 1 --json fuzz.json

Targets (``--target``, repeatable; default all):

* ``bundle`` — ``sdk.load_bundle`` then ``Session.run`` on mutated real bundles (a demo CNN
  compiled in-process and a two-entry bundle of sample integer graphs);
* ``npz`` — the CLI's ``.npz`` / ``.npy`` reader (``sdk.cli.arrays.load_arrays``);
* ``frame`` — the serial frame decoder (``firmware_bridge.framing``: ``decode_frame`` and
  ``FrameReader``);
* ``toml`` — the board TOML loader (``targets.loader.parse_target``); caught and reported only;
* ``onnx`` — ``sdk.load_onnx`` then ``sdk.compile_model`` on mutated real ONNX models (the
  ``tests/fixtures/torch/encoder.onnx`` fixture with its calibration set and the demo CNN
  built in-process): protobuf byte mutations and structured ones (an attribute's type or
  value, a weight's values made huge / NaN / inf, a dim made 0 / negative / huge, an op_type
  made integer-like or unknown, an input dropped);
* ``tflite`` — ``sdk.read_tflite`` on mutated ``.tflite`` files written by
  ``sdk.write_tflite`` from small integer graphs (``sdk.backends.sample_graphs``).

Mutations: bit flips, truncation, byte insert / delete / overwrite; for zip files entry
rename (unknown, traversal), resize, duplicate, drop; for JSON parts (re-hashed so the
checksum passes) field type swaps, huge and negative numbers, deleted keys.

An SDK error (``sdk.errors.EdgeError``) is the expected outcome of a bad input; anything else
is a finding. Per target the report gives the cases run, the findings (type, where raised,
message; the input saved under ``tests/fuzz_regressions/<target>/``), cases over the hang
limit (10 s) and the process's peak resident memory. Exit status 1 when there is a finding.
Plain Python and a seeded ``random``: the same ``--seed`` gives the same cases.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import io
import json
import random
import resource
import signal
import sys
import tempfile
import time
import traceback
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np

from sdk.errors import EdgeError

REGRESSIONS = ROOT / "tests" / "fuzz_regressions"
HANG_S = 10.0
TARGETS = ("bundle", "npz", "frame", "toml", "onnx", "tflite", "agent")
EXT = {"bundle": ".edge", "npz": ".npzcase", "frame": ".bin", "toml": ".toml", "onnx": ".onnx",
       "tflite": ".tflite", "agent": ".http"}
HUGE = [2**31, 2**31 - 1, 2**32, 2**63, 2**64 + 7, 10**30, -1, -2**31, -(2**63), 0,
        1e308, -1e308, 1.5, 10**400]


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang()


# -- byte-level mutations -------------------------------------------------------------------
def bit_flip(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.choice((1, 1, 2, 4, 8))):
        if b:
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
    return bytes(b)


def truncate(rng: random.Random, data: bytes) -> bytes:
    return data[:rng.randrange(len(data) + 1)] if data else data


def insert_bytes(rng: random.Random, data: bytes) -> bytes:
    i = rng.randrange(len(data) + 1)
    junk = rng.choice([bytes([rng.randrange(256)]) * rng.randint(1, 64),
                       rng.randbytes(rng.randint(1, 64)), b"\x00", b"\xff\xff\xff\x7f"])
    return data[:i] + junk + data[i:]


def delete_bytes(rng: random.Random, data: bytes) -> bytes:
    if not data:
        return data
    i = rng.randrange(len(data))
    return data[:i] + data[i + rng.randint(1, 64):]


def overwrite(rng: random.Random, data: bytes) -> bytes:
    if len(data) < 4:
        return data
    b = bytearray(data)
    i = rng.randrange(len(b) - 3)
    b[i:i + 4] = rng.choice([b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\xff\xff\xff\x7f",
                             b"\x00\x00\x00\x80", rng.randbytes(4)])
    return bytes(b)


BYTE_MUTATIONS = (bit_flip, truncate, insert_bytes, delete_bytes, overwrite)


# -- zip-level mutations --------------------------------------------------------------------
def _zip_read(data: bytes) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return [(i.filename, z.read(i)) for i in z.infolist()]


def _zip_write(entries: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for n, b in entries:
            z.writestr(n, b)
    return buf.getvalue()


def _rehash(entries: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """Make a bundle's manifest hashes (and weight store size) agree with its parts, so
    a mutation reaches the parsers behind the checksum."""
    try:
        idx = [n for n, _ in entries].index("manifest.json")
        m = json.loads(entries[idx][1])
        if not isinstance(m, dict):
            return entries
        m["parts"] = {n: hashlib.sha256(b).hexdigest() for n, b in entries
                      if n != "manifest.json"}
        for n, b in entries:
            if n == "weights.bin" and "weight_store_bytes" in m:
                m["weight_store_bytes"] = len(b)
        entries[idx] = ("manifest.json", json.dumps(m).encode())
    except (ValueError, UnicodeDecodeError, RecursionError):
        pass
    return entries


def zip_mutation(rng: random.Random, data: bytes, rehash: bool) -> bytes:
    entries = _zip_read(data)
    kind = rng.choice(("rename", "resize", "duplicate", "drop", "extra", "part_bytes",
                       "stored_bitflip"))
    i = rng.randrange(len(entries))
    name, body = entries[i]
    if kind == "rename":
        new = rng.choice(["../../../../etc/hostname", "/etc/passwd", "entries\\x\\graph.json",
                          "unknown.bin", name.upper(), name + "/", "entries/../graph.json",
                          rng.choice(entries)[0]])
        entries[i] = (new, body)
    elif kind == "resize":
        if rng.random() < 0.5:
            body = body + b"\0" * rng.choice((1, 16, 4096, 1 << 20))
        else:
            body = body[:rng.randrange(len(body) + 1)]
        entries[i] = (name, body)
    elif kind == "duplicate":
        entries.insert(rng.randrange(len(entries) + 1), (name, bit_flip(rng, body)))
    elif kind == "drop":
        entries.pop(i)
    elif kind == "extra":
        entries.append((rng.choice(["../../../../etc/hostname", "extra.json",
                                    "entries/x/graph.json", "C:/x"]), rng.randbytes(32)))
    elif kind == "part_bytes":
        entries[i] = (name, rng.choice(BYTE_MUTATIONS)(rng, body))
    else:
        return bit_flip(rng, data)
    if rehash and rng.random() < 0.8:
        entries = _rehash(entries)
    return _zip_write(entries)


# -- JSON-level mutations -------------------------------------------------------------------
def _paths(doc, prefix=(), out=None, depth=0):
    out = [] if out is None else out
    out.append(prefix)
    if depth > 12:
        return out
    if isinstance(doc, dict):
        for k, v in doc.items():
            _paths(v, prefix + (k,), out, depth + 1)
    elif isinstance(doc, list):
        for k, v in enumerate(doc[:64]):
            _paths(v, prefix + (k,), out, depth + 1)
    return out


def _swap(rng: random.Random, v):
    choices = [None, True, "x", "", [], {}, [1, 2], {"a": 1}, rng.choice(HUGE),
               [rng.choice(HUGE)] * rng.randint(1, 4), "../../etc", 3.5, -1]
    if isinstance(v, list) and v:
        choices += [v[:-1], v + v[-1:], [v], [str(e) for e in v]]
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        choices += [str(v), -v if v else -1, v * 10**9, float(v)]
    if isinstance(v, str):
        choices += [v + "x", v.upper(), "../" + v, 7]
    return rng.choice(choices)


def json_mutation(rng: random.Random, doc):
    """One field of ``doc`` swapped for another type, a huge number, or deleted."""
    paths = [p for p in _paths(doc) if p]
    if not paths:
        return _swap(rng, doc)
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        path = rng.choice(paths)
        parent = doc
        try:
            for k in path[:-1]:
                parent = parent[k]
            k = path[-1]
            if isinstance(parent, dict) and rng.random() < 0.15:
                parent.pop(k, None)
            else:
                parent[k] = _swap(rng, parent[k])
        except (KeyError, IndexError, TypeError):
            pass
    return doc


def bundle_json_mutation(rng: random.Random, data: bytes) -> bytes:
    entries = _zip_read(data)
    json_idx = [i for i, (n, _) in enumerate(entries) if n.endswith(".json")]
    i = rng.choice(json_idx)
    name, body = entries[i]
    doc = json_mutation(rng, json.loads(body))
    entries[i] = (name, json.dumps(doc).encode())
    return _zip_write(_rehash(entries))


# -- targets --------------------------------------------------------------------------------
class Target:
    name = ""

    def seeds(self) -> list[bytes]:
        raise NotImplementedError

    def mutate(self, rng: random.Random, data: bytes) -> bytes:
        return rng.choice(BYTE_MUTATIONS)(rng, data)

    def run(self, path: Path) -> None:
        raise NotImplementedError


class BundleTarget(Target):
    name = "bundle"

    def __init__(self) -> None:
        self._seeds: list[bytes] | None = None

    def seeds(self) -> list[bytes]:
        if self._seeds is None:
            self._seeds = _bundle_seeds()
        return self._seeds

    def mutate(self, rng: random.Random, data: bytes) -> bytes:
        r = rng.random()
        if r < 0.35:
            return rng.choice(BYTE_MUTATIONS)(rng, data)
        if r < 0.6:
            return zip_mutation(rng, data, rehash=True)
        return bundle_json_mutation(rng, data)

    def run(self, path: Path) -> None:
        import sdk

        bundle = sdk.load_bundle(path)
        from sdk.cli.inspect_cmd import bundle_report

        for name in bundle.entry_names:
            bundle_report(bundle, name)
        sess = sdk.Session(path)
        specs = bundle.inputs
        feeds = {}
        for s in specs:
            shape = [d if d > 0 else 1 for d in (s["shape"] or [1])]
            if int(np.prod(shape)) > 1 << 20:
                raise EdgeError("input too large to fuzz")  # a valid but huge input: skip
            feeds[s["name"]] = np.zeros(shape, np.float32)
        sess.run(feeds)


def _bundle_seeds() -> list[bytes]:
    import onnx

    import sdk
    from sdk.backends.sample_graphs import fc_graph, step_graph
    from sdk.cli.demo_cmd import build_demo_cnn, synthetic_images

    out = []
    with tempfile.TemporaryDirectory() as d:
        onnx.save(build_demo_cnn(), Path(d) / "cnn.onnx")
        b = sdk.compile_model(Path(d) / "cnn.onnx", {"x": synthetic_images(8, seed=1)})
        out.append(b.to_bytes())
    out.append(sdk.Bundle.from_graphs({"fc": fc_graph(), "step": step_graph()}).to_bytes())
    return out


class NpzTarget(Target):
    name = "npz"

    def seeds(self) -> list[bytes]:
        rng = np.random.default_rng(0)
        out = []
        for compressed in (False, True):
            buf = io.BytesIO()
            (np.savez_compressed if compressed else np.savez)(
                buf, x=rng.standard_normal((2, 3, 8)).astype(np.float32),
                ids=np.arange(12, dtype=np.int64).reshape(3, 4))
            out.append(b"Z" + buf.getvalue())
        buf = io.BytesIO()
        np.save(buf, rng.standard_normal((4, 5)).astype(np.float32))
        out.append(b"Y" + buf.getvalue())
        return out

    def mutate(self, rng: random.Random, data: bytes) -> bytes:
        tag, body = data[:1], data[1:]
        if tag == b"Z" and rng.random() < 0.3:
            return tag + zip_mutation(rng, body, rehash=False)
        if rng.random() < 0.3:  # the .npy header: shape / dtype / order fields
            i = body.find(b"{")
            j = body.find(b"}", i)
            if i >= 0 and j > i:
                header = body[i:j + 1]
                header = rng.choice([
                    header.replace(b"(", b"(" + str(rng.choice([10**12, 2**62, -5, 0])).encode()
                                   + b", ", 1),
                    header.replace(b"<f4", rng.choice([b"|O", b"<U9", b">f8", b"V8", b"<f4"])),
                    header.replace(b"False", b"True"), header[:-3] + b"}"])
                return tag + body[:i] + header + body[j + 1:]
        return tag + rng.choice(BYTE_MUTATIONS)(rng, body)

    def run(self, path: Path) -> None:
        from sdk.cli.arrays import load_arrays

        data = path.read_bytes()
        real = path.with_suffix(".npz" if data[:1] == b"Z" else ".npy")
        real.write_bytes(data[1:])
        names = ["x", "ids"] if data[:1] == b"Z" else ["x"]
        load_arrays(real, names)


class FrameTarget(Target):
    name = "frame"

    def seeds(self) -> list[bytes]:
        from firmware_bridge.framing import encode_frame

        return [encode_frame(b"\x00" + bytes(range(1, 255)) * 2),
                encode_frame(b"\x00\x01\x02\x00\x00\x03"), encode_frame(b"\x00" * 300)]

    def run(self, path: Path) -> None:
        from firmware_bridge.framing import FrameReader, decode_frame

        data = path.read_bytes()
        reader = FrameReader(max_frame=1024)
        for k in range(0, len(data), 7):
            for frame in reader.feed(data[k:k + 7]):
                decode_frame(frame)
        decode_frame(data.strip(b"\x00"))


class TomlTarget(Target):
    name = "toml"

    def seeds(self) -> list[bytes]:
        return [p.read_bytes() for p in sorted((ROOT / "targets").glob("*.toml"))[:4]]

    def mutate(self, rng: random.Random, data: bytes) -> bytes:
        if rng.random() < 0.4:  # a value swapped for another type or a huge number
            lines = data.split(b"\n")
            idx = [i for i, ln in enumerate(lines) if b"=" in ln]
            if idx:
                i = rng.choice(idx)
                key = lines[i].split(b"=", 1)[0]
                val = rng.choice([b"-1", b"1e400", b"99999999999999999999999", b'"x"', b"[]",
                                  b"{}", b"true", b"nan", b"-inf", b"0"])
                lines[i] = key + b"= " + val
                return b"\n".join(lines)
        return rng.choice(BYTE_MUTATIONS)(rng, data)

    def run(self, path: Path) -> None:
        from targets.loader import parse_target

        parse_target(path)


ODD_OP_TYPES = ["7", "123", "-1", "0x10", "", "Foo", "conv", "Conv2D", "ÿ", "Relu\x00"]


def onnx_structured_mutation(rng: random.Random, data: bytes) -> bytes:
    """Parse ``data`` as an ONNX model, change one thing, serialize it again."""
    import onnx
    from onnx import AttributeProto, numpy_helper

    m = onnx.ModelProto()
    m.ParseFromString(data)
    g = m.graph
    kind = rng.choice(("attr", "attr", "weight", "weight", "dim", "op_type", "drop_input",
                       "drop_node_input", "drop_attr", "swap_input"))
    nodes = list(g.node)
    if kind == "attr":
        cand = [(n, a) for n in nodes for a in n.attribute]
        if cand:
            _, a = rng.choice(cand)
            how = rng.choice(("type", "int", "ints", "float", "string"))
            if how == "type":
                a.type = rng.choice([AttributeProto.INT, AttributeProto.FLOAT,
                                     AttributeProto.STRING, AttributeProto.INTS,
                                     AttributeProto.FLOATS, AttributeProto.TENSOR,
                                     AttributeProto.GRAPH, AttributeProto.UNDEFINED])
            elif how == "int":
                a.i = rng.choice([0, -1, 2**31, -(2**40), 2**62, 3])
            elif how == "ints":
                vals = list(a.ints) or [1, 1]
                vals[rng.randrange(len(vals))] = rng.choice([0, -1, -7, 2**31, 2**62, 10**6])
                if rng.random() < 0.3:
                    vals = vals[:rng.randrange(len(vals) + 1)]
                del a.ints[:]
                a.ints.extend(vals)
            elif how == "float":
                a.f = rng.choice([float("nan"), float("inf"), -float("inf"), 1e38, -1.0, 0.0])
            else:
                a.s = rng.choice([b"", b"\xff\xfe", b"NOTSET", b"x" * 300])
    elif kind == "weight" and g.initializer:
        t = rng.choice(list(g.initializer))
        try:
            arr = numpy_helper.to_array(t).copy()
        except Exception:  # noqa: BLE001 - an unparsable tensor: leave it
            return m.SerializeToString()
        if arr.size and arr.dtype.kind == "f":
            flat = arr.reshape(-1)
            n = rng.choice([1, 1, max(1, flat.size // 10), flat.size])
            idx = rng.sample(range(flat.size), min(n, flat.size))
            flat[idx] = rng.choice([1e30, -1e30, 3e38, float("nan"), float("inf"),
                                    -float("inf"), 0.0, 1e-38])
        elif arr.size and arr.dtype.kind in "iu":
            flat = arr.reshape(-1)
            flat[rng.randrange(flat.size)] = rng.choice([0, -1, 2**31 - 1, -(2**31),
                                                           np.iinfo(arr.dtype).max])
        t.CopyFrom(numpy_helper.from_array(arr, t.name))
    elif kind == "dim":
        vis = [v for v in list(g.input) + list(g.output) + list(g.value_info)
               if v.type.tensor_type.shape.dim]
        if vis:
            v = rng.choice(vis)
            d = rng.choice(list(v.type.tensor_type.shape.dim))
            d.dim_value = rng.choice([0, -1, -5, 2**31, 2**40, 10**12])
    elif kind == "op_type" and nodes:
        rng.choice(nodes).op_type = rng.choice(ODD_OP_TYPES)
    elif kind == "drop_input" and g.input:
        del g.input[rng.randrange(len(g.input))]
    elif kind == "drop_node_input":
        cand = [n for n in nodes if n.input]
        if cand:
            n = rng.choice(cand)
            del n.input[rng.randrange(len(n.input))]
    elif kind == "drop_attr":
        cand = [n for n in nodes if n.attribute]
        if cand:
            n = rng.choice(cand)
            del n.attribute[rng.randrange(len(n.attribute))]
    elif kind == "swap_input":
        cand = [n for n in nodes if n.input]
        if cand:
            names = [t.name for t in g.initializer] + [i.name for i in g.input]
            n = rng.choice(cand)
            if names:
                n.input[rng.randrange(len(n.input))] = rng.choice(names + ["", "nope"])
    return m.SerializeToString()


class OnnxTarget(Target):
    name = "onnx"

    def __init__(self) -> None:
        self._seeds: list[bytes] | None = None

    def seeds(self) -> list[bytes]:
        if self._seeds is None:
            from sdk.cli.demo_cmd import build_demo_cnn

            self._seeds = [(ROOT / "tests" / "fixtures" / "torch" / "encoder.onnx").read_bytes(),
                           build_demo_cnn().SerializeToString()]
        return self._seeds

    def mutate(self, rng: random.Random, data: bytes) -> bytes:
        if rng.random() < 0.35:
            return rng.choice(BYTE_MUTATIONS)(rng, data)
        return onnx_structured_mutation(rng, data)

    def run(self, path: Path) -> None:
        import sdk

        graph = sdk.load_onnx(path)
        calib = _onnx_calib()
        feeds = {k: v for k, v in calib.items() if k in graph.inputs}
        sdk.compile_model(path, feeds)


@functools.cache
def _onnx_calib() -> dict[str, np.ndarray]:
    from sdk.cli.demo_cmd import synthetic_images

    with np.load(ROOT / "tests" / "fixtures" / "torch" / "encoder_calib.npz") as z:
        calib = {k: z[k][:4] for k in z.files}
    calib["x"] = synthetic_images(4, seed=1)
    return calib


class TfliteTarget(Target):
    name = "tflite"

    def seeds(self) -> list[bytes]:
        import sdk
        from sdk.backends.sample_graphs import cnn_graph, fc_graph

        return [bytes(sdk.write_tflite(cnn_graph(hw=8, width=4)).data),
                bytes(sdk.write_tflite(fc_graph(batch=1, k=8, n=4)).data)]

    def mutate(self, rng: random.Random, data: bytes) -> bytes:
        if rng.random() < 0.4 and len(data) >= 8:  # a 4-byte aligned word (offset, length, ...)
            b = bytearray(data)
            i = rng.randrange(len(b) // 4) * 4
            b[i:i + 4] = _word(rng, b, i, len(data))
            return bytes(b)
        return rng.choice(BYTE_MUTATIONS)(rng, data)

    def run(self, path: Path) -> None:
        import sdk

        sdk.read_tflite(path)


# -- the board agent's HTTP API ---------------------------------------------------------------
class AgentServerError(Exception):
    """The agent answered 5xx (an exception it did not turn into a refusal), died, or its
    active model is no longer the one committed at the start."""


TOKEN_MARK = "@@EDGE-AGENT-TOKEN@@"   # saved cases hold this; the running agent's token is put in


class AgentTarget(Target):
    """Raw HTTP requests, mutated, sent over TCP to a real ``edge agent`` process on 127.0.0.1
    (started once per run, trusting one key, 1 MiB upload limit, model ``m1`` committed).

    A case passes when the agent answers with a status below 500 (a 4xx is a refusal: the
    SDK-error count) or closes a request it cannot parse, stays alive, and still serves the
    model committed at the start, whole (checked every 100 cases and at the end). Seeds are
    real requests: health, status, logs, run with an .npz, rollback, and a signed deploy of
    the same model (so a mutation that still deploys cannot change what is served)."""

    name = "agent"

    def __init__(self) -> None:
        self.proc = None
        self.dir: tempfile.TemporaryDirectory | None = None
        self.port = 0
        self.token = ""
        self.cases = 0
        self._seeds: list[bytes] | None = None

    # the agent ---------------------------------------------------------------------------
    def _start(self) -> None:
        import os
        import subprocess

        import sdk
        from sdk.agent.client import DeviceClient, prepare_deploy
        from sdk.agent.signing import generate_key
        from sdk.backends.sample_graphs import cnn_graph

        self.dir = tempfile.TemporaryDirectory(prefix="edge-fuzz-agent-")
        d = Path(self.dir.name)
        key = generate_key(d / "k.key")[0]
        b = sdk.Bundle.from_graph(cnn_graph(seed=11, hw=16, width=8))
        b.manifest["model_name"] = "fuzzed"
        self.model = b.save(d / "m1.edge")
        x = np.random.default_rng(7).uniform(-1, 1, (1, 3, 16, 16)).astype(np.float32)
        buf = io.BytesIO()
        np.savez(buf, x=x)
        self.npz = buf.getvalue()
        env = dict(os.environ, PYTHONPATH=str(ROOT), NUMBA_NUM_THREADS="1")
        env.pop("EDGE_DEVICE_TOKEN", None)
        self.log = open(d / "agent.out", "wb")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sdk.cli.main", "agent", "--root", str(d / "root"),
             "--host", "127.0.0.1", "--port", "0", "--trust", str(key) + ".pub",
             "--max-upload-mb", "1"], stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT,
            env=env)
        url_file = d / "root" / "agent.url"
        deadline = time.monotonic() + 120
        while not url_file.exists() or not url_file.read_text().strip().startswith("http"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the agent did not start: "
                                   + (d / "agent.out").read_text(errors="replace")[-500:])
            time.sleep(0.05)
        url = url_file.read_text().strip()
        self.port = int(url.rsplit(":", 1)[1].split("/")[0])
        self.token = (d / "root" / "token").read_text().strip()
        data, st, sig, _ = prepare_deploy(self.model, key)
        self.client = DeviceClient(url, token=self.token)
        self.client.deploy(data, st, sig)
        self.expected = self._serving()
        self.deploy_parts = (data, st, sig)

    def _serving(self) -> tuple:
        """(state, model name, bundle SHA-256, committed, self-test passed) of the active slot,
        after checking that the model it serves still answers."""
        status = self.client.status()
        model = status.get("model") or {}
        out, _ = self.client.run_npz(self.npz)
        digest = hashlib.sha256(b"".join(out[k].tobytes() for k in sorted(out))).hexdigest()
        return (status.get("state"), model.get("model_name"), model.get("bundle_sha256"),
                model.get("committed"), (model.get("self_test") or {}).get("passed"), digest)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except Exception:  # noqa: BLE001
                self.proc.kill()
        if self.dir is not None:
            self.log.close()
            self.dir.cleanup()
        self.proc = None

    def _request(self, method: str, path: str, body: bytes = b"", ctype: str | None = None,
                 auth: bool = True) -> bytes:
        head = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{self.port}",
                "Connection: close"]
        if auth:
            head.append(f"Authorization: Bearer {TOKEN_MARK}")
        if ctype:
            head.append(f"Content-Type: {ctype}")
        if body or method == "POST":
            head.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(head) + "\r\n\r\n").encode() + body

    def seeds(self) -> list[bytes]:
        if self._seeds is None:
            from sdk.agent.client import multipart

            self._start()
            data, st, sig = self.deploy_parts
            body, ctype = multipart([("bundle", "model.edge", data),
                                     ("selftest", "selftest.npz", st),
                                     ("signature", "signature.json", sig)])
            self._seeds = [
                self._request("GET", "/healthz", auth=False),
                self._request("GET", "/v1/status"),
                self._request("GET", "/v1/logs?lines=20"),
                self._request("POST", "/v1/run?integer=0", self.npz, "application/octet-stream"),
                self._request("POST", "/v1/rollback"),
                self._request("POST", "/v1/profile?runs=2", self.npz, "application/octet-stream"),
                self._request("POST", "/v1/deploy", body, ctype),
            ]
        return self._seeds

    def mutate(self, rng: random.Random, data: bytes) -> bytes:
        head, sep, body = data.partition(b"\r\n\r\n")
        r = rng.random()
        if r < 0.35:  # one header line: a value swapped, removed, or a new odd header
            lines = head.split(b"\r\n")
            i = rng.randrange(len(lines))
            odd = [b"Content-Length: -1", b"Content-Length: 99999999999999999999",
                   b"Content-Length: 0", b"Transfer-Encoding: chunked",
                   b"Authorization: Bearer " + TOKEN_MARK.encode()[:-1] + b"x",
                   b"Authorization: Basic Zm9vOmJhcg==", b"Authorization: Bearer ",
                   b"Content-Type: multipart/form-data; boundary=",
                   b"Content-Type: multipart/form-data", b"Content-Type: application/json",
                   b"Expect: 100-continue", b"X-" + b"a" * 9000 + b": 1"]
            if i == 0:  # the request line
                lines[0] = rng.choice([
                    b"GET /v1/deploy HTTP/1.1", b"POST /v1/status HTTP/1.1",
                    b"PUT /v1/run HTTP/1.1", b"POST /v1/run?integer=yes HTTP/1.1",
                    b"POST /v1/profile?runs=-5 HTTP/1.1", b"POST /v1/profile?runs=1e9 HTTP/1.1",
                    b"GET /v1/logs?lines=-1 HTTP/1.1", b"GET /v1/logs?lines=999999999 HTTP/1.1",
                    b"GET /../../etc/passwd HTTP/1.1", b"GET /v1/%00 HTTP/1.1",
                    b"POST /v1/deploy?x=" + b"%" * 50 + b" HTTP/1.1", b"GET / HTTP/9.9",
                    lines[0] + b"x"])
            elif rng.random() < 0.5:
                lines[i] = rng.choice(odd)
            else:
                lines.insert(rng.randrange(1, len(lines) + 1), rng.choice(odd))
            return b"\r\n".join(lines) + sep + body
        if r < 0.75 and body:  # the body: byte mutations (keep Content-Length honest or not)
            new = rng.choice(BYTE_MUTATIONS)(rng, body)
            if rng.random() < 0.7:
                head = re_length(head, len(new))
            return head + sep + new
        return rng.choice(BYTE_MUTATIONS)(rng, data)

    def run(self, path: Path) -> None:
        import socket

        if self.proc is None:
            self.seeds()
        data = path.read_bytes().replace(TOKEN_MARK.encode(), self.token.encode())
        framed = _well_framed(data)
        chunks: list[bytes] = []
        # a complete request must be answered; one whose body is shorter than its
        # Content-Length leaves the server waiting for the rest, which is its right
        with socket.create_connection(("127.0.0.1", self.port),
                                      timeout=HANG_S - 2 if framed else 0.3) as sock:
            try:
                sock.sendall(data)
                while not _complete_reply(b"".join(chunks)):
                    c = sock.recv(65536)
                    if not c:
                        break
                    chunks.append(c)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the agent stopped reading (an oversize or malformed request): fine
            except TimeoutError:
                if framed and not chunks:
                    raise AgentServerError("no answer to a complete request in "
                                           f"{HANG_S - 2:g} s") from None
        reply = b"".join(chunks)
        self.cases += 1
        if self.proc.poll() is not None:
            raise AgentServerError(f"the agent died (exit {self.proc.returncode})")
        if self.cases % 100 == 0:
            self.check_serving()
        if not reply:
            return  # closed without an answer: a request it could not parse
        status_line = reply.split(b"\r\n", 1)[0].split()
        code = int(status_line[1]) if len(status_line) > 1 and status_line[1].isdigit() else 0
        if code >= 500 or code == 0:
            body = reply.partition(b"\r\n\r\n")[2][:200].decode("latin-1")
            raise AgentServerError(f"HTTP {code or '?'}: {body}")
        if code >= 400:
            raise EdgeError(f"refused: HTTP {code}")

    def check_serving(self) -> None:
        now = self._serving()
        if now != self.expected:
            raise AgentServerError(f"the agent serves {now}, not the committed {self.expected}")


def _complete_reply(reply: bytes) -> bool:
    """A whole HTTP response has arrived (the agent may keep the connection open when a
    mutation dropped ``Connection: close``)."""
    head, sep, body = reply.partition(b"\r\n\r\n")
    if not sep:
        return False
    for ln in head.split(b"\r\n")[1:]:
        if ln.lower().startswith(b"content-length:"):
            v = ln.split(b":", 1)[1].strip()
            return v.isdigit() and len(body) >= int(v)
        if ln.lower().startswith(b"transfer-encoding:") and b"chunked" in ln.lower():
            return body.endswith(b"0\r\n\r\n")
    return False


def _well_framed(data: bytes) -> bool:
    """A request whose head parses and whose body is exactly its Content-Length."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep or not head.split(b"\r\n", 1)[0].endswith(b"HTTP/1.1"):
        return False
    lengths = [ln.split(b":", 1)[1].strip() for ln in head.split(b"\r\n")[1:]
               if ln.lower().startswith(b"content-length:")]
    if any(ln.lower().startswith(b"transfer-encoding:") for ln in head.split(b"\r\n")):
        return False
    if not lengths:
        return not body
    return len(lengths) == 1 and lengths[0].isdigit() and int(lengths[0]) == len(body)


def re_length(head: bytes, n: int) -> bytes:
    lines = [ln if not ln.lower().startswith(b"content-length:") else
             b"Content-Length: " + str(n).encode() for ln in head.split(b"\r\n")]
    return b"\r\n".join(lines)


def _word(rng: random.Random, b: bytearray, i: int, n: int) -> bytes:
    cur = int.from_bytes(b[i:i + 4], "little", signed=True)
    v = rng.choice([0, 1, -1, 2**31 - 1, -(2**31), n, n - 4, 2**24, rng.randrange(2**32) - 2**31,
                    cur + rng.choice((-8, -4, -1, 1, 4, 8))])
    v = (v + 2**31) % 2**32 - 2**31
    return v.to_bytes(4, "little", signed=True)


MAKERS: dict[str, Callable[[], Target]] = {
    "bundle": BundleTarget, "npz": NpzTarget, "frame": FrameTarget, "toml": TomlTarget,
    "onnx": OnnxTarget, "tflite": TfliteTarget, "agent": AgentTarget}


# -- driver ---------------------------------------------------------------------------------
def _where(exc: BaseException) -> str:
    tb = traceback.extract_tb(exc.__traceback__)
    if not tb:
        return "?"
    fr = tb[-1]
    try:
        rel = Path(fr.filename).resolve().relative_to(ROOT)
    except ValueError:
        rel = Path(fr.filename).name
    return f"{rel}:{fr.lineno} in {fr.name}"


def fuzz_target(name: str, cases: int, seed: int, save: bool = True,
                log: Callable[[str], None] = print) -> dict:
    """Run ``cases`` mutated inputs through one target; the report as a dict."""
    target = MAKERS[name]()
    rng = random.Random(f"{seed}:{name}")
    seeds = target.seeds()
    findings: dict[tuple[str, str], dict] = {}
    hangs, edge_errors, ok = [], 0, 0
    slowest = 0.0
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    old = signal.signal(signal.SIGALRM, _alarm)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"case{EXT[name]}"
        for k in range(cases):
            data = rng.choice(seeds)
            for _ in range(rng.choice((1, 1, 1, 2))):
                try:
                    data = target.mutate(rng, data)
                except Exception:  # noqa: BLE001 - the mutator could not parse its input
                    data = bit_flip(rng, data)  # the mutator could not parse it: flip bits
            path.write_bytes(data)
            t0 = time.perf_counter()
            signal.setitimer(signal.ITIMER_REAL, HANG_S)
            try:
                target.run(path)
                ok += 1
            except EdgeError:
                edge_errors += 1
            except Hang:
                hangs.append(k)
                _save(name, target, data, "hang", save)
            except BaseException as exc:
                if isinstance(exc, KeyboardInterrupt):
                    raise
                key = (type(exc).__name__, _where(exc))
                if key not in findings:
                    msg = str(exc).splitlines()[0][:200] if str(exc) else ""
                    saved = _save(name, target, data, key[0], save)
                    findings[key] = {"type": key[0], "where": key[1], "message": msg,
                                     "count": 0, "input": saved}
                    log(f"  [{name}] case {k}: {key[0]} at {key[1]}: {msg}")
                findings[key]["count"] += 1
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            slowest = max(slowest, time.perf_counter() - t0)
    signal.signal(signal.SIGALRM, old)
    if hasattr(target, "check_serving"):   # the agent: still serving what it committed?
        try:
            target.check_serving()
        except Exception as exc:  # noqa: BLE001
            key = (type(exc).__name__, "end of run")
            findings[key] = {"type": key[0], "where": key[1], "message": str(exc)[:200],
                             "count": 1, "input": None}
            log(f"  [{name}] {key[0]}: {exc}")
    if hasattr(target, "close"):
        target.close()
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"target": name, "cases": cases, "seed": seed, "accepted": ok,
            "sdk_errors": edge_errors, "non_sdk_exceptions": sum(f["count"] for f in
                                                                 findings.values()),
            "distinct_findings": list(findings.values()), "hangs": len(hangs),
            "slowest_case_s": round(slowest, 3), "seconds": round(time.perf_counter() - start, 1),
            "peak_rss_mib": round(rss1 / 1024, 1),
            "peak_rss_growth_mib": round((rss1 - rss0) / 1024, 1)}


def _save(name: str, target: Target, data: bytes, kind: str, save: bool) -> str | None:
    if not save:
        return None
    d = REGRESSIONS / name
    d.mkdir(parents=True, exist_ok=True)
    # npz cases keep their one-byte tag (Z = .npz, Y = .npy) that the target reads
    p = d / f"{kind}_{hashlib.sha256(data).hexdigest()[:12]}{EXT[name]}"
    p.write_bytes(data)
    return str(p.relative_to(ROOT))


def replay(name: str, path: Path) -> None:
    """Run one saved input through its target (raises what the target raises)."""
    target = MAKERS[name]()
    with tempfile.TemporaryDirectory() as tmp:
        case = Path(tmp) / f"case{EXT[name]}"
        case.write_bytes(path.read_bytes())
        try:
            target.run(case)
        finally:
            if hasattr(target, "close"):
                target.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", action="append", choices=TARGETS,
                    help="a target to fuzz (repeatable; default: all)")
    ap.add_argument("--cases", type=int, default=None, help="cases per target (default 2000)")
    ap.add_argument("--quick", action="store_true", help="a short run: 150 cases per target")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", dest="json_out", default=None, help="write the report here")
    ap.add_argument("--no-save", action="store_true",
                    help="do not save findings under tests/fuzz_regressions/")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    cases = args.cases or (150 if args.quick else 2000)
    reports = []
    for name in args.target or TARGETS:
        r = fuzz_target(name, cases, args.seed, save=not args.no_save)
        reports.append(r)
        print(f"{name}: {r['cases']} cases in {r['seconds']} s: {r['accepted']} accepted, "
              f"{r['sdk_errors']} SDK errors, {r['non_sdk_exceptions']} non-SDK exceptions "
              f"({len(r['distinct_findings'])} distinct), {r['hangs']} hangs over {HANG_S:g} s "
              f"(slowest {r['slowest_case_s']} s), peak RSS {r['peak_rss_mib']} MiB "
              f"(+{r['peak_rss_growth_mib']} MiB)")
        for f in r["distinct_findings"]:
            print(f"    {f['count']}x {f['type']} at {f['where']}: {f['message']}"
                  + (f" -> {f['input']}" if f["input"] else ""))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(reports, indent=1))
    return 1 if any(r["non_sdk_exceptions"] or r["hangs"] for r in reports) else 0


if __name__ == "__main__":
    sys.exit(main())
