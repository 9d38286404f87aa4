"""`edge demo`: build a small CNN, calibrate, compile, run in integers, compare with float.

Until the keyword-spotting demo exists this is what ``make demo`` runs. Everything is
generated (fixed-seed random weights, synthetic images), nothing is downloaded.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import click
import numpy as np

INPUT_SHAPE = (1, 3, 32, 32)
CLASSES = 10


def build_demo_cnn(seed: int = 0):
    """Conv-BN-ReLU → MaxPool → depthwise-separable block with residual → GAP → Gemm."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    inits, nodes = [], []

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
        return name

    def he(shape: tuple[int, ...]) -> np.ndarray:
        return rng.standard_normal(shape) * np.sqrt(2.0 / np.prod(shape[1:]))

    nodes.append(helper.make_node("Conv", ["x", const("w1", he((16, 3, 3, 3))),
                                           const("b1", rng.normal(0, 0.05, 16))], ["c1"],
                                  pads=[1, 1, 1, 1], strides=[2, 2]))
    nodes.append(helper.make_node("BatchNormalization", [
        "c1", const("g1", rng.uniform(0.8, 1.2, 16)), const("be1", rng.normal(0, 0.1, 16)),
        const("m1", rng.normal(0, 0.1, 16)), const("v1", rng.uniform(0.5, 1.5, 16))], ["n1"]))
    nodes.append(helper.make_node("Relu", ["n1"], ["r1"]))
    nodes.append(helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]))
    nodes.append(helper.make_node("Conv", ["p1", const("wd", he((16, 1, 3, 3))),
                                           const("bd", rng.normal(0, 0.05, 16))], ["d1"],
                                  pads=[1, 1, 1, 1], group=16))
    nodes.append(helper.make_node("Relu", ["d1"], ["rd"]))
    nodes.append(helper.make_node("Conv", ["rd", const("wp", he((16, 16, 1, 1))),
                                           const("bp", rng.normal(0, 0.05, 16))], ["pw"]))
    nodes.append(helper.make_node("Add", ["p1", "pw"], ["res"]))
    nodes.append(helper.make_node("Relu", ["res"], ["rr"]))
    nodes.append(helper.make_node("Conv", ["rr", const("w3", he((32, 16, 3, 3))),
                                           const("b3", rng.normal(0, 0.05, 32))], ["c3"],
                                  pads=[1, 1, 1, 1]))
    nodes.append(helper.make_node("Clip", ["c3", const("lo", 0.0), const("hi", 6.0)], ["r3"]))
    nodes.append(helper.make_node("GlobalAveragePool", ["r3"], ["gap"]))
    nodes.append(helper.make_node("Flatten", ["gap"], ["flat"]))
    nodes.append(helper.make_node("Gemm", ["flat", const("wf", he((CLASSES, 32))),
                                           const("bf", np.zeros(CLASSES))], ["logits"],
                                  transB=1))
    graph = helper.make_graph(
        nodes, "demo_cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(INPUT_SHAPE))],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, CLASSES])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def synthetic_images(n: int, seed: int) -> np.ndarray:
    """Smooth random images (low-frequency noise plus a colour offset), ``[n, 1, 3, 32, 32]``."""
    rng = np.random.default_rng(seed)
    coarse = rng.standard_normal((n, 1, 3, 8, 8))
    img = coarse.repeat(4, axis=3).repeat(4, axis=4) + 0.3 * rng.standard_normal((n, 1, 3, 32, 32))
    return (img + rng.normal(0, 0.5, (n, 1, 3, 1, 1))).astype(np.float32)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))


@click.group("demo", invoke_without_command=True)
@click.option("--runs", default=50, show_default=True, help="timed runs for the latency median")
@click.option("--out-dir", type=click.Path(file_okay=False),
              help="keep demo_cnn.onnx, calib.npz and demo_cnn.edge here")
@click.pass_context
def command(ctx: click.Context, runs: int, out_dir: str | None) -> None:
    """Compile a small generated CNN to integers and compare it with float.

    `edge demo kws` runs the streaming keyword-spotting demo instead."""
    if ctx.invoked_subcommand is not None:
        return
    import onnx

    from sdk.compile import compile_model, load_bundle
    from sdk.runtime.session import Session

    work = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="edge-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    onnx_path = work / "demo_cnn.onnx"
    onnx.save(build_demo_cnn(), onnx_path)
    calib = synthetic_images(64, seed=1)
    held_out = synthetic_images(32, seed=2)
    np.savez(work / "calib.npz", x=calib)
    click.echo(f"1. built {onnx_path.name}: float CNN, input {list(INPUT_SHAPE)}")
    t0 = time.perf_counter()
    bundle = compile_model(onnx_path, {"x": calib})
    bundle.save(work / "demo_cnn.edge")
    bundle = load_bundle(work / "demo_cnn.edge")
    click.echo(f"2. calibrated on {len(calib)} samples and compiled in "
               f"{time.perf_counter() - t0:.2f} s → demo_cnn.edge "
               f"({(work / 'demo_cnn.edge').stat().st_size} bytes), ops: "
               f"{', '.join(sorted(set(bundle.manifest['ops'])))}")
    float_sess = Session(onnx_path)
    int_sess = Session(work / "demo_cnn.edge")
    f_out = np.concatenate([float_sess.run({"x": x})["logits"] for x in held_out])
    q_out = np.concatenate([int_sess.run({"x": x})["logits"] for x in held_out])
    agree = float(np.mean(f_out.argmax(-1) == q_out.argmax(-1)))
    click.echo(f"3. integer vs float on {len(held_out)} held-out inputs: cosine "
               f"{_cosine(f_out, q_out):.4f}, max |diff| {np.abs(f_out - q_out).max():.4f}, "
               f"top-1 agreement {agree:.0%}")
    times = []
    for _ in range(max(1, runs)):
        t = time.perf_counter()
        int_sess.run({"x": held_out[0]})
        times.append(time.perf_counter() - t)
    m = bundle.manifest
    click.echo(f"4. profile (reference backend, this host): latency median "
               f"{statistics.median(times) * 1e3:.2f} ms over {len(times)} runs, "
               f"{m['macs']:,} MACs, {m['parameter_bytes']:,} parameter bytes")
    click.echo(f"files in {work}")


# `edge demo <name>`: one module per demo under sdk/cli/, each defining a click command named
# ``command``; a module not built yet is skipped.
DEMO_MODULES = ["kws_demo", "seg_demo", "slm_demo", "exit_demo"]


def _register_demos() -> None:
    import importlib

    for mod_name in DEMO_MODULES:
        try:
            mod = importlib.import_module(f"sdk.cli.{mod_name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"sdk.cli.{mod_name}":
                continue
            raise
        command.add_command(mod.command)


_register_demos()
