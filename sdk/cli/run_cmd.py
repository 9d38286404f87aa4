"""`edge run MODEL.edge|MODEL.tflite|MODEL.onnx --input IN.npz|IN.npy --output OUT.npz`."""

from __future__ import annotations

import warnings
from pathlib import Path

import click
import numpy as np

from sdk.cli.arrays import load_arrays
from sdk.errors import EdgeWarning, ModelFormatError


@click.command("run")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("-i", "--input", "input_path", required=True, type=click.Path(dir_okay=False),
              help=".npz keyed by input name, or .npy for a single-input model")
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help=".npz to write, keyed by output name")
@click.option("--backend", help="run on this backend (reference, reference-numpy, onnxruntime, "
                                "litert, litert-ref, npu ...); unsupported nodes fall back to "
                                "reference")
@click.option("--target", help="board profile whose delegates / providers the backend uses")
@click.option("--port", help="serial URL of the device for --backend mcu (see `edge emulate`)")
@click.option("--allow-nonfinite", is_flag=True,
              help="run even when a float input holds NaN/Inf (reported as a warning); by "
                   "default that is an error")
@click.option("--no-aot", is_flag=True,
              help="ignore an ahead-of-time module (`edge aot`) of the bundle")
def command(model: str, input_path: str, output: str | None, backend: str | None = None,
            target: str | None = None, port: str | None = None,
            allow_nonfinite: bool = False, no_aot: bool = False) -> None:
    """Run a bundle or an int8 .tflite model (integer kernels) or an ONNX model (float
    reference), on the reference kernels or, with --backend/--target, on another backend
    (see sdk.Session). A bundle with a valid ahead-of-time module (`edge aot`) runs on it,
    without loading Numba."""
    suffix = Path(model).suffix.lower()
    if suffix not in (".edge", ".onnx", ".tflite"):
        raise ModelFormatError(f"{model}: expected a .edge bundle or an .onnx model (or an "
                               "int8 .tflite model)")
    if not Path(model).is_file():
        raise ModelFormatError(f"{model}: no such model file; check the path")
    if suffix == ".edge" and not (no_aot or backend or target or port) and \
            _run_aot(model, input_path, output):
        return
    from sdk import Session

    if backend == "mcu" and not port:
        from sdk.backends.mcu import require_port
        require_port(port)              # one-line error: pass --port (see `edge emulate`)
    if port and backend in (None, "mcu"):
        from sdk.backends.base import get_backend

        backend = get_backend("mcu", port=port)
    source = model
    if suffix == ".tflite":  # already integer: bundled as is, run as a bundle
        from sdk.cli.inspect_cmd import open_bundle

        source, suffix = open_bundle(model), ".edge"
    session = Session(source, backend=backend, target=target)
    feeds = load_arrays(input_path, session.input_names)
    for info in session.inputs:  # numpy saves float64 by default: narrow floats to the model's
        a = feeds.get(info.name)
        if a is not None and a.dtype.kind == "f" and info.dtype == "float32":
            feeds[info.name] = a.astype(np.float32)
    if session.plan is not None:
        click.echo(str(session.plan).splitlines()[0])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", EdgeWarning)
        outputs = session.run(feeds, allow_nonfinite=allow_nonfinite)
    for w in caught:
        if issubclass(w.category, EdgeWarning):
            click.echo(f"warning: {w.message}", err=True)
    kind = "integer kernels" if suffix == ".edge" else "float reference"
    if session.plan is not None:
        kind = f"{'integer' if suffix == '.edge' else 'float'} graph on {session.backend}"
    for name, value in outputs.items():
        v = np.asarray(value)
        click.echo(f"{name}: shape {list(v.shape)} {v.dtype} ({kind})")
    if output:
        np.savez(output, **outputs)
        click.echo(f"wrote {output}")


def _run_aot(model: str, input_path: str, output: str | None) -> bool:
    """Run ``model`` on its ahead-of-time module (sdk.aot) when one is valid and takes these
    inputs as given; False (nothing printed but a refusal's one-line note) when the usual
    path must run: it gives the same bits, or the Session's error or warning."""
    from sdk.aot import find

    prog, why = find(model)
    if why is not None:
        click.echo(f"note: ahead-of-time module not used: {why}", err=True)
    if prog is None:
        return False
    feeds = load_arrays(input_path, prog.input_names)
    for info in prog.manifest["inputs"]:  # as below: float64 .npy files narrowed to float32
        a = feeds.get(info["name"])
        if a is not None and a.dtype.kind == "f" and info["dtype"] == "float32":
            feeds[info["name"]] = a.astype(np.float32)
    outputs = prog.run(feeds)
    if outputs is None:
        return False
    for name, value in outputs.items():
        click.echo(f"{name}: shape {list(value.shape)} {value.dtype} (integer kernels, "
                   "ahead-of-time module)")
    if output:
        np.savez(output, **outputs)
        click.echo(f"wrote {output}")
    return True
