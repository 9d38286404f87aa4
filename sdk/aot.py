"""Ahead-of-time programs: a bundle's compiled program as a native module that runs without Numba.

A warm program cache (:mod:`sdk.ops.codegen`) still imports Numba and LLVM in every new
process (~0.3-0.4 s of CPU and ~125 MiB of memory) only to load machine code. An
ahead-of-time (AOT) build compiles the same generated program once with ``numba.pycc`` into a
CPython extension module that needs only NumPy to load and run; ``edge run`` uses it when it
is present and valid, so a whole ``edge run`` process imports neither Numba nor LLVM.

Build (``edge aot MODEL.edge``, or :func:`build`): the bundle's main entry, from its inputs to
its outputs, must compile (every node has a compiled form, the float boundary inside the
graph, no declared state). The build writes one directory holding

* ``manifest.json``: the bundle's SHA-256, this CPU (identity read from ``/proc/cpuinfo``, not
  from LLVM, so checking it needs no Numba), the Python extension suffix and the NumPy
  version, the inputs/outputs (names, dtypes, shapes) and the arena size;
* the extension module (``edge_aot_<key>`` + the platform's extension suffix), compiled for
  this CPU (``target_cpu`` = LLVM's host CPU name: the VNNI/int16 GEMM paths picked at
  generation time are in it);
* ``weights.npy``: the program's weight buffer.

By default the directory is ``$EDGE_CACHE_DIR/aot/<bundle sha>-<host key>`` (beside the
program cache, keyed by bundle hash, CPU, Python and NumPy); ``--beside`` writes
``MODEL.edge.aot/`` next to the bundle, for shipping with it to a board. A module is built
on the machine it runs on (or one with the same CPU, Python and NumPy): it is native code.

Load (:func:`find`): a module whose manifest names another bundle hash, CPU, Python or NumPy
is refused with a one-line reason, and the caller runs the usual path. This module imports
only the standard library and NumPy at load time.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from sdk.errors import EdgeError

FORMAT = 1
_CPU_KEYS = ("vendor_id", "cpu family", "model", "stepping", "flags", "CPU implementer",
             "CPU architecture", "CPU variant", "CPU part", "Features", "isa", "uarch")


class AotError(EdgeError):
    """An ahead-of-time module cannot be built or used; ``str(exc)`` is one line."""


def _ext_suffix() -> str:
    return importlib.machinery.EXTENSION_SUFFIXES[0]


def cpu_identity() -> dict[str, str]:
    """This CPU as the kernel reports it: ``id`` (a hash of the first processor's
    identifying fields and feature flags) and ``name`` (its model name)."""
    fields: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break  # the first processor block describes them all
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    ident = [platform.machine()] + [f"{k}={fields.get(k, '')}" for k in _CPU_KEYS]
    if not text:
        ident.append(platform.processor())
    name = fields.get("model name") or fields.get("Model") or platform.processor() or \
        platform.machine()
    return {"id": hashlib.sha256("\n".join(ident).encode()).hexdigest()[:16], "name": name}


def host_key() -> str:
    """CPU, Python extension ABI and NumPy version, hashed: what a module is built for."""
    text = f"{cpu_identity()['id']}\0{_ext_suffix()}\0{np.__version__}\0{FORMAT}"
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def bundle_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def aot_root() -> Path:
    """Where ``edge aot`` puts modules by default: ``aot/`` beside the program cache."""
    env = os.environ.get("EDGE_CACHE_DIR")
    base = Path(env) if env else Path.home() / ".cache" / "edge"
    return base / "aot"


def beside(bundle: str | os.PathLike) -> Path:
    """The shipping directory of a bundle's module: ``MODEL.edge.aot`` next to it."""
    p = Path(bundle)
    return p.with_name(p.name + ".aot")


def cache_path(sha: str) -> Path:
    return aot_root() / f"{sha[:16]}-{host_key()}"


# -- loading (standard library + NumPy only) --------------------------------------------------
class AotProgram:
    """A loaded module: ``run(feeds)`` -> {output name: array}; ``None`` from :meth:`run`
    means "not for these feeds" (another dtype/shape, a non-finite float, a name missing or
    extra, a kernel's refusal): the caller runs the usual path, which returns the same bits
    or the specification's error."""

    def __init__(self, directory: Path, manifest: dict[str, Any]) -> None:
        self.directory = directory
        self.manifest = manifest
        mod_name = manifest["module"]
        path = directory / (mod_name + manifest["ext_suffix"])
        spec = importlib.util.spec_from_file_location(mod_name, path)
        if spec is None or spec.loader is None:
            raise AotError(f"{path}: not a loadable extension module")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        self._fn = module.program
        self.weights = np.load(directory / "weights.npy")
        self._arena = np.zeros(max(int(manifest["arena_bytes"]), 1), np.uint8)
        self.input_names = [i["name"] for i in manifest["inputs"]]
        self.params = [(p["name"], np.dtype(p["dtype"]), tuple(p["shape"]))
                       for p in manifest["params"]]
        self.outputs = [(o["name"], int(o["index"])) for o in manifest["outputs"]]

    def run(self, feeds: Mapping[str, Any]) -> dict[str, np.ndarray] | None:
        if set(feeds) != {n for n, _, _ in self.params}:
            return None
        args = []
        for name, dt, shape in self.params:
            v = feeds[name]
            if not isinstance(v, np.ndarray) or v.dtype != dt or v.shape != shape:
                return None
            if dt.kind == "f" and not np.isfinite(v).all():
                return None  # refused or warned about by the Session: its path says which
            args.append(np.ascontiguousarray(v))
        try:
            res = self._fn(*args, self.weights, self._arena)
        except Exception:  # noqa: BLE001 - a kernel's refusal: the usual path reports it
            return None
        return {name: res[k] for name, k in self.outputs}


def check(directory: Path, sha: str | None) -> tuple[dict[str, Any] | None, str | None]:
    """(manifest, None) when the module in ``directory`` is built for this bundle (``sha``;
    None skips that check), CPU, Python and NumPy; else (None, one-line reason)."""
    try:
        manifest = json.loads((directory / "manifest.json").read_text())
    except (OSError, ValueError) as exc:
        return None, f"{directory}: no readable manifest.json ({exc.__class__.__name__})"
    if manifest.get("format") != FORMAT:
        return None, (f"{directory}: format {manifest.get('format')}, this SDK reads "
                      f"{FORMAT}; rebuild it with `edge aot`")
    if sha is not None and manifest.get("bundle_sha256") != sha:
        return None, (f"{directory}: built for another bundle (sha256 "
                      f"{str(manifest.get('bundle_sha256'))[:12]}…, this one {sha[:12]}…); "
                      "rebuild it with `edge aot`")
    cpu = cpu_identity()
    if manifest.get("cpu_id") != cpu["id"]:
        return None, (f"{directory}: built for another CPU ({manifest.get('cpu_name')!r}, "
                      f"this is {cpu['name']!r}); rebuild it here with `edge aot`")
    if manifest.get("ext_suffix") != _ext_suffix():
        return None, (f"{directory}: built for Python {manifest.get('ext_suffix')!r}, this is "
                      f"{_ext_suffix()!r}; rebuild it with `edge aot`")
    if manifest.get("numpy") != np.__version__:
        return None, (f"{directory}: built against NumPy {manifest.get('numpy')}, this is "
                      f"{np.__version__}; rebuild it with `edge aot`")
    if not (directory / (manifest["module"] + manifest["ext_suffix"])).is_file() or \
            not (directory / "weights.npy").is_file():
        return None, f"{directory}: the module or weights.npy is missing; rebuild it"
    return manifest, None


def find(bundle: str | os.PathLike) -> tuple[AotProgram | None, str | None]:
    """The valid AOT module of ``bundle`` (beside it, else in the cache), loaded, or None;
    and the one-line reason a module that was found is refused (None if none was)."""
    candidates = [beside(bundle)]
    reasons = []
    sha = None
    for d in candidates:
        if not d.is_dir():
            continue
        sha = sha or bundle_sha256(bundle)
        manifest, why = check(d, sha)
        if manifest is not None:
            return _load(d, manifest)
        reasons.append(why)
    if aot_root().is_dir():
        sha = sha or bundle_sha256(bundle)
        d = cache_path(sha)
        if d.is_dir():
            manifest, why = check(d, sha)
            if manifest is not None:
                return _load(d, manifest)
            reasons.append(why)
    return None, (reasons[0] if reasons else None)


def _load(directory: Path, manifest: dict[str, Any]) -> tuple[AotProgram | None, str | None]:
    try:
        return AotProgram(directory, manifest), None
    except (OSError, ImportError, KeyError, ValueError, AotError) as exc:
        first = str(exc).splitlines()[0][:160] if str(exc) else ""
        return None, f"{directory}: cannot load ({exc.__class__.__name__}: {first})"


# -- building (imports the SDK, Numba and a C compiler) ---------------------------------------
def _numba_type(dtype: np.dtype, ndim: int) -> Any:
    from numba import types
    from numba.np.numpy_support import from_dtype

    return types.Array(from_dtype(np.dtype(dtype)), ndim, "C")


def build(bundle: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Compile ``bundle``'s main entry ahead of time into ``out`` (default: the cache
    directory for this bundle and host, :func:`cache_path`); returns the directory.
    Raises :class:`AotError` (one line) when the program does not compile."""
    from sdk.compile.bundle import load_bundle
    from sdk.ops.codegen import CompiledProgram, Unsupported

    bundle = Path(bundle)
    sha = bundle_sha256(bundle)
    b = load_bundle(bundle)
    g = b.graph
    if g.state:
        raise AotError(f"{bundle}: the graph declares state; ahead-of-time builds take "
                       "stateless graphs (run it with a Session)")
    for kind, names in (("input", g.inputs), ("output", g.outputs)):
        for name in names:  # Session converts these outside the graph: not compiled here
            t = g.tensor(name)
            if t.dtype != "float32" and t.quant is not None:
                raise AotError(f"{bundle}: {kind} {name!r} is quantized outside the graph; "
                               "ahead-of-time builds take graphs with the float boundary "
                               "inside")
    try:
        prog = CompiledProgram(g, sorted(g.inputs), list(g.outputs), load=False)
        if "_parallel(" in prog.source:  # GEMMs on Numba's thread pool: not for pycc; the
            from sdk.kernels.fast import gemm  # one-thread kernels give the same bits
            env = getattr(gemm, "THREAD_ENV", None)
            if env:
                old = os.environ.get(env)
                os.environ[env] = str(2**62)
                try:
                    prog = CompiledProgram(g, sorted(g.inputs), list(g.outputs), load=False)
                finally:
                    if old is None:
                        os.environ.pop(env, None)
                    else:
                        os.environ[env] = old
    except Unsupported as exc:
        raise AotError(f"{bundle}: the program does not compile ({exc})") from None
    # the program's interface, as CompiledProgram calls it: the fed arrays in sorted name
    # order, then W and A; it returns the produced outputs once each, in output order
    params = []
    for name in sorted(g.inputs):
        t = g.tensor(name)
        if not t.shape or any(int(d) <= 0 for d in t.shape):
            raise AotError(f"{bundle}: input {name!r} is not an array of static shape; "
                           "ahead-of-time builds take those only")
        params.append((name, np.dtype(t.dtype), tuple(int(d) for d in t.shape)))
    produced = list(dict.fromkeys(g.outputs))
    if any(o in g.inputs or g.tensor(o).data is not None for o in produced):
        raise AotError(f"{bundle}: an output is an input or a constant; nothing to compile")
    pick = [(produced.index(o), o) for o in g.outputs]
    head_args = ", ".join([f"in{i}" for i in range(len(params))] + ["W", "A"])
    if f"def program({head_args}):" not in prog.source or \
            prog.source.rstrip().rsplit("return (", 1)[-1].count(",") != len(produced):
        raise AotError("the generated program has an unexpected interface "
                       "(sdk.ops.codegen changed); rebuild with --no-aot or update sdk.aot")
    if "_parallel(" in prog.source:
        raise AotError(f"{bundle}: the program runs a GEMM on threads; parallel kernels "
                       "do not compile ahead of time")
    n_results = len(produced)
    result_types: list[Any] = [None] * n_results
    for k, name in pick:
        t = g.tensor(name)
        result_types[k] = _numba_type(np.dtype(t.dtype), len(t.shape))
    import warnings

    from numba import types
    from numba.core.errors import NumbaPendingDeprecationWarning

    with warnings.catch_warnings():  # pycc is "pending deprecation" since Numba 0.57; the
        warnings.simplefilter("ignore", NumbaPendingDeprecationWarning)  # pinned 0.68.1 has it
        from numba.pycc import CC

    sig = types.Tuple(result_types)(
        *[_numba_type(dt, len(shape)) for _, dt, shape in params],
        _numba_type(np.uint8, 1), _numba_type(np.uint8, 1))
    head = "@njit(cache=True)\ndef program("
    if prog.source.count(head) != 1:
        raise AotError("the generated program has an unexpected form (sdk.ops.codegen changed)")
    src = prog.source.replace(head, "@cc.export('program', SIG)\ndef program(")
    src = src.replace("@njit(cache=True)", "@njit")
    key = hashlib.sha256(f"{sha}\0{host_key()}\0{prog.key}".encode()).hexdigest()[:16]
    mod_name = f"edge_aot_{key}"
    target = Path(out) if out is not None else cache_path(sha)
    from llvmlite import binding

    work = Path(tempfile.mkdtemp(prefix="edge-aot-"))
    try:
        cc = CC(mod_name)
        cc.output_dir = str(work)
        cc.target_cpu = binding.get_host_cpu_name()
        cc.verbose = False
        namespace = {"cc": cc, "SIG": sig, "__name__": f"edge_aot_src_{key}"}
        exec(compile(src, f"<edge aot {key}>", "exec"), namespace)  # noqa: S102 - generated
        try:
            cc.compile()
        except Exception as exc:  # noqa: BLE001 - Numba / the C compiler: one line
            raise AotError(f"{bundle}: the ahead-of-time compile failed "
                           f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
        built = [p for p in work.iterdir() if p.name.startswith(mod_name)
                 and p.name.endswith(_ext_suffix())]
        if len(built) != 1:
            raise AotError(f"{bundle}: the compiler wrote no {mod_name}{_ext_suffix()}")
        np.save(work / "weights.npy", prog.weights)
        cpu = cpu_identity()
        manifest = {
            "format": FORMAT, "bundle": bundle.name, "bundle_sha256": sha,
            "cpu_id": cpu["id"], "cpu_name": cpu["name"], "llvm_cpu": cc.target_cpu,
            "machine": platform.machine(), "ext_suffix": _ext_suffix(),
            "python": sys.version.split()[0], "numpy": np.__version__,
            "module": mod_name, "program_key": prog.key, "arena_bytes": prog.arena_bytes,
            "inputs": [{"name": n, "dtype": g.tensor(n).dtype,
                        "shape": [int(d) for d in g.tensor(n).shape]} for n in g.inputs],
            "params": [{"name": n, "dtype": dt.name, "shape": list(shape)}
                       for n, dt, shape in params],
            "outputs": [{"name": name, "index": k, "dtype": g.tensor(name).dtype,
                         "shape": [int(d) for d in g.tensor(name).shape]}
                        for k, name in pick],
        }
        (work / "manifest.json").write_text(json.dumps(manifest, indent=1))
        # replace the target directory whole: never a half-written module beside a manifest
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = target.with_name(target.name + f".{os.getpid()}.tmp")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        for name in (built[0].name, "weights.npy", "manifest.json"):
            shutil.copy2(work / name, staging / name)
        old = target.with_name(target.name + f".{os.getpid()}.old")
        if target.exists():
            os.replace(target, old)
        os.replace(staging, target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target
