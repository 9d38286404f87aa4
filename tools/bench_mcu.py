#!/usr/bin/env python3
"""Cortex-M4 firmware in QEMU: instructions per MAC of int8 FC and conv, link throughput and
round-trip latency.

Each layer is packed into a flash image, loaded over the serial link into the firmware running
on ``qemu-system-arm -M mps2-an386 -icount shift=6`` and run; its output is checked bit for bit
against the NumPy reference before any number is printed. The per-op count comes from the
firmware's TIMER0 read around the kernel; under -icount it is an instruction count
(deterministic up to one timer tick = 0.625 instruction), not a cycle count — QEMU does not
model the M4 pipeline. Two kernels per layer: ``smlad`` (packed int16 weights, dual 16-bit MAC,
the default) and ``plain`` (int8 weights, reference-style C loop).

For scale, the same layer runs in ONNX Runtime on this host (MatMulInteger / ConvInteger, one
thread, median of repeated runs); the ratio column compares ORT's host time with the M4 time
estimated at 25 MHz assuming one instruction per cycle (an optimistic bound for a real M4).

The goal (issue 16, part 3) is at most 0.7 instructions per MAC on the FC and conv layers;
the table's ``÷goal`` column is instr/MAC divided by 0.7 (<= 1 meets it). Without ``--quick``
(or with ``--models``) the FC and conv layers of a sample model, the tiny segmenter
(samples/seg/seg_tiny_mask.onnx, one 64x64 frame, checked bit for bit against the reference),
are listed per layer the same way.

    python tools/bench_mcu.py --quick          # under a minute
    python tools/bench_mcu.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np

GOAL_INSTR_PER_MAC = 0.7
#: ops whose per-layer instructions/MAC the sample-model table lists
_MAC_OPS = ("QFullyConnected", "QConv2d", "QConv1d", "QMatMul")


def _fc_graph(k: int, n: int, rng: np.random.Generator):
    from sdk.graph.ir import Graph, Tensor
    from sdk.kernels.requant import quantize_multiplier_array

    g = Graph(f"fc_{k}x{n}")
    g.add_tensor(Tensor("x", "int8", (1, k)))
    g.add_tensor(Tensor("y", "int8", (1, n)))
    g.add_constant("w", rng.integers(-127, 128, (n, k)).astype(np.int8))
    g.add_constant("b", rng.integers(-5000, 5000, n).astype(np.int32))
    m0, sh = quantize_multiplier_array(np.full(n, 0.5 / (60.0 * np.sqrt(k))))
    g.add_node("QFullyConnected", ["x", "w", "b"], ["y"], x_zp=-3, m0=m0, shift=sh, out_zp=0,
               act_min=-128, act_max=127, dtype="int8")
    g.inputs, g.outputs = ["x"], ["y"]
    return g, {"x": rng.integers(-128, 128, (1, k)).astype(np.int8)}


def _conv_graph(c: int, o: int, hw: int, rng: np.random.Generator):
    from sdk.graph.ir import Graph, Tensor
    from sdk.kernels.requant import quantize_multiplier_array

    g = Graph(f"conv3x3_{c}to{o}_{hw}x{hw}")
    g.add_tensor(Tensor("x", "int8", (1, c, hw, hw)))
    g.add_tensor(Tensor("y", "int8", (1, o, hw, hw)))
    g.add_constant("w", rng.integers(-127, 128, (o, c, 3, 3)).astype(np.int8))
    g.add_constant("b", rng.integers(-5000, 5000, o).astype(np.int32))
    m0, sh = quantize_multiplier_array(np.full(o, 0.5 / (60.0 * np.sqrt(9 * c))))
    g.add_node("QConv2d", ["x", "w", "b"], ["y"], strides=[1, 1], pads=[1, 1, 1, 1],
               dilations=[1, 1], group=1, x_zp=5, m0=m0, shift=sh, out_zp=0, act_min=-128,
               act_max=127, dtype="int8")
    g.inputs, g.outputs = ["x"], ["y"]
    return g, {"x": rng.integers(-128, 128, (1, c, hw, hw)).astype(np.int8)}


def _reference(g, feeds):
    from sdk.kernels import conv, linear

    node = g.nodes[0]
    w, b = g.tensor("w").data, g.tensor("b").data
    if node.op == "QFullyConnected":
        return linear.fully_connected(feeds["x"], w, b, **node.attrs)
    return conv.conv2d(feeds["x"], w, b, **node.attrs)


def _ort_seconds(g, feeds, repeats: int) -> float:
    """Median time of the same integer layer in ONNX Runtime on this host (one thread)."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    node = g.nodes[0]
    w = g.tensor("w").data
    x = feeds["x"]
    zp = np.array(node.attrs["x_zp"], np.int8)
    if node.op == "QFullyConnected":
        inits = [numpy_helper.from_array(np.ascontiguousarray(w.T), "w"),
                 numpy_helper.from_array(zp, "zp")]
        nodes = [helper.make_node("MatMulInteger", ["x", "w", "zp"], ["y"])]
        out_shape = [1, w.shape[0]]
    else:
        inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(zp, "zp")]
        nodes = [helper.make_node("ConvInteger", ["x", "w", "zp"], ["y"], pads=[1, 1, 1, 1])]
        out_shape = [1, w.shape[0], x.shape[2], x.shape[3]]
    graph = helper.make_graph(nodes, "layer",
                              [helper.make_tensor_value_info("x", TensorProto.INT8, list(x.shape))],
                              [helper.make_tensor_value_info("y", TensorProto.INT32, out_shape)],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    sess.run(None, {"x": x})
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        sess.run(None, {"x": x})
        times.append(time.perf_counter() - t0)
    del onnx
    return statistics.median(times)


def _sample_model_layers() -> list[dict]:
    """Per FC / conv / matmul layer of the tiny segmenter's frame on the M4 (SMLAD kernels)."""
    from pathlib import Path

    from sdk.vision.mcu import QemuSegmenter, quantize_input, reference_logits, segmenter_image
    from sdk.vision.scenes import cached_scenes, normalize_batch

    model = Path(__file__).resolve().parents[1] / "samples" / "seg" / "seg_tiny_mask.onnx"
    tiny = segmenter_image(model)
    images, _ = cached_scenes(2, 1, "test", 64)
    xq = quantize_input(tiny, normalize_batch(images[:1]))
    with QemuSegmenter(tiny) as dev:
        got, total = dev(xq)
        ops = dev.op_counts()
    if not np.array_equal(got, reference_logits(tiny, xq)):
        raise SystemExit("seg_tiny_mask: device output differs from the reference")
    rows = []
    for name, op, instr, macs in ops:
        if op in _MAC_OPS and macs:
            rows.append({"model": model.name, "layer": name, "op": op, "macs": int(macs),
                         "instructions": instr, "instr_per_mac": instr / macs,
                         "goal_ratio": instr / macs / GOAL_INSTR_PER_MAC})
    rows.append({"model": model.name, "layer": "(whole frame)", "op": "", "macs":
                 sum(r["macs"] for r in rows), "instructions": total})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small layers, under a minute")
    ap.add_argument("--json", help="write the results as JSON")
    ap.add_argument("--models", action="store_true",
                    help="also list the sample model's layers (the default without --quick)")
    args = ap.parse_args(argv)

    from firmware_bridge.build import toolchain_missing
    from firmware_bridge.client import DeviceClient
    from firmware_bridge.image import pack_image
    from firmware_bridge.protocol import Command
    from firmware_bridge.qemu import QemuFirmware, qemu_missing, ticks_to_instructions
    from firmware_bridge.session import DeviceModel

    why = toolchain_missing("m4") or qemu_missing()
    if why:
        print(f"bench_mcu: skipped, {why}")
        return 0
    rng = np.random.default_rng(0)
    if args.quick:
        layers = [_fc_graph(256, 64, rng), _fc_graph(512, 128, rng), _conv_graph(8, 16, 12, rng)]
    else:
        layers = [_fc_graph(256, 64, rng), _fc_graph(512, 128, rng), _fc_graph(1024, 128, rng),
                  _conv_graph(8, 16, 16, rng), _conv_graph(16, 32, 16, rng),
                  _conv_graph(32, 64, 8, rng), _conv_graph(64, 64, 8, rng),
                  _conv_graph(64, 128, 6, rng)]
    rows, loads = [], []
    with QemuFirmware() as q:
        client = DeviceClient(q.url, timeout=1.0)
        for g, feeds in layers:
            ref = _reference(g, feeds)
            macs = None
            for kernel in ("smlad", "plain"):
                packed = pack_image(g, packed_kernels=kernel == "smlad")
                model = DeviceModel(client, packed, load=False)
                model.check_fit()
                t0 = time.monotonic()
                client.load_image(packed.data)
                loads.append((len(packed.data), time.monotonic() - t0))
                counts = []
                for _ in range(3):
                    out = model.run(feeds)["y"]
                    if not np.array_equal(out, ref):
                        raise SystemExit(f"{g.name} ({kernel}): device output differs from the "
                                         "reference; not benchmarking a wrong kernel")
                    op = model.profile()[0]
                    counts.append(ticks_to_instructions(op.ticks, q.icount_shift))
                    macs = op.macs
                instr = statistics.median(counts)
                rows.append({"layer": g.name, "kernel": kernel, "macs": macs,
                             "instructions": instr, "instr_per_mac": instr / macs,
                             "goal_ratio": instr / macs / GOAL_INSTR_PER_MAC,
                             "image_bytes": len(packed.data)})
            ort_s = _ort_seconds(g, feeds, 20 if args.quick else 100)
            for r in rows[-2:]:
                r["ort_host_s"] = ort_s
                r["m4_est_s"] = r["instructions"] / 25e6
        rtts = []
        for _ in range(30 if args.quick else 100):
            t0 = time.perf_counter()
            client.request(Command.HELLO)
            rtts.append(time.perf_counter() - t0)
        client.close()
    nbytes = sum(b for b, _ in loads)
    seconds = sum(s for _, s in loads)
    link = {"load_bytes": nbytes, "load_s": seconds, "throughput_kib_s": nbytes / seconds / 1024,
            "rtt_median_ms": statistics.median(rtts) * 1e3, "rtt_runs": len(rtts)}

    print("Cortex-M4 firmware in QEMU mps2-an386, -icount shift=6"
          " (counts are instructions, not cycles)")
    hdr = (f"{'layer':<24}{'kernel':<8}{'MACs':>10}{'instr':>12}{'instr/MAC':>11}"
           f"{'÷goal':>7}{'M4@25MHz ms':>13}{'ORT host ms':>13}{'M4/ORT':>9}")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        print(f"{r['layer']:<24}{r['kernel']:<8}{r['macs']:>10}{r['instructions']:>12.0f}"
              f"{r['instr_per_mac']:>11.3f}{r['goal_ratio']:>7.2f}{r['m4_est_s'] * 1e3:>13.3f}"
              f"{r['ort_host_s'] * 1e3:>13.4f}{r['m4_est_s'] / r['ort_host_s']:>9.0f}")
    print(f"goal: <= {GOAL_INSTR_PER_MAC} instructions/MAC (÷goal <= 1.00); SMLAD layers "
          f"meeting it: {sum(r['goal_ratio'] <= 1 for r in rows if r['kernel'] == 'smlad')} "
          f"of {sum(r['kernel'] == 'smlad' for r in rows)}")
    model_rows = _sample_model_layers() if args.models or not args.quick else []
    if model_rows:
        print(f"\nsample model {model_rows[0]['model']}, one frame, SMLAD kernels:")
        print(f"{'layer':<48}{'op':<16}{'MACs':>10}{'instr':>12}{'instr/MAC':>11}{'÷goal':>7}")
        for r in model_rows[:-1]:
            print(f"{r['layer'][:47]:<48}{r['op']:<16}{r['macs']:>10}{r['instructions']:>12.0f}"
                  f"{r['instr_per_mac']:>11.3f}{r['goal_ratio']:>7.2f}")
        t = model_rows[-1]
        print(f"{'(whole frame, all ops)':<64}{t['macs']:>10}{t['instructions']:>12.0f}")
    print(f"link: {link['throughput_kib_s']:.1f} KiB/s loading {nbytes} B of images; "
          f"round trip (HELLO) median {link['rtt_median_ms']:.2f} ms over {len(rtts)} runs")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"layers": rows, "link": link, "icount_shift": 6,
                       "goal_instr_per_mac": GOAL_INSTR_PER_MAC,
                       "sample_model_layers": model_rows}, f, indent=1)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
