"""Rebuild the single-step ONNX graph of a keyword-spotting checkpoint (torch-free).

Usage: ``python tools/kws_export_onnx.py samples/kws/models/kws_lmuformer_spiking.npz``
writes ``kws_lmuformer_spiking.onnx`` beside it (``--batch 0`` leaves the batch symbolic).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sdk.models import LMUFormerWeights, build_step_onnx


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint", nargs="+")
    ap.add_argument("--batch", type=int, default=1, help="0: symbolic batch dimension")
    a = ap.parse_args(argv)
    for path in a.checkpoint:
        model = LMUFormerWeights.load(path)
        out = Path(path).with_suffix(".onnx")
        proto = build_step_onnx(model, batch=a.batch or None)
        out.write_bytes(proto.SerializeToString())
        print(f"{out}: {len(proto.graph.node)} nodes, {model.parameter_count()} parameters")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
