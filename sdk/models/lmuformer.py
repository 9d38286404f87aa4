"""LMUFormer-style streaming keyword spotter: LMU matrices, a NumPy step, and its ONNX step graph.

One call is one 10 ms frame of log-mel features ``x`` (``n_mels`` values in log2 units); all
memory is explicit state, so the step graph can run hop by hop on any executor. With ``act`` a
ReLU (non-spiking variant) or a LIF neuron (spiking variant, τ = 2, hard reset):

    xn = (x − μ)·σ⁻¹                                   per-bin input normalization
    e  = W_e·[c_{t−2}; c_{t−1}; xn] + b_e              causal conv patch embedding (kernel 3),
                                                       c = the last two normalized frames (state)
    a0 = act(e)
    u  = act_u(W_u·a0 + b_u)                            LMU input (LIF threshold 0.5)
    m  = m·Āᵀ + u·B̄ᵀ                                   Legendre memory per u channel (state)
    y1 = e + act(W_m·m + W_a·a0 + b_h)                  LMU block with residual
    y2 = y1 + W_2·act(W_1·act(y1) + b_1) + b_2          channel mixer (1×1 convs, 4× expansion)
    logits = W_o·act(y2) + b_o                          per-frame head
    stream_logits = W_s·act(y2) + b_s                   optional second head (config
                                                       ``stream_head``): keyword scores for
                                                       continuous speech, trained on streams

Batch norms of training are folded into the weights. The clip prediction after ``t`` frames is
the running mean of the frame logits (:func:`running_mean_logits`). LIF, with ``V`` the
membrane (state): ``H = (V + X)/2``, ``S = [H ≥ V_th]``, ``V ← H·(1 − S)``.

LMU (Voelker et al. 2019): for order ``d`` and window ``θ`` frames,
``A[i,j] = (2i+1)/θ·(−1 if i < j else (−1)^(i−j+1))``, ``B[i] = (2i+1)/θ·(−1)^i``, discretized
with zero-order hold (Δt = 1) by exponentiating ``[[A, B], [0, 0]]``: ``Ā = e^A``,
``B̄ = A⁻¹(Ā − I)B``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from sdk.errors import InputError, ModelFormatError

LIF_TAU = 2.0
LIF_THRESHOLD = 1.0
LIF_THRESHOLD_U = 0.5
CONV_KERNEL = 3
OPSET = 17


def lmu_continuous(order: int, theta: float) -> tuple[np.ndarray, np.ndarray]:
    """Continuous-time LMU matrices ``A [d, d]`` and ``B [d, 1]`` (Padé delay of θ)."""
    i = np.arange(order)[:, None]
    j = np.arange(order)[None, :]
    r = (2 * i + 1) / float(theta)
    a = r * np.where(i < j, -1.0, (-1.0) ** (i - j + 1))
    b = r * (-1.0) ** i
    return a, b.reshape(order, 1)


def zoh_discretize(a: np.ndarray, b: np.ndarray, dt: float = 1.0
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Zero-order hold: ``expm(dt·[[A, B], [0, 0]]) = [[Ā, B̄], [0, I]]``."""
    from scipy.linalg import expm

    d, k = b.shape
    block = np.zeros((d + k, d + k))
    block[:d, :d] = a
    block[:d, d:] = b
    e = expm(block * dt)
    return e[:d, :d], e[:d, d:]


def lmu_matrices(order: int, theta: float) -> tuple[np.ndarray, np.ndarray]:
    """Discrete ``Ā [d, d]``, ``B̄ [d, 1]`` (zero-order hold, one frame per step)."""
    return zoh_discretize(*lmu_continuous(order, theta))


def legendre_readout(order: int, delay_fraction: float) -> np.ndarray:
    """Weights ``w [d]`` with ``w·m_t ≈ u(t − fraction·θ)``: ``w_i = P_i(2·fraction − 1)``.

    With the sign convention of ``A`` and ``B`` above, the memory holds the input's window in
    the Legendre basis; ``P_i`` is the Legendre polynomial of degree ``i``.
    """
    from numpy.polynomial import legendre

    r = 2.0 * float(delay_fraction) - 1.0
    return np.array([legendre.legval(r, np.eye(order)[i]) for i in range(order)])


@dataclass(frozen=True)
class LMUFormerConfig:
    """Shape of the model."""

    n_mels: int = 40
    n_classes: int = 12
    d_model: int = 64
    lmu_units: int = 16  # u channels, each with its own Legendre memory
    lmu_order: int = 16
    lmu_theta: float = 80.0  # frames
    mlp_ratio: int = 4
    spiking: bool = False
    #: a second per-frame head ``W_s, b_s`` on the same activations (continuous speech);
    #: ``logits`` stays the clip head
    stream_head: bool = False


# weight name -> shape as a function of the config: [out, in] for linear maps
def weight_shapes(cfg: LMUFormerConfig) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the folded float weights of a model."""
    c, mu, d, h = cfg.d_model, cfg.lmu_units, cfg.lmu_order, cfg.d_model * cfg.mlp_ratio
    return {"in_mean": (cfg.n_mels,), "in_inv_std": (cfg.n_mels,),
            "w_embed": (c, CONV_KERNEL * cfg.n_mels), "b_embed": (c,),
            "w_u": (mu, c), "b_u": (mu,),
            "a_bar": (d, d), "b_bar": (d, 1),
            "w_m": (c, mu * d), "w_a": (c, c), "b_h": (c,),
            "w_1": (h, c), "b_1": (h,), "w_2": (c, h), "b_2": (c,),
            "w_o": (cfg.n_classes, c), "b_o": (cfg.n_classes,),
            **({"w_s": (cfg.n_classes, c), "b_s": (cfg.n_classes,)} if cfg.stream_head else {})}


def state_shapes(cfg: LMUFormerConfig) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the state tensors (batch 1), in graph input order."""
    c, mu, d = cfg.d_model, cfg.lmu_units, cfg.lmu_order
    s = {"conv": (1, (CONV_KERNEL - 1) * cfg.n_mels), "memory": (1, mu * d)}
    if cfg.spiking:
        s.update({"v_embed": (1, c), "v_u": (1, mu), "v_lmu": (1, c), "v_mix_in": (1, c),
                  "v_mix_hidden": (1, c * cfg.mlp_ratio), "v_head": (1, c)})
    return s


#: activation sites: name of the LIF membrane state, threshold
ACT_SITES = [("v_embed", LIF_THRESHOLD), ("v_u", LIF_THRESHOLD_U), ("v_lmu", LIF_THRESHOLD),
             ("v_mix_in", LIF_THRESHOLD), ("v_mix_hidden", LIF_THRESHOLD),
             ("v_head", LIF_THRESHOLD)]


@dataclass
class LMUFormerWeights:
    """A trained model: its config and folded float32 weights (see :func:`weight_shapes`)."""

    config: LMUFormerConfig
    weights: dict[str, np.ndarray]

    def __post_init__(self) -> None:
        for name, shape in weight_shapes(self.config).items():
            if name not in self.weights:
                raise ModelFormatError(f"LMUFormer weights lack {name!r}; re-export the "
                                       "checkpoint with tools/train_kws.py")
            if tuple(self.weights[name].shape) != shape:
                raise ModelFormatError(f"LMUFormer weight {name!r} has shape "
                                       f"{self.weights[name].shape}, expected {shape}")

    def parameter_count(self) -> int:
        """Trainable parameters (the fixed Ā, B̄ and input normalization excluded)."""
        fixed = {"a_bar", "b_bar", "in_mean", "in_inv_std"}
        return int(sum(v.size for k, v in self.weights.items() if k not in fixed))

    def save(self, path: str | Path) -> None:
        """Write as .npz (weights plus the config as scalars)."""
        cfg = {f"cfg.{k}": np.asarray(v) for k, v in asdict(self.config).items()}
        np.savez(path, **cfg, **{k: v.astype(np.float32) for k, v in self.weights.items()})

    def widened(self, lmu_units: int, seed: int = 0, d_model: int | None = None
                ) -> LMUFormerWeights:
        """The same function, wider (a warm start with more capacity): ``lmu_units`` LMU
        channels and, when given, ``d_model`` model channels (the MLP's hidden layer grows with
        it, ``mlp_ratio`` × ``d_model``).

        New rows (what computes a new channel) are random at the trained rows' scale; new
        columns (what reads a new channel into an old one, or into a head) are zero. So every
        old channel and every output is unchanged until training gives the new channels a
        use, and the zero weights get gradients because the new channels are not zero."""
        cfg = self.config
        c_new = cfg.d_model if d_model is None else d_model
        for what, have, want in (("LMU", cfg.lmu_units, lmu_units),
                                 ("model", cfg.d_model, c_new)):
            if want < have:
                raise InputError(f"cannot widen a {have}-channel {what} width to {want} "
                                 "channels: give at least the checkpoint's count")
        extra = lmu_units - cfg.lmu_units
        w = {k: v.copy() for k, v in self.weights.items()}
        rng = np.random.default_rng(seed)

        def rows(name: str, n: int) -> None:  # n new output rows, random at the rows' scale
            a = w[name]
            new = rng.standard_normal((n, *a.shape[1:])) * float(a.std())
            w[name] = np.concatenate([a, new.astype(np.float32)])

        def zeros(name: str, n: int, axis: int) -> None:  # n new rows/columns of zeros
            a = w[name]
            pad = [(0, 0)] * a.ndim
            pad[axis] = (0, n)
            w[name] = np.pad(a, pad)

        rows("w_u", extra)
        zeros("b_u", extra, 0)
        # W_m's columns are unit-major (unit i's lmu_order memory coefficients together)
        zeros("w_m", extra * cfg.lmu_order, 1)
        dc = c_new - cfg.d_model
        if dc:
            dh = dc * cfg.mlp_ratio
            for name in ("w_embed", "w_m", "w_a", "w_1", "w_2"):
                rows(name, dh if name == "w_1" else dc)
            for name in ("b_embed", "b_h", "b_2"):
                zeros(name, dc, 0)
            zeros("b_1", dh, 0)
            # readers of the new channels get zero columns: W_u and W_a (of a0), W_1 (of
            # a1), the heads (of act(y2)); W_2 (of the new hidden units)
            for name in ("w_u", "w_a", "w_1", "w_o", *(("w_s",) if "w_s" in w else ())):
                zeros(name, dc, 1)
            zeros("w_2", dh, 1)
        return LMUFormerWeights(replace(cfg, lmu_units=lmu_units, d_model=c_new), w)

    @classmethod
    def load(cls, path: str | Path) -> LMUFormerWeights:
        """Read a file written by :meth:`save`."""
        p = Path(path)
        if not p.is_file():
            raise InputError(f"LMUFormer checkpoint {p} does not exist; train one with "
                             "tools/train_kws.py")
        import zipfile

        try:
            if not zipfile.is_zipfile(p):
                raise ValueError("not a .npz archive")
            with np.load(p) as z:
                cfg_kw = {k[4:]: z[k].item() for k in z.files if k.startswith("cfg.")}
                w = {k: z[k].astype(np.float32) for k in z.files if not k.startswith("cfg.")}
            if not cfg_kw:
                raise ValueError("it holds no config (cfg.*)")
            cfg = LMUFormerConfig(**cfg_kw)
        except (ValueError, OSError, TypeError, AttributeError, zipfile.BadZipFile) as e:
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ModelFormatError(f"{p} is not an LMUFormer checkpoint ({reason}); give a "
                                   ".npz written by tools/train_kws.py") from None
        return cls(cfg, w)


def macs_per_frame(cfg: LMUFormerConfig) -> dict[str, int]:
    """Multiply-accumulates of one step per layer (weights × inputs; LIF and adds excluded).

    In the spiking variant the inputs of ``u``, ``lmu_in``, ``mix_1``, ``mix_2`` and ``head``
    are 0/1 spikes, so on an event-driven device those are accumulates, scaled by spike rate.
    """
    c, mu, d, h = cfg.d_model, cfg.lmu_units, cfg.lmu_order, cfg.d_model * cfg.mlp_ratio
    return {"embed": c * CONV_KERNEL * cfg.n_mels, "u": mu * c, "memory": mu * d * (d + 1),
            "lmu_in": c * (mu * d + c), "mix_1": h * c, "mix_2": c * h,
            "head": cfg.n_classes * c,
            **({"stream_head": cfg.n_classes * c} if cfg.stream_head else {})}


def initial_state(cfg: LMUFormerConfig, batch: int = 1) -> dict[str, np.ndarray]:
    """All-zero state (the start of a stream), for ``batch`` independent streams."""
    return {k: np.zeros((batch, s[1]), np.float32) for k, s in state_shapes(cfg).items()}


def _lif(x: np.ndarray, v: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    h = np.float32(0.5) * (v + x)  # τ = 2: H = V + (X − V)/τ
    s = (h >= np.float32(threshold)).astype(np.float32)
    return s, h - h * s


def lmuformer_step(model: LMUFormerWeights, x: np.ndarray, state: dict[str, np.ndarray],
                   head: str = "clip"
                   ) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """One frame in float32 NumPy: ``(logits [B, K], next state, activations per site)``.

    ``x`` is ``[n_mels]`` or ``[B, n_mels]``; the state holds ``B`` rows (:func:`initial_state`).
    ``head``: ``"clip"`` (``W_o``, every model) or ``"stream"`` (``W_s``, a model with
    ``config.stream_head``).
    """
    cfg, w = model.config, model.weights
    if head not in ("clip", "stream") or (head == "stream" and not cfg.stream_head):
        raise InputError(f"head {head!r}: this model has " + (
            "'clip' and 'stream'" if cfg.stream_head else "only 'clip'"))
    x = np.asarray(x, np.float32).reshape(-1, cfg.n_mels)
    batch = x.shape[0]
    nxt: dict[str, np.ndarray] = {}
    acts: dict[str, np.ndarray] = {}

    def act(site: str, threshold: float, v: np.ndarray) -> np.ndarray:
        if cfg.spiking:
            s, nxt[site] = _lif(v, state[site], threshold)
        else:
            s = np.maximum(v, np.float32(0))
        acts[site] = s
        return s

    xn = (x - w["in_mean"]) * w["in_inv_std"]
    window = np.concatenate([state["conv"], xn], axis=1)
    nxt["conv"] = window[:, cfg.n_mels:]
    e = window @ w["w_embed"].T + w["b_embed"]
    a0 = act("v_embed", LIF_THRESHOLD, e)
    u = act("v_u", LIF_THRESHOLD_U, a0 @ w["w_u"].T + w["b_u"])
    m = state["memory"].reshape(batch, cfg.lmu_units, cfg.lmu_order)
    m = m @ w["a_bar"].T + u.reshape(batch, cfg.lmu_units, 1) @ w["b_bar"].T
    nxt["memory"] = m.reshape(batch, -1)
    y1 = e + act("v_lmu", LIF_THRESHOLD, nxt["memory"] @ w["w_m"].T + a0 @ w["w_a"].T
                 + w["b_h"])
    a1 = act("v_mix_in", LIF_THRESHOLD, y1)
    a2 = act("v_mix_hidden", LIF_THRESHOLD, a1 @ w["w_1"].T + w["b_1"])
    y2 = y1 + a2 @ w["w_2"].T + w["b_2"]
    wo, bo = (w["w_s"], w["b_s"]) if head == "stream" else (w["w_o"], w["b_o"])
    logits = act("v_head", LIF_THRESHOLD, y2) @ wo.T + bo
    return logits.astype(np.float32), nxt, acts


def running_mean_logits(frame_logits: np.ndarray) -> np.ndarray:
    """Running mean over frames (axis −2): ``out[t] = mean(frame_logits[..., :t+1, :])``."""
    z = np.asarray(frame_logits, np.float64)
    t = np.arange(1, z.shape[-2] + 1, dtype=np.float64)[:, None]
    return np.cumsum(z, axis=-2) / t


def run_clip(model: LMUFormerWeights, features: np.ndarray) -> np.ndarray:
    """Frame logits ``[T, K]`` for features ``[T, n_mels]`` by stepping from the zero state."""
    return run_clips(model, np.asarray(features)[None])[0]


def run_clips(model: LMUFormerWeights, features: np.ndarray) -> np.ndarray:
    """Frame logits ``[N, T, K]`` for ``N`` clips ``[N, T, n_mels]``, stepped side by side."""
    feats = np.asarray(features, np.float32)
    state = initial_state(model.config, batch=feats.shape[0])
    out = []
    for t in range(feats.shape[1]):
        logits, state, _ = lmuformer_step(model, feats[:, t], state)
        out.append(logits)
    return np.stack(out, axis=1)


def heaviside_hard_sigmoid(threshold: float) -> dict[str, float]:
    """HardSigmoid attributes that make it the exact step ``[h ≥ threshold]`` in float32.

    ``max(0, min(1, α·h + β))`` with ``α = 2^24/th``, ``β = 1 − 2^24``: for a power-of-two
    ``th``, ``α·h`` is an exact integer for every float32 ``h`` in ``[th/2, 2·th)``, so
    ``h = th`` gives exactly 1 and the next float32 below ``th`` gives exactly 0 (further
    away the clamp decides). The step thus needs no comparison op, and the integer lowering
    turns it into one 256-entry lookup table (QLut), like any unary function.
    """
    mant, _ = np.frexp(threshold)
    if threshold <= 0 or mant != 0.5:
        raise ValueError(f"LIF threshold {threshold} must be a positive power of two for the "
                         "exact HardSigmoid step")
    return {"alpha": float(2.0**24 / threshold), "beta": float(1.0 - 2.0**24)}


def step_calibration_data(model: LMUFormerWeights, features: np.ndarray
                          ) -> dict[str, np.ndarray]:
    """Inputs the step graph sees while streaming ``features [N, T, n_mels]`` from zero state.

    Returns ``{input name: [N·T, 1, dim]}`` (sample axis first, each sample one batch-1 step
    input), the calibration set for quantizing the graph of :func:`build_step_onnx`.
    """
    feats = np.asarray(features, np.float32)
    state = initial_state(model.config, batch=feats.shape[0])
    rows: dict[str, list[np.ndarray]] = {"x": [], **{f"state_{k}": [] for k in state}}
    for t in range(feats.shape[1]):
        rows["x"].append(feats[:, t])
        for k, v in state.items():
            rows[f"state_{k}"].append(v)
        _, state, _ = lmuformer_step(model, feats[:, t], state)
    return {k: np.concatenate(v)[:, None, :] for k, v in rows.items()}


def build_step_onnx(model: LMUFormerWeights, name: str = "lmuformer_kws_step",
                    batch: int | None = 1):
    """The single-step ONNX graph of :func:`lmuformer_step` (opset 17).

    ``batch`` fixes the leading dimension (1: one stream, what a device runs); ``None`` leaves
    it symbolic (``"batch"``) so many streams can be stepped side by side.
    Inputs: ``x [batch, n_mels]`` then ``state_<name>`` for each state; outputs: ``logits [1, K]``
    (the clip head), ``stream_logits [1, K]`` (only with ``config.stream_head``), then
    ``state_<name>_next`` in the same order. Ops: Add, Mul, MatMul, Gemm, Concat, Slice,
    Reshape, Identity and Relu (non-spiking) or HardSigmoid as the exact spike step and Sub
    (LIF, spiking; see :func:`heaviside_hard_sigmoid`).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    cfg, w = model.config, model.weights
    nodes: list = []
    inits: list = []
    counter = [0]

    def const(arr: np.ndarray, hint: str) -> str:
        counter[0] += 1
        nm = f"{hint}_{counter[0]}"
        inits.append(numpy_helper.from_array(np.asarray(arr), nm))
        return nm

    def op(kind: str, inputs: list[str], out: str | None = None, **attrs) -> str:
        counter[0] += 1
        o = out or f"{kind.lower()}_{counter[0]}"
        nodes.append(helper.make_node(kind, inputs, [o], name=f"{kind}_{counter[0]}", **attrs))
        return o

    def linear(x: str, wname: str, bname: str | None) -> str:
        ins = [x, const(w[wname].astype(np.float32), wname)]
        if bname:
            ins.append(const(w[bname].astype(np.float32), bname))
        return op("Gemm", ins, transB=1)

    def act(site: str, threshold: float, v: str) -> str:
        if not cfg.spiking:
            return op("Relu", [v])
        half = const(np.float32(0.5), "half")
        h = op("Mul", [op("Add", [f"state_{site}", v]), half])
        spike = op("HardSigmoid", [h], **heaviside_hard_sigmoid(threshold))
        op("Sub", [h, op("Mul", [h, spike])], out=f"state_{site}_next")
        return spike

    xn = op("Mul", [op("Add", ["x", const(-w["in_mean"], "neg_in_mean")]),
                    const(w["in_inv_std"], "in_inv_std")])
    window = op("Concat", ["state_conv", xn], axis=1)
    k = CONV_KERNEL * cfg.n_mels
    op("Slice", [window, const(np.array([cfg.n_mels], np.int64), "start"),
                 const(np.array([k], np.int64), "end"), const(np.array([1], np.int64), "axis")],
       out="state_conv_next")
    e = linear(window, "w_embed", "b_embed")
    a0 = act("v_embed", LIF_THRESHOLD, e)
    u = act("v_u", LIF_THRESHOLD_U, linear(a0, "w_u", "b_u"))
    m = op("Reshape", ["state_memory", const(np.array([-1, cfg.lmu_units, cfg.lmu_order],
                                                      np.int64), "shape")])
    u_col = op("Reshape", [u, const(np.array([-1, cfg.lmu_units, 1], np.int64), "shape")])
    m_next = op("Add", [op("MatMul", [m, const(w["a_bar"].T.astype(np.float32), "a_bar_t")]),
                        op("MatMul", [u_col, const(w["b_bar"].T.astype(np.float32),
                                                   "b_bar_t")])])
    op("Reshape", [m_next, const(np.array([-1, cfg.lmu_units * cfg.lmu_order], np.int64),
                                 "shape")], out="state_memory_next")
    h_pre = op("Add", [linear("state_memory_next", "w_m", "b_h"), linear(a0, "w_a", None)])
    y1 = op("Add", [e, act("v_lmu", LIF_THRESHOLD, h_pre)])
    a1 = act("v_mix_in", LIF_THRESHOLD, y1)
    a2 = act("v_mix_hidden", LIF_THRESHOLD, linear(a1, "w_1", "b_1"))
    y2 = op("Add", [y1, linear(a2, "w_2", "b_2")])
    v_head = act("v_head", LIF_THRESHOLD, y2)
    op("Identity", [linear(v_head, "w_o", "b_o")], out="logits")
    if cfg.stream_head:
        op("Identity", [linear(v_head, "w_s", "b_s")], out="stream_logits")

    shapes = state_shapes(cfg)
    b = batch if batch is not None else "batch"
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [b, cfg.n_mels])]
    inputs += [helper.make_tensor_value_info(f"state_{s}", TensorProto.FLOAT, [b, shp[1]])
               for s, shp in shapes.items()]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [b, cfg.n_classes])]
    if cfg.stream_head:
        outputs.append(helper.make_tensor_value_info("stream_logits", TensorProto.FLOAT,
                                                     [b, cfg.n_classes]))
    outputs += [helper.make_tensor_value_info(f"state_{s}_next", TensorProto.FLOAT, [b, shp[1]])
                for s, shp in shapes.items()]
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=inits)
    m_proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                producer_name="edge-sdk")
    m_proto.ir_version = 8
    onnx.checker.check_model(m_proto)
    return m_proto
