"""Post-training quantization: calibrate a float graph and lower it to integer operators.

``quantize(graph, data)`` = prepare (fold BatchNorm, fuse GELU) → calibrate every activation
with an observer → plan integer types and parameters → integer-only lowering. The result
holds only docs/ops.md integer ops, with ``QuantizeLinear`` at the inputs and
``DequantizeLinear`` at the outputs. A step graph's recurrent state (input ``s`` paired with
output ``s_next``) gets one grid per pair, int16 under mixed precision (:mod:`sdk.quant.state`).

Three tools for models with activation outliers (pretrained transformers):

* ``smooth_alpha``: SmoothQuant migration of LayerNorm-output outliers into the following
  linear layers' weights before calibration (:mod:`sdk.quant.smooth`);
* ``int16_layers``: ``"auto"`` ranks the int8 activations by a sensitivity report and makes
  int16 the fewest of them that bring the integer output to ``target_cosine`` on the
  calibration samples; a list names them; ``"none"`` keeps the plan's own choice
  (:mod:`sdk.quant.sensitivity`);
* ``observer="auto"``: per tensor, the observer (min/max, percentile, MSE) whose int8 grid
  gives the least output error alone; ``observer_for`` sets them by name.

Pass ``report=PTQReport()`` to get what was chosen and why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from sdk.errors import CalibrationError
from sdk.graph import Graph
from sdk.quant.calibrate import calibrate, float_feeds, sample_batches
from sdk.quant.fuse import constants_to_tensors, prepare_float_graph
from sdk.quant.integer_ops import assert_integer_only
from sdk.quant.lower import check_lowerable, lower
from sdk.quant.observers import OBSERVERS
from sdk.quant.plan import plan_from_observers
from sdk.quant.state import carry_state_decls, find_state_pairs

AUTO_OBSERVERS = ("minmax", "percentile", "mse")
SENSITIVITY_SAMPLES = 4   # samples behind each sensitivity row
CHOICE_SAMPLES = 16       # samples the int16 choice must reach the target on


@dataclass
class PTQReport:
    """What :func:`quantize` chose: int16 tensors, smoothing, the sensitivity table, the
    integer output cosines tried while choosing, per-tensor observers, and the float graph
    that was quantized (for :func:`sdk.quant.sensitivity.layer_errors`)."""

    int16: list[str] = field(default_factory=list)
    smooth: list = field(default_factory=list)
    sensitivity: list = field(default_factory=list)
    tried: list[tuple[int, float]] = field(default_factory=list)
    observer_for: dict[str, str] = field(default_factory=dict)
    float_graph: Graph | None = None
    samples: list = field(default_factory=list)
    layers: list = field(default_factory=list)  # LayerError rows, filled by compile_model


def _samples(graph: Graph, data: Mapping[str, np.ndarray], n: int) -> list[dict]:
    out = []
    for feeds in sample_batches(graph, data, batch=1):
        out.append(float_feeds(graph, feeds))
        if len(out) >= n:
            break
    return out


def quantize(graph: Graph, data: Mapping[str, np.ndarray], observer: str = "minmax",
             activation_bits: int = 8, per_channel: bool = True,
             mixed_precision: bool = True,
             state_pairs: Mapping[str, str] | None = None, *,
             int16_layers: str | Sequence[str] = "none",
             smooth_alpha: float | None = None,
             observer_for: Mapping[str, str] | None = None,
             target_cosine: float = 0.99, sensitivity: str = "integer",
             prune_int16: bool = False, report: PTQReport | None = None) -> Graph:
    """Integer graph for the float ``graph``, calibrated on ``data``.

    ``data`` maps each input name to an array whose first axis is the sample axis.
    ``observer``: ``minmax`` | ``percentile`` | ``mse`` | ``entropy`` | ``auto`` (per tensor,
    see the module docstring). ``activation_bits``: 8 or 16.
    ``per_channel``: per-output-channel weight scales (else per tensor). ``mixed_precision``:
    int16 for attention scores, LayerNorm inputs, the residual stream and recurrent state.
    ``state_pairs``: state input → state output of a step graph; None pairs them by name
    (:func:`sdk.graph.state.pair_states`: ``s`` ↔ ``s_next``/``s_out``/``s_new``),
    ``{}`` treats the graph as stateless. Each pair's input and output share dtype, scale and
    zero point, so a stream feeds the integer output straight back.
    ``int16_layers``: ``"none"``, ``"auto"`` (sensitivity-chosen, to reach ``target_cosine``
    — worst output cosine vs float over up to 16 calibration samples) or tensor names.
    ``smooth_alpha``: SmoothQuant migration strength α in [0, 1] (None: off).
    ``observer_for``: tensor name → observer kind, overriding ``observer`` for those tensors.
    ``sensitivity``: ``integer`` (each candidate int8 alone in the integer graph, the others
    int16) or ``float`` (fake quantization in the float graph; faster). ``prune_int16``:
    after the shortest sensitivity-ordered prefix, drop each chosen tensor (least sensitive
    first) whose removal still keeps ``target_cosine`` (on MiniLM it saved one tensor of 18
    and cost held-out margin, so it is off by default).
    Raises CalibrationError for missing, empty or non-finite data, UnsupportedOpError listing
    every operator the integer lowering lacks.
    """
    from sdk.quant import sensitivity as sens
    from sdk.quant.smooth import smooth_graph

    auto_obs = observer == "auto"
    if not auto_obs and observer not in OBSERVERS:
        raise CalibrationError(f"unknown calibration observer {observer!r}; choose one of "
                               f"{sorted(OBSERVERS) + ['auto']}")
    base_obs = "minmax" if auto_obs else observer
    g = graph.copy()
    constants_to_tensors(g)
    fg = prepare_float_graph(g)
    check_lowerable(fg)  # fail before the (slow) calibration
    pairs = find_state_pairs(g, state_pairs)
    observers = calibrate(g, data, base_obs)
    fg = prepare_float_graph(g)  # again: calibration filled in shapes
    smooth_info = []
    if smooth_alpha is not None:
        fg, smooth_info = smooth_graph(fg, data, float(smooth_alpha))
        if smooth_info:
            observers = calibrate(fg, data, base_obs)
    per_obs = dict(observer_for or {})

    def make(int16: Sequence[str], obs_for: Mapping[str, str]) -> Graph:
        plan = plan_from_observers(fg, observers, activation_bits, per_channel,
                                   mixed_precision, pairs, int16=int16, observer_for=obs_for)
        return lower(fg, plan)

    if isinstance(int16_layers, str) and int16_layers not in ("none", "auto"):
        int16_layers = [t.strip() for t in int16_layers.split(",") if t.strip()]
    chosen: list[str] = []
    if not isinstance(int16_layers, str):
        missing = [t for t in int16_layers if t not in fg.tensors]
        if missing:
            raise CalibrationError(f"--int16-layers names unknown tensor(s) {missing}; "
                                   "see `edge compile --report` for the tensor names")
        chosen = list(int16_layers)
    if sensitivity not in ("integer", "float"):
        raise CalibrationError(f"sensitivity must be 'integer' or 'float', got {sensitivity!r}")
    rows: list = []
    tried: list = []
    samples: list = []
    if int16_layers == "auto" or auto_obs or report is not None:
        samples = _samples(fg, data, CHOICE_SAMPLES)
    if int16_layers == "auto" or auto_obs:
        plan0 = plan_from_observers(fg, observers, activation_bits, per_channel,
                                    mixed_precision, pairs, int16=chosen, observer_for=per_obs)
        ig0 = lower(fg, plan0)
        cand = sens.candidates(fg, plan0, ig0)
        kinds = AUTO_OBSERVERS if auto_obs else (base_obs,)
        build = None
        if sensitivity == "integer":
            def build(int16: list[str], obs_for: dict[str, str]) -> Graph:
                return make([*chosen, *int16], {**per_obs, **obs_for})
        step = max(1, len(samples) // SENSITIVITY_SAMPLES)
        rows = sens.sensitivity_table(fg, observers, plan0, samples[::step][:SENSITIVITY_SAMPLES],
                                      cand, kinds, build)
        if auto_obs:
            per_obs.update({r.tensor: r.observer for r in rows if r.tensor not in per_obs})
        if int16_layers == "auto":
            ref = sens._run(fg, samples)

            def evaluate(int16: list[str]) -> float:
                outs = sens._run(make(int16, per_obs), samples)
                return float(sens.output_cosines(outs, ref).min())

            chosen, tried = sens.choose_int16(rows, evaluate, target_cosine, prune=prune_int16)
            for r in rows:
                r.int16 = r.tensor in chosen
    ig = make(chosen, per_obs)
    carry_state_decls(g, ig, pairs)  # the state declaration survives the lowering
    ig.metadata.update(observer=observer, activation_bits=activation_bits,
                       per_channel=per_channel, mixed_precision=mixed_precision)
    if chosen:
        ig.metadata["int16_layers"] = list(chosen)
    if smooth_info:
        ig.metadata["smooth_alpha"] = float(smooth_alpha)
    assert_integer_only(ig)
    if report is not None:
        report.int16, report.smooth, report.sensitivity = list(chosen), smooth_info, rows
        report.tried, report.observer_for = tried, per_obs
        report.float_graph, report.samples = fg, samples
    return ig
