"""`edge compile MODEL.onnx --calib CALIB.npz -o OUT.edge`, `edge compile MODEL.tflite -o
OUT.edge`."""

from __future__ import annotations

import warnings
from pathlib import Path

import click

from sdk.cli.arrays import load_arrays
from sdk.cli.inspect_cmd import memory_line
from sdk.errors import CalibrationError, EdgeWarning
from sdk.quant.calibrate import allow_zero_calibration_inputs
from sdk.quant.observers import OBSERVERS


@click.command("compile")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--calib", type=click.Path(dir_okay=False),
              help="calibration .npz: one array per model input, first axis = samples "
                   "(not needed for QDQ models)")
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="bundle to write (default: MODEL with the .edge suffix)")
@click.option("--observer", type=click.Choice(sorted(OBSERVERS) + ["auto"]), default="minmax",
              show_default=True, help="how calibration picks each activation's range "
                                      "(auto: per tensor, the least output error)")
@click.option("--activation-bits", type=click.Choice(["8", "16"]), default="8",
              show_default=True, help="integer width of activations")
@click.option("--per-channel/--per-tensor", default=True, show_default=True,
              help="weight scales per output channel or per tensor")
@click.option("--mixed-precision/--no-mixed-precision", default=True, show_default=True,
              help="int16 for attention scores, LayerNorm inputs and the residual stream")
@click.option("--int16-layers", default="none", show_default=True,
              help="activations made int16: none | auto (fewest, by sensitivity, to reach "
                   "--target-cosine) | comma-separated tensor names")
@click.option("--smooth-alpha", type=click.FloatRange(0.0, 1.0), default=None,
              help="SmoothQuant: migrate LayerNorm-output outliers into the next linear "
                   "layers' weights with strength alpha (e.g. 0.5); default off")
@click.option("--target-cosine", type=float, default=0.99, show_default=True,
              help="goal of --int16-layers auto: worst output cosine vs float on calibration")
@click.option("--sensitivity", type=click.Choice(["integer", "float"]), default="integer",
              show_default=True, help="sensitivity of a tensor: int8 alone in the integer graph "
                                      "(others int16), or fake-quantized in the float graph")
@click.option("--report", is_flag=True,
              help="print each layer's error against float and the sensitivity table")
@click.option("--target", help="board profile (`edge targets`): check RAM/flash/op limits and "
                               "print which nodes run on which backend")
@click.option("--backend", help="backend for the plan (default: the target's); see "
                                "sdk.backends.BACKENDS")
@click.option("--force-calibration", is_flag=True,
              help="accept an all-zero calibration array for a model input (a warning, not "
                   "an error)")
@click.option("--exits", "exits_path", type=click.Path(dir_okay=False),
              help="early exit: held-out .npz (model inputs + 'label') to calibrate the exit "
                   "thresholds on; adds one stage entry per exit to the bundle")
@click.option("--max-accuracy-drop", default=None,
              help="with --exits: accuracy points the exits may lose against the model "
                   "without them [default: 0.5]")
@click.option("--exit-rule", type=click.Choice(["margin", "entropy", "patience", "gate"]),
              default=None, help="with --exits: integer exit rule [default: margin]")
@click.option("--exit-criterion", type=click.Choice(["consistency", "accuracy", "miou"]),
              default=None,
              help="with --exits: bound the disagreement with the model without exits "
                   "(consistency, bounds the accuracy lost) or the labelled accuracy drop; "
                   "miou: segmentation, 'label' holds class maps, the drop is in mIoU "
                   "points (gate rule) [default: consistency]")
@click.option("--exit-outputs", default=None,
              help="with --exits: the classifier outputs in compute order, comma-separated "
                   "(default: every output shaped like the last, less 'gate')")
def command(model: str, calib: str | None, output: str | None, observer: str,
            activation_bits: str, per_channel: bool, mixed_precision: bool,
            int16_layers: str = "none", smooth_alpha: float | None = None,
            target_cosine: float = 0.99, sensitivity: str = "integer", report: bool = False,
            target: str | None = None, backend: str | None = None,
            force_calibration: bool = False, exits_path: str | None = None,
            max_accuracy_drop: str | None = None, exit_rule: str | None = None,
            exit_outputs: str | None = None, exit_criterion: str | None = None) -> None:
    """Quantize an ONNX model to integers and write a .edge bundle (an int8 .tflite model is
    already integer: it is imported and bundled as is, with no calibration)."""
    from sdk.compile import compile_model
    from sdk.errors import ModelFormatError

    if not Path(model).is_file():
        raise ModelFormatError(f"{model}: no such model file; check the path")
    tflite = Path(model).suffix.lower() == ".tflite"
    if tflite and calib:
        raise CalibrationError(f"{model}: an int8 .tflite model brings its own scales; drop "
                               "--calib")
    data = load_arrays(calib, [], CalibrationError, "calibration") if calib else None
    exit_data, exit_kw = _exit_options(exits_path, max_accuracy_drop, exit_rule, exit_outputs,
                                       exit_criterion)
    with warnings.catch_warnings(record=True) as caught, \
            allow_zero_calibration_inputs(force_calibration):
        warnings.simplefilter("always", EdgeWarning)
        if tflite:
            from sdk.cli.inspect_cmd import open_bundle

            bundle = open_bundle(model)
        else:
            bundle = compile_model(model, data, observer=observer,
                                   activation_bits=int(activation_bits),
                                   per_channel=per_channel, mixed_precision=mixed_precision,
                                   int16_layers=int16_layers, smooth_alpha=smooth_alpha,
                                   target_cosine=target_cosine, sensitivity=sensitivity,
                                   report=report)
    seen = set()
    for w in caught:
        if issubclass(w.category, EdgeWarning) and str(w.message) not in seen:
            seen.add(str(w.message))
            click.echo(f"warning: {w.message}", err=True)
    if exit_data is not None:
        from sdk.exits import add_exits

        bundle = add_exits(bundle, exit_data, **exit_kw)
    out = Path(output) if output else Path(model).with_suffix(".edge")
    if target or backend:  # emulator-mode limits fail before anything is written
        from sdk.backends import check_fits, default_backend, partition

        if target:
            click.echo(f"fits {check_fits(bundle.graph, target)}")
        click.echo(str(partition(bundle.graph, backend or default_backend(target), target)))
    bundle.save(out)
    m = bundle.manifest
    ops = sorted(set(m["ops"]))
    click.echo(f"compiled {m['model_name']}: {len(m['ops'])} nodes ({', '.join(ops)})")
    click.echo(f"  parameters {m['parameter_bytes']} bytes, {m['macs']} MACs per inference")
    click.echo(f"  {memory_line(m['memory'])}")
    for io in m["inputs"] + m["outputs"]:
        q = io["quant"]
        if q:
            click.echo(f"  {io['name']}: {io['shape']} {io['quant_dtype']} "
                       f"scale={q['scale']:.6g} zero_point={q['zero_point']}")
    click.echo(f"wrote {out} ({out.stat().st_size} bytes)")
    if exit_data is not None:
        print_exits(bundle.manifest["exits"])
    rep = getattr(bundle, "ptq_report", None)
    if report and rep is None:
        click.echo("report: the model brought its own quantization (QDQ or .tflite); nothing "
                   "to report")
    elif rep is not None:
        print_report(rep)


def print_report(rep) -> None:
    """The per-layer error table and the sensitivity table of a PTQ report."""
    n = len(rep.samples)
    click.echo(f"per-layer error vs float ({n} calibration samples):")
    click.echo(f"  {'tensor':32s} {'dtype':6s} {'cosine':>8s} {'rel.RMSE':>9s}")
    for e in rep.layers:
        click.echo(f"  {e.tensor:32s} {e.dtype:6s} {e.cosine:8.5f} {e.rrmse:9.4f}")
    for s in rep.smooth:
        click.echo(f"smoothed {s.tensor} -> {', '.join(s.consumers)}: channel max/median "
                   f"{s.act_ratio_before:.1f} -> {s.act_ratio_after:.1f} "
                   f"(s in [{s.s_min:.3g}, {s.s_max:.3g}])")
    if rep.sensitivity:
        click.echo("sensitivity (each tensor alone int8; 1 - output cosine vs float):")
        click.echo(f"  {'tensor':32s} {'error':>9s} {'rel.RMSE':>9s} {'observer':9s} int16  why")
        for r in rep.sensitivity:
            click.echo(f"  {r.tensor:32s} {r.error:9.2e} {r.rrmse:9.4f} {r.observer:9s} "
                       f"{'yes' if r.int16 else '-':5s}  {r.reason()}")
    if rep.tried:
        tried = ", ".join(f"{k}: {c:.4f}" for k, c in rep.tried)
        click.echo(f"int16 count -> worst integer output cosine: {tried}")
    click.echo(f"int16 layers: {', '.join(rep.int16) if rep.int16 else 'none'}")


def _exit_options(path: str | None, drop: str | None, rule: str | None,
                  outputs: str | None, criterion: str | None = None
                  ) -> tuple[dict | None, dict]:
    """The --exits calibration arrays and the add_exits options, checked before anything is
    compiled ((None, {}) without --exits)."""
    from sdk.exits import check_drop

    if path is None:
        given = [n for n, v in (("--max-accuracy-drop", drop), ("--exit-rule", rule),
                                ("--exit-outputs", outputs), ("--exit-criterion", criterion))
                 if v is not None]
        if given:
            raise CalibrationError(f"{given[0]} needs --exits HELDOUT.npz (the labelled "
                                   "samples the exit thresholds are calibrated on)")
        return None, {}
    kw = {"max_accuracy_drop": check_drop(0.5 if drop is None else drop),
          "rule": rule or "margin", "criterion": criterion or "consistency",
          "exit_outputs": [o.strip() for o in outputs.split(",")] if outputs else None}
    from sdk.exits.calibrate import labels_from

    arrays = load_arrays(path, [], CalibrationError, "exit calibration")
    inputs = [v for k, v in arrays.items() if k not in ("label", "labels")]
    labels_from(arrays, len(inputs[0]) if inputs and inputs[0].ndim else 0,
                dense=criterion == "miou")
    return arrays, kw


def print_exits(doc: dict) -> None:
    """The chosen exit operating point, one line per exit."""
    cal = doc["calibration"]
    ch = cal["chosen"]
    n = cal["samples"]
    metric, unit = ("mIoU", "") if cal.get("metric") == "mIoU" else ("accuracy", "%")
    click.echo(f"exits ({doc['rule']}, {cal['criterion']}, {n} held-out samples): {metric} "
               f"{ch['accuracy']:.2f}{unit} vs {cal['accuracy_full']:.2f}{unit} without exits "
               f"(agreeing with it on {ch['agreement']:.2f}%), mean {ch['mean_macs']:.0f} MACs vs "
               f"{doc['full_macs']} ({100 * cal['saved_macs']:.1f}% saved)")
    for e, c in zip(doc["exits"], ch["exit_counts"]):
        thr = "always" if e["threshold"] is None else f"score >= {e['threshold']}"
        click.echo(f"  {e['name']:12s} {e['entry']:10s} {e['macs']:>10d} MACs  {thr:16s} "
                   f"{100 * c / n:5.1f}% exit here")
