"""Train the LMUFormer-style keyword spotter (spiking or not) and export checkpoint + ONNX step.

Needs the ``train`` extra (``pip install torch==2.13.0``). Data: tools/kws_dataset.py (generated
on demand and cached under data/kws). Features: the SDK's integer log-mel front end
(sdk.audio.logmel), the same bits the device computes, divided by 256 (log2 units).

Training is parallel over time: the causal conv is a left-padded Conv1d, the LMU memory is the
convolution of ``u`` with the impulse response ``Ā^k·B̄`` (equal to stepping
``m_t = Ā·m_{t−1} + B̄·u_t`` from zero), LIF neurons loop over the 100 frames with an arctan
surrogate gradient. The loss is the cross-entropy of the running-mean logits at the last frame
(the mean of all frame logits). Batch norms are folded at export into
``sdk.models.lmuformer.LMUFormerWeights``, written as ``<out>/<name>.npz`` and the single-step
ONNX graph ``<out>/<name>.onnx``; the script then checks that stepping the exported model
frame by frame (NumPy) reproduces the torch logits.

Usage::

    python tools/train_kws.py --variant spiking --epochs 30 --out samples/kws/models

``--init CKPT.npz`` warm-starts from a trained checkpoint (e.g. the spiking variant from the
non-spiking one: same linear maps, batch norms matched to its pre-activation statistics);
``--time-budget S`` stops after the epoch that ends past S seconds, keeping the best epoch.
``--surrogate-alpha A`` sets the sharpness of the spiking model's arctan surrogate gradient
(training only; the exported model does not depend on it). ``--swa N`` averages the weights
of the last N epochs (stochastic weight averaging; batch-norm statistics re-measured over the
training clips) and keeps the average where it beats the best epoch on validation; with
``--init CKPT.npz --schedule constant`` it continues a trained model at a constant rate.

Streaming fine-tune (``--streams DIR``, tools/kws_stream_data.py): each epoch mixes clip batches
(the clip loss above, plus hard-negative clips of near-miss words labelled ``_unknown_``) with
batches of 2 s windows cut from the continuous training streams, scored per frame: frames from
50 ms before a keyword's end to ``--pos-hops`` after it are that keyword (cross-entropy);
every frame of keyword-free speech away from a keyword is "no keyword"
(``−log(p_unknown + p_silence)``); the first ``WARMUP`` frames of a window (state still filling)
and the inside of a keyword are not scored. ``--mine CKPT.npz`` adds windows ending where that
model raised false alarms on the keyword-free training streams (negatives mined from the
previous round's false alarms). ``--stream-rounds R ...`` pools fresh draws of training
streams (``kws_stream_data.py --train-round R``: a model that has seen round 0 meets new ones);
``--window-specaug`` masks the stream windows as the clips are. Selection: validation clip
accuracy plus stream recall/false alarms on validation streams (``select_score``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import kws_dataset
import kws_stream_data

from sdk.models.lmuformer import (
    ACT_SITES,
    CONV_KERNEL,
    LMUFormerConfig,
    LMUFormerWeights,
    build_step_onnx,
    lmu_matrices,
    run_clip,
    running_mean_logits,
)

try:
    import torch
    from torch import nn
except ImportError as exc:  # pragma: no cover - depends on the extra
    raise SystemExit("tools/train_kws.py needs torch: .venv/bin/pip install torch==2.13.0 "
                     "(the project's `train` extra)") from exc


# ---------------------------------------------------------------- model
SURROGATE_ALPHA = 2.0


def surrogate_grad(x: torch.Tensor, alpha: float = SURROGATE_ALPHA) -> torch.Tensor:
    """Arctan surrogate of the Heaviside derivative: ``α/2 / (1 + (π/2·α·x)²)`` (default
    α = 2; a smaller α is wider and flatter: gradient reaches neurons far from threshold)."""
    return (alpha / 2) / (1 + (math.pi / 2 * alpha * x) ** 2)


class LIFFunction(torch.autograd.Function):
    """LIF over ``[B, T, C]`` with hand-written backpropagation through time.

    Forward: ``H_t = (V_{t−1} + X_t)/2``, ``S_t = [H_t ≥ th]``, ``V_t = H_t·(1 − S_t)``.
    Backward (reset detached, surrogate ``σ'``): ``∂L/∂H_t = ∂L/∂S_t·σ'(H_t − th)
    + ∂L/∂V_t·(1 − S_t)``, ``∂L/∂X_t = ∂L/∂V_{t−1} = ∂L/∂H_t / 2``. One loop each way, no
    autograd graph per step: several times faster than unrolling with autograd.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, threshold: float,
                alpha: float = SURROGATE_ALPHA) -> torch.Tensor:
        xt = x.transpose(0, 1).contiguous()  # [T, B, C]: each step a contiguous slice
        v = torch.zeros_like(xt[0])
        h_all = torch.empty_like(xt)
        s_all = torch.empty_like(xt)
        for t in range(xt.shape[0]):
            h = torch.add(v, xt[t], out=h_all[t]).mul_(0.5)
            s = torch.ge(h, threshold)
            s_all[t] = s
            v = h * ~s
        ctx.save_for_backward(h_all, s_all)
        ctx.threshold = threshold
        ctx.alpha = alpha
        return s_all.transpose(0, 1)

    @staticmethod
    def backward(ctx, grad_s: torch.Tensor):
        h_all, s_all = ctx.saved_tensors
        gs = grad_s.transpose(0, 1).contiguous() * surrogate_grad(h_all - ctx.threshold,
                                                                    ctx.alpha)
        keep = 1 - s_all
        grad_h = torch.empty_like(gs)
        g = torch.zeros_like(gs[0])
        for t in range(gs.shape[0] - 1, -1, -1):
            g = torch.addcmul(gs[t], g, keep[t], out=grad_h[t])
            g = 0.5 * g
        return 0.5 * grad_h.transpose(0, 1), None, None


class LIF(nn.Module):
    """LIF, τ = 2, hard reset to 0, threshold ``th``, over ``[B, T, C]``; ``alpha``: the
    surrogate gradient's sharpness (training only: the forward pass does not depend on it)."""

    def __init__(self, threshold: float, alpha: float = SURROGATE_ALPHA) -> None:
        super().__init__()
        self.threshold = threshold
        self.alpha = alpha

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return LIFFunction.apply(x, self.threshold, self.alpha)


class FrameBN(nn.BatchNorm1d):
    """BatchNorm over the channel axis of ``[B, T, C]``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.reshape(-1, x.shape[-1])).reshape(x.shape)


class KWSNet(nn.Module):
    """Training form of sdk.models.lmuformer (same equations, parallel over time, with BN)."""

    def __init__(self, cfg: LMUFormerConfig, in_mean: np.ndarray, in_std: np.ndarray,
                 frames: int = 100, surrogate_alpha: float = SURROGATE_ALPHA) -> None:
        super().__init__()
        self.cfg = cfg
        c, mu, d, h = cfg.d_model, cfg.lmu_units, cfg.lmu_order, cfg.d_model * cfg.mlp_ratio
        self.register_buffer("in_mean", torch.tensor(in_mean, dtype=torch.float32))
        self.register_buffer("in_inv_std", torch.tensor(1.0 / in_std, dtype=torch.float32))
        self.embed = nn.Conv1d(cfg.n_mels, c, CONV_KERNEL)
        self.bn_embed = FrameBN(c)
        self.w_u = nn.Linear(c, mu)
        self.bn_u = FrameBN(mu)
        self.w_m = nn.Linear(mu * d, c)
        self.w_a = nn.Linear(c, c, bias=False)
        self.bn_h = FrameBN(c)
        self.w_1 = nn.Linear(c, h)
        self.bn_1 = FrameBN(h)
        self.w_2 = nn.Linear(h, c)
        self.bn_2 = FrameBN(c)
        self.w_o = nn.Linear(c, cfg.n_classes)
        #: the second (stream) head on the same activations, cfg.stream_head only
        self.w_s = nn.Linear(c, cfg.n_classes) if cfg.stream_head else None
        self.acts = nn.ModuleDict({site: (LIF(th, surrogate_alpha) if cfg.spiking else nn.ReLU())
                                   for site, th in ACT_SITES})
        a_bar, b_bar = lmu_matrices(cfg.lmu_order, cfg.lmu_theta)
        self.register_buffer("a_bar", torch.tensor(a_bar, dtype=torch.float32))
        self.register_buffer("b_bar", torch.tensor(b_bar, dtype=torch.float32))
        # impulse response H[k] = Ā^k B̄ (float64 powers), as a grouped causal conv kernel
        resp = np.zeros((frames, d))
        m = b_bar[:, 0].copy()
        for k in range(frames):
            resp[k] = m
            m = a_bar @ m
        kern = np.tile(resp[::-1].T[None], (mu, 1, 1)).reshape(mu * d, 1, frames)
        self.register_buffer("lmu_kernel", torch.tensor(kern.copy(), dtype=torch.float32))
        self.record_rates = False
        self.rates: dict[str, float] = {}
        #: ReLU→LIF annealing (spiking nets, training only): None = pure LIF; β in [0, 1) =
        #: ``β·LIF(x) + (1 − β)·ReLU(x)``
        self.blend: float | None = None

    def _act(self, site: str, x: torch.Tensor) -> torch.Tensor:
        s = self.acts[site](x)
        if self.cfg.spiking and self.blend is not None and self.blend < 1.0:
            s = self.blend * s + (1.0 - self.blend) * torch.relu(x)
        if self.record_rates:
            self.rates[site] = float((s > 0).float().mean())
        return s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features ``[B, T, n_mels]`` → frame logits ``[B, T, K]`` (the clip head)."""
        return self.w_o(self.trunk(x))

    def forward_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(clip head, stream head or None) frame logits ``[B, T, K]``, one trunk pass."""
        h = self.trunk(x)
        return self.w_o(h), (self.w_s(h) if self.w_s is not None else None)

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """Features ``[B, T, n_mels]`` → the heads' input ``act(y2)`` ``[B, T, d_model]``."""
        cfg = self.cfg
        t = x.shape[1]
        xn = ((x - self.in_mean) * self.in_inv_std).transpose(1, 2)
        xn = nn.functional.pad(xn, (CONV_KERNEL - 1, 0))  # causal: zero (normalized) history
        e = self.bn_embed(self.embed(xn).transpose(1, 2))
        a0 = self._act("v_embed", e)
        u = self._act("v_u", self.bn_u(self.w_u(a0)))
        kern = self.lmu_kernel[..., -t:]
        m = nn.functional.conv1d(nn.functional.pad(u.transpose(1, 2), (t - 1, 0)), kern,
                                 groups=cfg.lmu_units).transpose(1, 2)  # [B, T, mu·d]
        y1 = e + self._act("v_lmu", self.bn_h(self.w_m(m) + self.w_a(a0)))
        a1 = self._act("v_mix_in", y1)
        a2 = self._act("v_mix_hidden", self.bn_1(self.w_1(a1)))
        y2 = y1 + self.bn_2(self.w_2(a2))
        return self._act("v_head", y2)


def _fold(w: torch.Tensor, bias: torch.Tensor | None, bn: nn.BatchNorm1d
          ) -> tuple[np.ndarray, np.ndarray]:
    g = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    b = bias if bias is not None else torch.zeros_like(bn.running_mean)
    wf = w * g[:, None]
    bf = (b - bn.running_mean) * g + bn.bias
    return wf.detach().numpy().astype(np.float32), bf.detach().numpy().astype(np.float32)


def export_weights(net: KWSNet) -> LMUFormerWeights:
    """Fold the batch norms into the linear maps: ``W' = W·γ/σ``, ``b' = (b − μ)·γ/σ + β``."""
    cfg = net.cfg
    w: dict[str, np.ndarray] = {}
    w["in_mean"] = net.in_mean.numpy().copy()
    w["in_inv_std"] = net.in_inv_std.numpy().copy()
    conv = net.embed.weight.permute(0, 2, 1).reshape(cfg.d_model, -1)  # [C, k·F], frame-major
    w["w_embed"], w["b_embed"] = _fold(conv, net.embed.bias, net.bn_embed)
    w["w_u"], w["b_u"] = _fold(net.w_u.weight, net.w_u.bias, net.bn_u)
    w["w_m"], w["b_h"] = _fold(net.w_m.weight, net.w_m.bias, net.bn_h)
    w["w_a"], _ = _fold(net.w_a.weight, None, net.bn_h)
    w["w_1"], w["b_1"] = _fold(net.w_1.weight, net.w_1.bias, net.bn_1)
    w["w_2"], w["b_2"] = _fold(net.w_2.weight, net.w_2.bias, net.bn_2)
    w["w_o"] = net.w_o.weight.detach().numpy().copy()
    w["b_o"] = net.w_o.bias.detach().numpy().copy()
    if net.w_s is not None:
        w["w_s"] = net.w_s.weight.detach().numpy().copy()
        w["b_s"] = net.w_s.bias.detach().numpy().copy()
    w["a_bar"] = net.a_bar.numpy().copy()
    w["b_bar"] = net.b_bar.numpy().copy()
    return LMUFormerWeights(cfg, w)


BN_NAMES = ("bn_embed", "bn_u", "bn_h", "bn_1", "bn_2")


def _load_folded(net: KWSNet, model: LMUFormerWeights) -> None:
    """Copy the folded maps ``W'``, ``b'`` of ``model`` into the linear layers of ``net``."""
    w = {k: torch.tensor(v) for k, v in model.weights.items()}
    c = net.cfg.d_model
    with torch.no_grad():
        net.in_mean.copy_(w["in_mean"])
        net.in_inv_std.copy_(w["in_inv_std"])
        net.embed.weight.copy_(w["w_embed"].reshape(c, CONV_KERNEL, -1).permute(0, 2, 1))
        net.embed.bias.copy_(w["b_embed"])
        for lin, wk, bk in ((net.w_u, "w_u", "b_u"), (net.w_m, "w_m", "b_h"),
                            (net.w_1, "w_1", "b_1"), (net.w_2, "w_2", "b_2"),
                            (net.w_o, "w_o", "b_o")):
            lin.weight.copy_(w[wk])
            lin.bias.copy_(w[bk])
        net.w_a.weight.copy_(w["w_a"])
        if net.w_s is not None:  # a stream head: the checkpoint's own, else the clip head's
            net.w_s.weight.copy_(w["w_s"] if "w_s" in w else w["w_o"])
            net.w_s.bias.copy_(w["b_s"] if "b_s" in w else w["b_o"])


def _calibrate_bns(net: KWSNet, x: np.ndarray,
                   target: dict[str, tuple[torch.Tensor, torch.Tensor]] | None) -> dict:
    """One training-mode pass over ``x``; before each batch norm runs (forward order), set
    ``γ``, ``β`` so its output has per-channel mean/std ``target[name]`` (default: those of its
    input, i.e. the identity), running statistics = the batch's. Returns the output stats."""
    out: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def pre(name: str, bn: nn.BatchNorm1d, args: tuple) -> None:
        z = args[0].reshape(-1, args[0].shape[-1])
        mu, var = z.mean(0), z.var(0, unbiased=False)
        t_mu, t_sd = mu, torch.sqrt(var + bn.eps)
        if target:  # a widened layer's new channels (past the target's) stay the identity
            k = len(target[name][0])
            t_mu = torch.cat([target[name][0], t_mu[k:]])
            t_sd = torch.cat([target[name][1], t_sd[k:]])
        bn.weight.copy_(t_sd)
        bn.bias.copy_(t_mu)
        bn.running_mean.copy_(mu)
        bn.running_var.copy_(var)
        out[name] = (t_mu, t_sd)

    hooks = [getattr(net, n).register_forward_pre_hook(
        lambda bn, args, n=n: pre(n, bn, args)) for n in BN_NAMES]
    net.train()
    with torch.no_grad():
        net(torch.from_numpy(x))
    for h in hooks:
        h.remove()
    return out


def warm_start(net: KWSNet, model: LMUFormerWeights, x: np.ndarray) -> None:
    """Initialise ``net`` from a folded checkpoint (typically the non-spiking one).

    The folded maps ``W'``, ``b'`` go into the linear layers of a reference net of the
    checkpoint's own variant whose batch norms are the identity on the batch ``x``
    (``γ = sqrt(σ²_batch + ε)``, ``β = μ_batch``): it reproduces the checkpoint. ``net`` gets
    the same linear maps, and each of its batch norms is set, in forward order, so that its
    output on ``x`` has the per-channel mean and std of the reference's (``γ = σ_ref``,
    ``β = μ_ref``): a spiking net then sees pre-activations distributed like the ReLU net's.
    """
    cfg, mc = net.cfg, model.config
    shape = ("n_mels", "n_classes", "lmu_order", "mlp_ratio")
    if (any(getattr(cfg, k) != getattr(mc, k) for k in shape) or cfg.lmu_units < mc.lmu_units
            or cfg.d_model < mc.d_model):
        raise SystemExit(f"--init checkpoint config {mc} does not match {cfg}; train with at "
                         "least its --d-model and --lmu-units or pass a matching checkpoint")
    ref = KWSNet(mc, net.in_mean.numpy(), 1.0 / net.in_inv_std.numpy(), frames=x.shape[1])
    _load_folded(ref, model)
    stats = _calibrate_bns(ref, x, None)
    # more LMU or model channels than the checkpoint: the same function, widened (new BN
    # channels stay the identity on x)
    wider = cfg.lmu_units > mc.lmu_units or cfg.d_model > mc.d_model
    _load_folded(net, model.widened(cfg.lmu_units, d_model=cfg.d_model) if wider else model)
    _calibrate_bns(net, x, stats)


# ---------------------------------------------------------------- training
def evaluate(net: KWSNet, x: np.ndarray, y: np.ndarray, batch: int = 256
             ) -> tuple[float, np.ndarray]:
    """Accuracy of the last-frame running mean and the frame logits ``[N, T, K]``."""
    net.eval()
    outs = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            outs.append(net(torch.from_numpy(x[i:i + batch])).numpy())
    logits = np.concatenate(outs)
    return float((logits.mean(axis=1).argmax(-1) == y).mean()), logits


def prefix_accuracy(frame_logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Accuracy of the running-mean prediction after each frame, ``[T]``."""
    rm = running_mean_logits(frame_logits)
    return (rm.argmax(-1) == y[:, None]).mean(axis=0)


def mel_warp(x: np.ndarray, rng: np.random.Generator, amount: float) -> np.ndarray:
    """Vocal-tract-length-style perturbation on log-mel features ``[N, T, F]``: each clip's
    spectrum is stretched along the mel axis by a factor drawn from ``[1 − amount,
    1 + amount]`` (bin ``f`` takes the value at ``f·α``, linear interpolation, edges held), a
    longer or shorter vocal tract than the voice's own."""
    if amount <= 0:
        return x
    n, _, f = x.shape
    alpha = rng.uniform(1.0 - amount, 1.0 + amount, n)
    pos = np.clip(np.arange(f)[None, :] * alpha[:, None], 0, f - 1)  # [N, F]
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, f - 1)
    w = (pos - lo).astype(np.float32)[:, None, :]
    take = np.take_along_axis
    return (take(x, lo[:, None, :].repeat(x.shape[1], 1), 2) * (1 - w)
            + take(x, hi[:, None, :].repeat(x.shape[1], 1), 2) * w).astype(x.dtype)


def spec_augment(x: np.ndarray, fill: np.ndarray, rng: np.random.Generator,
                 max_bins: int = 6, max_frames: int = 10) -> np.ndarray:
    """SpecAugment-style masking: one band of ≤ max_bins mel bins and one span of ≤ max_frames
    frames per clip are replaced by ``fill`` (the per-bin training mean)."""
    x = x.copy()
    n, t, f = x.shape
    for i in range(n):
        wb, wt = int(rng.integers(0, max_bins + 1)), int(rng.integers(0, max_frames + 1))
        b0, t0 = int(rng.integers(0, f - wb + 1)), int(rng.integers(0, t - wt + 1))
        x[i, :, b0:b0 + wb] = fill[b0:b0 + wb]
        x[i, t0:t0 + wt, :] = fill
    return x


def train(cfg: LMUFormerConfig, data: dict[str, tuple[np.ndarray, np.ndarray]], epochs: int,
          seed: int, lr: float = 3e-3, batch: int = 64, augment: bool = True, log=print,
          init: LMUFormerWeights | None = None, time_budget: float | None = None,
          anneal: float = 0.0, teacher: LMUFormerWeights | None = None,
          kd_weight: float = 0.5, kd_temp: float = 4.0,
          surrogate_alpha: float = SURROGATE_ALPHA, schedule: str = "onecycle",
          swa: int = 0) -> tuple[KWSNet, dict]:
    """Train; keep the weights of the best validation epoch (or of the weight average).

    ``init``: warm-start from this folded checkpoint (see :func:`warm_start`).
    ``anneal`` (spiking only): over the first ``anneal`` fraction of the optimizer steps each
    activation is ``β·LIF(x) + (1 − β)·ReLU(x)`` with β ramped linearly from 0 to 1 by step
    count (reproducible, no wall clock); only epochs that end at β = 1 (pure LIF, what is
    exported) compete for the best validation epoch.
    ``time_budget``: stop after the first epoch that ends past this many seconds (the best
    validation epoch so far is kept).
    ``teacher`` (knowledge distillation, e.g. the non-spiking checkpoint for a spiking
    student): the loss is ``(1 − kd_weight)·CE + kd_weight·T²·KL(teacher ‖ student)`` on the
    clip-mean logits softened by ``T = kd_temp``, the teacher seeing the same augmented batch.
    ``surrogate_alpha`` (spiking): the LIF surrogate gradient's sharpness (:func:`surrogate_grad`).
    ``schedule``: ``onecycle`` (warm-up to ``lr``, cosine down to ~0), ``constant`` (a
    one-epoch linear warm-up, then ``lr`` throughout: for continuing a trained ``init`` with
    weight averaging) or ``cosine`` (the one-epoch warm-up, then a cosine decay from ``lr`` to
    0: for continuing a trained ``init`` down to a low rate).
    ``swa`` > 0 (stochastic weight averaging): the parameters at the end of each of the last
    ``swa`` epochs (pure LIF ones) are averaged, the batch norms' running statistics are then
    measured afresh over the training clips (no augmentation), and the average is kept if its
    validation accuracy beats the best single epoch's (both are recorded).
    """
    if schedule not in ("onecycle", "constant", "cosine"):
        raise ValueError(f"schedule {schedule!r}: onecycle, constant or cosine")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    xtr, ytr = data["train"]
    mean = xtr.reshape(-1, xtr.shape[-1]).mean(0).astype(np.float32)
    std = xtr.reshape(-1, xtr.shape[-1]).std(0) + 1e-3
    net = KWSNet(cfg, mean, std, frames=xtr.shape[1], surrogate_alpha=surrogate_alpha)
    if init is not None:
        warm_start(net, init, xtr[rng.permutation(len(xtr))[:512]])
        init_acc, _ = evaluate(net, *data["val"])
        log(f"warm start: val {init_acc * 100:.2f}% before training")
    teach = None
    if teacher is not None:
        teach = KWSNet(teacher.config, teacher.weights["in_mean"],
                       1.0 / teacher.weights["in_inv_std"], frames=xtr.shape[1])
        _load_folded(teach, teacher)  # batch norms the identity: the checkpoint's function
        _calibrate_bns(teach, xtr[rng.permutation(len(xtr))[:512]], None)
        teach.eval()
        t_acc, _ = evaluate(teach, *data["val"])
        log(f"teacher: val {t_acc * 100:.2f}% (distillation weight {kd_weight:g}, "
            f"temperature {kd_temp:g})")
    t_train = time.perf_counter()
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-3)
    steps = epochs * math.ceil(len(xtr) / batch)
    if schedule == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    else:
        warm = math.ceil(len(xtr) / batch)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda k: lr_factor(schedule, k, warm, steps))
    best = (-1.0, None, -1)
    avg: dict[str, torch.Tensor] | None = None
    n_avg = 0
    history = []
    ramp = round(anneal * steps) if cfg.spiking else 0
    step = 0
    for ep in range(epochs):
        net.train()
        t0 = time.perf_counter()
        order = rng.permutation(len(xtr))
        total = 0.0
        for i in range(0, len(order), batch):
            idx = order[i:i + batch]
            xb = spec_augment(xtr[idx], mean, rng) if augment else xtr[idx]
            net.blend = step / ramp if step < ramp else None
            logits = net(torch.from_numpy(xb))
            loss = nn.functional.cross_entropy(logits.mean(1), torch.from_numpy(ytr[idx]))
            if teach is not None:
                with torch.no_grad():
                    zt = teach(torch.from_numpy(xb)).mean(1)
                kd = nn.functional.kl_div(
                    nn.functional.log_softmax(logits.mean(1) / kd_temp, dim=-1),
                    nn.functional.log_softmax(zt / kd_temp, dim=-1), log_target=True,
                    reduction="batchmean") * kd_temp ** 2
                loss = (1.0 - kd_weight) * loss + kd_weight * kd
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            total += float(loss.detach()) * len(idx)
        beta = 1.0 if step >= ramp else step / ramp
        net.blend = None if beta >= 1.0 else beta
        val_acc, _ = evaluate(net, *data["val"])
        net.blend = None
        history.append({"epoch": ep + 1, "loss": total / len(xtr), "val_acc": val_acc,
                        "seconds": time.perf_counter() - t0,
                        **({"blend": round(beta, 4)} if ramp else {})})
        log(f"epoch {ep + 1:3d}  loss {total / len(xtr):.4f}  val {val_acc * 100:.2f}%  "
            + (f"β {beta:.3f}  " if ramp else "") + f"{time.perf_counter() - t0:.1f} s")
        if val_acc > best[0] and beta >= 1.0:
            best = (val_acc, {k: v.clone() for k, v in net.state_dict().items()}, ep + 1)
        if swa and ep >= epochs - swa and beta >= 1.0:
            params = {k: v.detach().clone() for k, v in net.named_parameters()}
            n_avg += 1
            avg = params if avg is None else {k: avg[k] + (params[k] - avg[k]) / n_avg
                                              for k in avg}
        if time_budget is not None and time.perf_counter() - t_train > time_budget:
            log(f"time budget {time_budget:.0f} s spent after epoch {ep + 1}; stopping")
            break
    if best[1] is None:
        raise SystemExit("training stopped before the ReLU→LIF blend reached pure LIF: raise "
                         "--time-budget or lower --anneal")
    info = {"history": history, "best_epoch": best[2], "best_val_acc": best[0]}
    if avg is not None:
        with torch.no_grad():
            for k, p in net.named_parameters():
                p.copy_(avg[k])
        _recompute_bn_stats(net, xtr)
        swa_acc, _ = evaluate(net, *data["val"])
        log(f"weight average of the last {n_avg} epochs: val {swa_acc * 100:.2f}% "
            f"(best single epoch {best[0] * 100:.2f}%, epoch {best[2]})")
        info["swa"] = {"epochs": n_avg, "val_acc": swa_acc}
        if swa_acc > best[0]:
            info["best_epoch"], info["best_val_acc"] = "swa", swa_acc
            return net, info
    net.load_state_dict(best[1])
    return net, info


def lr_factor(schedule: str, step: int, warm: int, steps: int) -> float:
    """The learning rate of optimizer step ``step`` (0-based) as a fraction of ``--lr`` for the
    ``constant`` and ``cosine`` schedules: a linear warm-up over ``warm`` steps, then 1
    (constant) or a cosine from 1 down to 0 at step ``steps`` (cosine)."""
    if step < warm:
        return (step + 1) / warm
    if schedule == "constant":
        return 1.0
    return 0.5 * (1.0 + math.cos(math.pi * min(step - warm, steps - warm) / max(steps - warm, 1)))


def _recompute_bn_stats(net: KWSNet, x: np.ndarray, batch: int = 256) -> None:
    """The batch norms' running mean and variance measured over all of ``x`` (training mode,
    cumulative averages): the statistics a weight average's own activations have."""
    bns = [getattr(net, n) for n in BN_NAMES]
    saved = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    net.train()
    with torch.no_grad():
        for i in range(0, len(x), batch):
            net(torch.from_numpy(x[i:i + batch]))
    for bn, m in zip(bns, saved):
        bn.momentum = m
    net.eval()


def check_export(model: LMUFormerWeights, net: KWSNet, x: np.ndarray, n: int = 8) -> float:
    """Max |frame logits| difference between stepping the export (NumPy) and torch."""
    net.eval()
    with torch.no_grad():
        ref = net(torch.from_numpy(x[:n])).numpy()
    return float(max(np.abs(run_clip(model, x[i]) - ref[i]).max() for i in range(n)))


def spike_rates(net: KWSNet, x: np.ndarray) -> dict[str, float]:
    """Fraction of non-zero activations per site on ``x``."""
    net.eval()
    net.record_rates = True
    with torch.no_grad():
        net(torch.from_numpy(x))
    net.record_rates = False
    return dict(net.rates)


# ---------------------------------------------------------------- streaming fine-tune
#: near misses of the keywords, said alone as "_unknown_" clips
#: (exact homophones are left out: espeak-ng says "know" as "no" and "write" as "right",
#: n'oU and r'aIt; a clip of one alone is the other's clip, so labelling it _unknown_ would
#: only teach the model to doubt "no" and "right")
NEAR_MISSES = ["now", "noise", "note", "nope", "gone", "going", "goat", "goal", "upon",
               "upper", "cup", "pup", "often", "office", "awful", "soft", "stopping", "stomp",
               "top", "stock", "shop", "lefty", "lift", "lest", "leaf", "bright",
               "night", "light", "ride", "yet", "yeah", "yellow", "yesterday", "dawn", "town",
               "done", "gown", "own", "in", "an", "of", "odd", "awe", "stay", "low", "toe"]
#: words espeak-ng pronounces exactly like a keyword (same phonemes), never hard negatives
HOMOPHONES = kws_stream_data.HOMOPHONES
WARMUP = 40  # frames of a window whose state is still filling: not scored
WINDOW = 200  # frames per stream window (2 s)
NEG = -1  # frame target "no keyword"
IGNORE = -100


def hard_negative_clips(n: int, seed: int, cache: Path) -> np.ndarray:
    """``n`` one-second clips of near-miss words by training voices (features ``[n, 100, 40]``),
    cached."""
    import hashlib

    words = hashlib.md5(" ".join(NEAR_MISSES).encode()).hexdigest()[:6]
    path = cache / f"hardneg_{seed}_{n}_{words}.npz"
    if path.is_file():
        with np.load(path) as z:
            return z["x"]
    from concurrent.futures import ThreadPoolExecutor

    from sdk.audio import logmel

    cfg = kws_dataset.DatasetConfig(seed=seed)
    speakers = kws_dataset.split_speakers(kws_dataset.list_variants(), cfg)["train"]
    rng = np.random.default_rng([seed, 31])
    specs = []
    for i in range(n):
        spk = speakers[int(rng.integers(len(speakers)))]
        acc = kws_dataset.ACCENTS[int(rng.integers(len(kws_dataset.ACCENTS)))]
        specs.append(kws_dataset.ClipSpec(
            label=kws_dataset.CLASSES.index(kws_dataset.UNKNOWN),
            word=NEAR_MISSES[i % len(NEAR_MISSES)], voice=f"{acc}+{spk}", speaker=spk,
            rate_wpm=int(rng.integers(120, 221)), pitch=int(rng.integers(20, 81)),
            amplitude=int(rng.integers(60, 181)), seed=(seed, 31, i)))
    with ThreadPoolExecutor(max_workers=2) as pool:
        audio = list(pool.map(kws_dataset.make_clip, specs))
    x = np.stack([logmel(a) for a in audio]).astype(np.float32) / 256.0
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, x=x)
    return x


class StreamWindows:
    """2 s windows cut from the continuous training streams with per-frame targets."""

    def __init__(self, folder: Path | list[Path], pos_hops: int = 40, split: str = "train",
                 pre_hops: int = 5, ignore_homophones: bool = False) -> None:
        """``folder``: one generated set, or several (rounds of training streams), pooled."""
        #: per stream, hop spans (start, end) of sentences holding "know" or "write": espeak-ng
        #: says them as "no" and "right", so "no keyword" there would fight the keyword frames
        self.homophones: list[tuple[int, int, int]] = []
        self.pos_hops = pos_hops
        self.pre_hops = pre_hops
        self.streams: list[np.ndarray] = []
        self.truth: list[list[tuple[int, int, int]]] = []
        self.free_ids: list[int] = []
        folders = [folder] if isinstance(folder, Path) else list(folder)
        for folder, kind in ((f, k) for f in folders for k in ("kw", "free")):
            if kind == "free" and not (folder / f"{split}_free_mixed.npz").is_file() \
                    and split == "train":
                continue  # keyword-free streams not generated yet: negatives from kw streams
            d = kws_stream_data.load(folder, split, kind, "mixed" if split == "train" else "snr10")
            off = d["offsets"]
            base = len(self.streams)
            for i in range(len(off) - 1):
                self.streams.append(d["feats"][off[i]:off[i + 1]])
                self.truth.append([])
                if kind == "free":
                    self.free_ids.append(base + i)
            if kind == "kw":
                for s, w, a, b in zip(d["ev_stream"], d["ev_word"], d["ev_start"], d["ev_end"]):
                    self.truth[base + int(s)].append((int(w), int(a * 100), int(b * 100)))
            if ignore_homophones:
                sp = kws_stream_data.spans(folder, split, kind)
                self.homophones += [(base + s, int(a * 100), int(b * 100) + self.pos_hops)
                                    for s, _, a, b in kws_stream_data.homophone_spans(sp)]
        self._homo: dict[int, list[tuple[int, int]]] = {}
        for sid, a, b in self.homophones:
            self._homo.setdefault(sid, []).append((a, b))
        self.events = [(i, k) for i, tr in enumerate(self.truth) for k in range(len(tr))]
        self.mined: list[tuple[int, int]] = []  # (stream, end frame)

    def _cut(self, sid: int, start: int) -> tuple[np.ndarray, np.ndarray]:
        s = self.streams[sid]
        start = int(np.clip(start, 0, len(s) - WINDOW))
        x = s[start:start + WINDOW].astype(np.float32) / 256.0
        y = np.full(WINDOW, NEG, np.int64)
        for w, a, b in self.truth[sid]:
            a, b = a - start, b - start
            if b + self.pos_hops + 30 < 0 or a >= WINDOW:
                continue
            c = b - self.pre_hops
            y[max(a, 0):max(min(c, WINDOW), 0)] = IGNORE
            y[max(c, 0):max(min(b + self.pos_hops, WINDOW), 0)] = w
            y[max(b + self.pos_hops, 0):max(min(b + self.pos_hops + 30, WINDOW), 0)] = IGNORE
        for a, b in self._homo.get(sid, ()):
            a, b = max(a - start, 0), min(b - start, WINDOW)
            if a < b:
                seg = y[a:b]
                seg[seg == NEG] = IGNORE
        y[:WARMUP] = IGNORE
        return x, y

    def batch(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Half keyword windows (a keyword ending 0.4–1.4 s in), a quarter keyword-free
        speech, a quarter mined false alarms (keyword-free speech while none are mined)."""
        xs, ys = [], []
        for j in range(n):
            r = j / n
            if r < 0.5:
                sid, k = self.events[int(rng.integers(len(self.events)))]
                end = self.truth[sid][k][2]
                x, y = self._cut(sid, end - int(rng.integers(WARMUP, WINDOW - self.pos_hops)))
            elif r < 0.75 or not self.mined:
                pool = self.free_ids or range(len(self.streams))
                sid = pool[int(rng.integers(len(pool)))]
                x, y = self._cut(sid, int(rng.integers(0, len(self.streams[sid]) - WINDOW)))
            else:
                sid, end = self.mined[int(rng.integers(len(self.mined)))]
                x, y = self._cut(sid, end - WINDOW + int(rng.integers(5, 60)))
            xs.append(x)
            ys.append(y)
        return np.stack(xs), np.stack(ys)

    def mine(self, model: LMUFormerWeights, threshold: float, smoothing: int = 30) -> int:
        """Record where ``model`` raises false alarms (smoothed keyword posterior ≥
        ``threshold``, refractory 1 s) on the keyword-free training streams."""
        import kws_stream_eval as ev

        streams = [self.streams[i] for i in self.free_ids]
        logits = ev.float_logits(model, streams)
        for sid, z in zip(self.free_ids, logits):
            score, best = ev.smoothed_keyword_scores(z, smoothing)
            for _, t in ev.detect(score, best, threshold, 100):
                self.mined.append((sid, round(t * 100)))
        return len(self.mined)


def stream_loss(logits: torch.Tensor, y: torch.Tensor, n_kw: int = 10, pool: int = 0,
                neg_margin: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(keyword loss, "no keyword" frames' −log p(not a keyword)).

    Keyword loss, ``pool`` = 0: the cross-entropy of every keyword frame. ``pool`` > 0
    (max-pooling over a smoothed posterior): per window, the keyword's posterior averaged
    over ``pool`` consecutive frames (the detector's moving average), at its best position
    inside the keyword region, ``−log`` of that; the model chooses when after the keyword it
    fires, which tolerates errors in the keyword's end time and does not ask it to be sure
    before the word is heard.

    "No keyword" loss, ``neg_margin`` = 0: ``−log(p_unknown + p_silence)`` per frame.
    ``neg_margin`` > 0: the hinge ``max(0, max_keyword z − max(z_unknown, z_silence) + margin)``
    per frame: every keyword logit at least ``margin`` under the best non-keyword logit, and no
    push beyond, so "no keyword" frames do not grow large non-keyword logits that would
    outweigh a keyword in the 1 s clip mean the clip accuracy is measured on."""
    logp = nn.functional.log_softmax(logits, dim=-1)
    pos = y >= 0
    neg = y == NEG
    zero = logits.sum() * 0.0
    if pool > 0:
        rows = pos.any(dim=1)
        if rows.any():
            p = logp.gather(2, y.clamp(min=0)[..., None])[..., 0].exp() * pos  # [B, T]
            sm = nn.functional.avg_pool1d(p[rows][:, None], pool, stride=1)[:, 0]
            lp = -torch.log(sm.max(dim=1).values + 1e-6).mean()
        else:
            lp = zero
    else:
        lp = -logp[pos].gather(1, y[pos][:, None]).mean() if pos.any() else zero
    if not neg.any():
        ln = zero
    elif neg_margin > 0:
        zn = logits[neg]
        ln = torch.relu(zn[:, :n_kw].max(dim=1).values - zn[:, n_kw:].max(dim=1).values
                        + neg_margin).mean()
    else:
        ln = -torch.logsumexp(logp[neg][:, n_kw:], dim=-1).mean()
    return lp, ln


def neg_peak_loss(logits: torch.Tensor, y: torch.Tensor, pool: int, n_kw: int = 10
                  ) -> torch.Tensor:
    """Max-pooling loss on the "no keyword" side: per window with such frames, the highest
    ``pool``-frame mean of the keyword posterior mass ``Σ_k p_k`` over them (other frames count
    0), ``−log(1 − that)``. The detector fires on the peak of a moving average, so this trains
    exactly the frames that would raise a false alarm, however few, where the per-frame loss
    averages them away among the easy ones."""
    neg = y == NEG
    rows = neg.any(dim=1)
    if not rows.any():
        return logits.sum() * 0.0
    mass = nn.functional.softmax(logits, dim=-1)[..., :n_kw].sum(dim=-1) * neg
    sm = nn.functional.avg_pool1d(mass[rows][:, None], max(pool, 1), stride=1)[:, 0]
    return -torch.log1p(-sm.max(dim=1).values.clamp(max=1.0 - 1e-6)).mean()


def train_streaming(cfg: LMUFormerConfig, data: dict, windows: StreamWindows,
                    hardneg: np.ndarray, init: LMUFormerWeights, steps: int, seed: int,
                    lr: float, clip_batch: int, window_batch: int, neg_weight: float,
                    time_budget: float | None, head_scale: float = 4.0,
                    pos_weight: float = 1.0, pool: int = 0, clip_weight: float = 1.0,
                    neg_margin: float = 0.0, clip_stream_weight: float = 0.0,
                    trunk_lr_scale: float = 1.0, log_every: int = 50, log=print,
                    warp: float = 0.0, neg_peak_weight: float = 0.0,
                    window_specaug: bool = False, anneal: float = 0.0
                    ) -> tuple[KWSNet, dict]:
    """Fine-tune ``init`` on clips + hard-negative clips + stream windows; keep the last.

    With ``cfg.stream_head`` the stream losses train the second head (started from the clip
    head / ``head_scale``) and the clip loss the clip head, both through the shared trunk;
    ``clip_stream_weight`` > 0 also gives the stream head the clips (a keyword clip: the
    keyword's best ``pool``-frame mean posterior anywhere after the warm-up; any other clip:
    every frame "no keyword"), many more voices than the streams. ``window_specaug``: the
    stream windows are masked as the clips are (:func:`spec_augment`, one mel band and one
    span of frames each), against memorizing the streams. ``anneal`` (spiking): over the first
    ``anneal`` fraction of the schedule's progress (steps, or the time budget when that runs out
    first, as for the learning rate) each activation is ``β·LIF + (1 − β)·ReLU`` with β ramped
    from 0 to 1; the rest of the run, and the weights kept, are pure LIF."""
    if anneal and not cfg.spiking:
        raise ValueError("anneal blends ReLU into LIF: it needs a spiking config")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    xtr, ytr = data["train"]
    unknown = kws_dataset.CLASSES.index(kws_dataset.UNKNOWN)
    xtr = np.concatenate([xtr, hardneg])
    ytr = np.concatenate([ytr, np.full(len(hardneg), unknown, ytr.dtype)])
    net = KWSNet(cfg, init.weights["in_mean"], 1.0 / init.weights["in_inv_std"], frames=WINDOW)
    if anneal:  # batch norms matched at β = 0: the blend starts from the checkpoint's function
        net.blend = 0.0
    warm_start(net, init, xtr[rng.permutation(len(xtr))[:512]])
    head = net.w_s if net.w_s is not None else net.w_o
    with torch.no_grad():  # the clip loss only sees the mean over frames: its frame logits
        head.weight /= head_scale  # are far too sharp per frame; a smaller head keeps
        head.bias /= head_scale  # every clip's argmax and starts the frame losses sane
    n_kw = len(kws_dataset.KEYWORDS)
    acc0, _ = evaluate(net, *data["val"])
    log(f"warm start: val clips {acc0 * 100:.2f}% (head / {head_scale:g}"
        + (", β 0)" if anneal else ")"))
    heads = [p for m in (net.w_o, net.w_s) if m is not None for p in m.parameters()]
    trunk = [p for p in net.parameters() if all(p is not q for q in heads)]
    opt = torch.optim.AdamW([{"params": trunk, "scale": trunk_lr_scale},
                             {"params": heads, "scale": 1.0}], lr=lr, weight_decay=1e-3)
    mean = init.weights["in_mean"]
    history = []
    t0 = time.perf_counter()
    run = {"clip": 0.0, "pos": 0.0, "neg": 0.0, "neg_peak": 0.0}
    done = 0
    for step in range(steps):
        # warm-up then cosine decay over the steps, or over the time budget when that runs
        # out first (so a run cut by the budget still ends at a low learning rate)
        progress = step / steps
        if time_budget is not None:
            progress = max(progress, (time.perf_counter() - t0) / time_budget)
        if progress >= 1.0:
            log(f"time budget {time_budget:.0f} s spent after step {step}; stopping")
            break
        for g in opt.param_groups:
            g["lr"] = g["scale"] * lr * min(1.0, progress / 0.05) * 0.5 * (
                1 + math.cos(math.pi * progress))
        net.blend = progress / anneal if progress < anneal else None
        net.train()
        for bn in BN_NAMES:  # batch norms frozen at the warm start's statistics: clip batches
            getattr(net, bn).eval()  # and stream windows differ, and a blend fits neither
        idx = rng.integers(0, len(xtr), clip_batch)
        xb = spec_augment(mel_warp(xtr[idx], rng, warp), mean, rng)
        zc, zcs = net.forward_heads(torch.from_numpy(xb))
        lc = nn.functional.cross_entropy(zc.mean(1), torch.from_numpy(ytr[idx]))
        xw, yw = windows.batch(window_batch, rng)
        xw = mel_warp(xw, rng, warp)
        if window_specaug:
            xw = spec_augment(xw, mean, rng)
        zw = net.forward_heads(torch.from_numpy(xw))
        lp, ln = stream_loss(zw[1] if zw[1] is not None else zw[0], torch.from_numpy(yw),
                             pool=pool, neg_margin=neg_margin)
        loss = clip_weight * lc + pos_weight * lp + neg_weight * ln
        lnp = loss * 0.0
        if neg_peak_weight > 0:
            lnp = neg_peak_loss(zw[1] if zw[1] is not None else zw[0], torch.from_numpy(yw),
                                pool)
            loss = loss + neg_peak_weight * lnp
        if clip_stream_weight > 0 and zcs is not None:
            yc = np.where(ytr[idx] < n_kw, ytr[idx], NEG)[:, None].repeat(xb.shape[1], 1)
            yc[:, :WARMUP // 2] = IGNORE
            lpc, lnc = stream_loss(zcs, torch.from_numpy(yc), pool=pool, neg_margin=neg_margin)
            loss = loss + clip_stream_weight * (pos_weight * lpc + neg_weight * lnc)
        opt.zero_grad()
        loss.backward()
        opt.step()
        done = step + 1
        for k, v in (("clip", lc), ("pos", lp), ("neg", ln), ("neg_peak", lnp)):
            run[k] += float(v.detach())
        if done % log_every == 0 or done == steps:
            n = log_every if done % log_every == 0 else done % log_every
            val_acc, _ = evaluate(net, *data["val"])
            rec = {"step": done, "val_acc": val_acc, "seconds": time.perf_counter() - t0,
                   **({"blend": round(net.blend if net.blend is not None else 1.0, 4)}
                      if anneal else {}),
                   **{k: v / n for k, v in run.items()}}
            history.append(rec)
            log(f"step {done:5d}  clip {rec['clip']:.3f}  kw-frames {rec['pos']:.3f}  "
                f"no-kw frames {rec['neg']:.4f}  "
                + (f"no-kw peak {rec['neg_peak']:.4f}  " if neg_peak_weight > 0 else "")
                + (f"β {rec['blend']:.3f}  " if anneal else "")
                + f"val clips {val_acc * 100:.2f}%  "
                f"{rec['seconds']:.0f} s", flush=True)
            run = dict.fromkeys(run, 0.0)
    if net.blend is not None:
        raise SystemExit(f"the run stopped at β {net.blend:.3f}, before the ReLU→LIF blend "
                         "reached pure LIF: raise --steps or --time-budget, or lower --anneal")
    return net, {"history": history, "steps": done, "best_epoch": None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variant", choices=["spiking", "nonspiking"], default="spiking")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", default="data/kws")
    ap.add_argument("--data-seed", type=int, default=0)
    ap.add_argument("--d-model", type=int, default=LMUFormerConfig.d_model,
                    help="model channels; more than an --init checkpoint's widens it (the "
                         "same function at the start: LMUFormerWeights.widened)")
    ap.add_argument("--lmu-units", type=int, default=LMUFormerConfig.lmu_units,
                    help="LMU channels; more than an --init checkpoint's widens it (the same "
                         "function at the start: LMUFormerWeights.widened)")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--out", default="samples/kws/models")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--init", default=None,
                    help="warm-start from this .npz checkpoint (e.g. the non-spiking one)")
    ap.add_argument("--time-budget", type=float, default=None,
                    help="stop training after the epoch that ends past this many seconds")
    ap.add_argument("--anneal", type=float, default=0.0,
                    help="spiking: blend ReLU→LIF (β·LIF + (1−β)·ReLU, β from 0 to 1) over "
                         "this fraction of the optimizer steps (with --streams: of the "
                         "schedule, which a --time-budget may cut short), e.g. with --init of "
                         "the non-spiking checkpoint (default 0: pure LIF throughout)")
    ap.add_argument("--teacher", default=None,
                    help="distil from this checkpoint (e.g. the non-spiking model for a "
                         "spiking student); clip training only")
    ap.add_argument("--kd-weight", type=float, default=0.5,
                    help="with --teacher: weight of the distillation loss (the rest: "
                         "cross-entropy)")
    ap.add_argument("--kd-temp", type=float, default=4.0,
                    help="with --teacher: softmax temperature of the distillation loss")
    ap.add_argument("--schedule", choices=["onecycle", "constant", "cosine"],
                    default="onecycle",
                    help="learning rate: onecycle (warm-up, cosine to ~0), constant (after a "
                         "one-epoch warm-up; with --init and --swa, to continue a trained "
                         "model) or cosine (the one-epoch warm-up, then cosine from --lr to 0; "
                         "with --init, to continue a trained model)")
    ap.add_argument("--swa", type=int, default=0, metavar="N",
                    help="clip training: average the weights of the last N epochs (batch-norm "
                         "statistics re-measured) and keep the average if it beats the best "
                         "epoch on validation")
    ap.add_argument("--surrogate-alpha", type=float, default=SURROGATE_ALPHA,
                    help="spiking clip training: sharpness α of the arctan surrogate gradient "
                         f"(default {SURROGATE_ALPHA:g}; smaller is wider)")
    ap.add_argument("--streams", default=None,
                    help="streaming fine-tune on the continuous training streams under this "
                         "folder (tools/kws_stream_data.py --out); needs --init")
    ap.add_argument("--steps", type=int, default=1500, help="streaming fine-tune steps")
    ap.add_argument("--stream-train-hours", type=float, nargs=2, metavar=("KW", "FREE"),
                    help="the training streams made with tools/kws_stream_data.py "
                         "--train-kw-hours KW --train-free-hours FREE (default: its defaults)")
    ap.add_argument("--stream-rounds", type=int, nargs="+", default=[0], metavar="R",
                    help="the training-stream rounds to pool (tools/kws_stream_data.py "
                         "--train-round R, same hours; default: round 0)")
    ap.add_argument("--window-specaug", action="store_true",
                    help="streaming fine-tune: SpecAugment masks on the stream windows too "
                         "(one mel band, one span of frames; the clips always get them)")
    ap.add_argument("--keep-homophones", action="store_true",
                    help="score the sentences holding 'know'/'write' as no keyword (default: "
                         "not scored; espeak-ng says them exactly as 'no'/'right')")
    ap.add_argument("--window-batch", type=int, default=32)
    ap.add_argument("--neg-weight", type=float, default=1.0)
    ap.add_argument("--pos-weight", type=float, default=1.0,
                    help="weight of the keyword frames' loss (streaming fine-tune)")
    ap.add_argument("--pos-hops", type=int, default=40,
                    help="keyword region: until this many hops after the keyword's end")
    ap.add_argument("--pre-hops", type=int, default=5,
                    help="keyword region: from this many hops before the keyword's end")
    ap.add_argument("--pool", type=int, default=0,
                    help="keyword loss: 0 = every keyword frame's cross-entropy; N > 0 = "
                         "−log of the best N-frame mean posterior in the keyword region")
    ap.add_argument("--neg-margin", type=float, default=0.0,
                    help='"no keyword" loss: 0 = −log(p_unknown + p_silence); M > 0 = hinge, '
                         "every keyword logit M under the best non-keyword logit")
    ap.add_argument("--clip-weight", type=float, default=1.0,
                    help="weight of the clip loss (streaming fine-tune)")
    ap.add_argument("--head-scale", type=float, default=4.0,
                    help="divide the warm-started head by this (streaming fine-tune)")
    ap.add_argument("--hard-negatives", type=int, default=2400,
                    help="near-miss word clips added as _unknown_ (streaming fine-tune)")
    ap.add_argument("--mine", default=None,
                    help="checkpoint whose false alarms on keyword-free training streams "
                         "become extra negative windows")
    ap.add_argument("--mine-threshold", type=float, default=0.3)
    ap.add_argument("--stream-head", action="store_true",
                    help="streaming fine-tune: a second output head (stream_logits) for "
                         "continuous speech, trained on the stream windows; the clip head "
                         "keeps the clip loss (+768 parameters)")
    ap.add_argument("--log-every", type=int, default=50,
                    help="streaming fine-tune: validation clip accuracy and losses every this "
                         "many steps")
    ap.add_argument("--trunk-lr-scale", type=float, default=1.0,
                    help="streaming fine-tune: the trunk's learning rate is --lr times this "
                         "(the heads' is --lr)")
    ap.add_argument("--clip-stream-weight", type=float, default=0.0,
                    help="with --stream-head: also train the stream head on the clips "
                         "(keyword clips fire somewhere, other clips never), this weight")
    ap.add_argument("--neg-peak-weight", type=float, default=0.0,
                    help="streaming fine-tune: weight of the max-pooling loss on keyword-free "
                         "frames (per window, −log(1 − the peak --pool-frame mean keyword "
                         "posterior): the frames that would raise a false alarm)")
    ap.add_argument("--warp", type=float, default=0.0,
                    help="streaming fine-tune: stretch each clip's and window's mel axis by "
                         "a random factor in [1 − WARP, 1 + WARP] (vocal-tract-length "
                         "perturbation: voices unlike the training ones)")
    ap.add_argument("--name", default=None, help="output stem (default kws_lmuformer_<variant>)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    cfg = LMUFormerConfig(d_model=a.d_model, lmu_units=a.lmu_units,
                          spiking=a.variant == "spiking", stream_head=a.stream_head)
    if a.stream_head and not a.streams:
        raise SystemExit("--stream-head is trained on streams: pass --streams DIR")
    init = LMUFormerWeights.load(a.init) if a.init else None
    extra: dict = {}
    if a.surrogate_alpha <= 0:
        raise SystemExit(f"--surrogate-alpha {a.surrogate_alpha}: give a sharpness > 0")
    if a.surrogate_alpha != SURROGATE_ALPHA and (a.streams or not cfg.spiking):
        raise SystemExit("--surrogate-alpha shapes the LIF gradient of spiking clip training: "
                         "use it with --variant spiking and without --streams")
    if a.anneal and not cfg.spiking:
        raise SystemExit("--anneal blends ReLU into LIF: it needs --variant spiking")
    if not 0.0 <= a.anneal < 1.0:
        raise SystemExit(f"--anneal {a.anneal}: give a fraction of the steps in [0, 1)")
    if a.swa < 0 or a.swa > a.epochs:
        raise SystemExit(f"--swa {a.swa}: give a number of final epochs to average, 0 to "
                         f"--epochs ({a.epochs})")
    if a.streams and (a.swa or a.schedule != "onecycle"):
        raise SystemExit("--swa and --schedule belong to clip training; the streaming "
                         "fine-tune (--streams) has its own schedule")
    if a.streams and a.teacher:
        raise SystemExit("--teacher distils on clips; the streaming fine-tune (--streams) does "
                         "not take one")
    stream_only = [f for f, v in (("--warp", a.warp), ("--neg-peak-weight", a.neg_peak_weight),
                                  ("--window-specaug", a.window_specaug),
                                  ("--stream-rounds", a.stream_rounds != [0])) if v]
    if stream_only and not a.streams:
        raise SystemExit(f"{' and '.join(stream_only)} "
                         f"{'belongs' if len(stream_only) == 1 else 'belong'} to the streaming "
                         "fine-tune: pass "
                         "--streams DIR --init CKPT.npz, or leave them out for clip training")
    sfolders = []  # checked before the clip data is made: a bad flag costs nothing
    if a.streams:
        if init is None:
            raise SystemExit("--streams fine-tunes a trained model: pass --init CKPT.npz")
        kw_h, free_h = a.stream_train_hours or (kws_stream_data.StreamConfig.train_kw_h,
                                                  kws_stream_data.StreamConfig.train_free_h)
        if min(a.stream_rounds) < 0 or len(set(a.stream_rounds)) != len(a.stream_rounds):
            raise SystemExit(f"--stream-rounds {' '.join(map(str, a.stream_rounds))}: give "
                             "distinct rounds, 0 or more")
        for r in a.stream_rounds:
            sfolder = Path(a.streams) / kws_stream_data.StreamConfig(
                seed=a.data_seed, train_kw_h=kw_h, train_free_h=free_h, train_round=r).key()
            if not (sfolder / "train_kw_mixed.npz").is_file():
                raise SystemExit(f"no training streams in {sfolder}: make them with python "
                                 f"tools/kws_stream_data.py --out {a.streams} --splits train "
                                 f"--train-kw-hours {kw_h:g} --train-free-hours {free_h:g}"
                                 + (f" --train-round {r}" if r else ""))
            sfolders.append(sfolder)
    t_start = time.perf_counter()
    folder = kws_dataset.generate(a.data, kws_dataset.DatasetConfig(seed=a.data_seed),
                                  verbose=True)
    data = {s: kws_dataset.load_features(folder, s) for s in ("train", "val", "test")}
    t_data = time.perf_counter() - t_start
    print(f"data: {folder} ({t_data:.0f} s) train {len(data['train'][1])} val "
          f"{len(data['val'][1])} test {len(data['test'][1])}")
    if a.streams:
        windows = StreamWindows(sfolders, a.pos_hops, pre_hops=a.pre_hops,
                                ignore_homophones=not a.keep_homophones)
        if windows.homophones:
            print(f"{len(windows.homophones)} training sentences hold a homophone of a "
                  "keyword (know, write): their no-keyword frames are not scored")
            extra["homophone_sentences_ignored"] = len(windows.homophones)
        hardneg = hard_negative_clips(a.hard_negatives, a.data_seed, Path(a.data) / "hardneg")
        if a.mine:
            n = windows.mine(LMUFormerWeights.load(a.mine), a.mine_threshold)
            print(f"mined {n} false alarms of {a.mine} (threshold {a.mine_threshold}) on the "
                  "keyword-free training streams")
            extra["mined_false_alarms"] = n
        print(f"streams: {len(windows.streams)} training streams, {len(windows.events)} "
              f"keywords; {len(hardneg)} hard-negative clips")
        net, info = train_streaming(cfg, data, windows, hardneg, init, a.steps, a.seed,
                                    a.lr, a.batch, a.window_batch, a.neg_weight,
                                    a.time_budget, a.head_scale, a.pos_weight, a.pool,
                                    a.clip_weight, a.neg_margin, a.clip_stream_weight,
                                    a.trunk_lr_scale, a.log_every, warp=a.warp,
                                    neg_peak_weight=a.neg_peak_weight,
                                    window_specaug=a.window_specaug, anneal=a.anneal)
        extra.update(streaming={"steps": info["steps"], "window_batch": a.window_batch,
                                "neg_weight": a.neg_weight, "pos_weight": a.pos_weight,
                                "pos_hops": a.pos_hops, "pre_hops": a.pre_hops,
                                "pool": a.pool, "clip_weight": a.clip_weight,
                                "neg_margin": a.neg_margin, "stream_head": a.stream_head,
                                "clip_stream_weight": a.clip_stream_weight,
                                "trunk_lr_scale": a.trunk_lr_scale, "warp": a.warp,
                                "neg_peak_weight": a.neg_peak_weight,
                                "window_specaug": a.window_specaug,
                                "anneal": a.anneal,
                                "stream_rounds": a.stream_rounds,
                                "stream_hours": [kw_h, free_h],
                                "head_scale": a.head_scale,
                                "hard_negatives": len(hardneg), "init": a.init,
                                "mine": a.mine, "mine_threshold": a.mine_threshold})
    else:
        if not 0.0 <= a.kd_weight <= 1.0 or a.kd_temp <= 0:
            raise SystemExit(f"--kd-weight {a.kd_weight} / --kd-temp {a.kd_temp}: give a "
                             "weight in [0, 1] and a temperature > 0")
        teacher = LMUFormerWeights.load(a.teacher) if a.teacher else None
        if teacher is not None and (teacher.config.n_classes != cfg.n_classes
                                    or teacher.config.n_mels != cfg.n_mels):
            raise SystemExit(f"--teacher {a.teacher} has {teacher.config.n_classes} classes "
                             f"and {teacher.config.n_mels} mels, the student {cfg.n_classes} "
                             f"and {cfg.n_mels}; distil from a model of the same task")
        net, info = train(cfg, data, a.epochs, a.seed, lr=a.lr, batch=a.batch, init=init,
                          time_budget=a.time_budget, anneal=a.anneal, teacher=teacher,
                          kd_weight=a.kd_weight, kd_temp=a.kd_temp,
                          surrogate_alpha=a.surrogate_alpha, schedule=a.schedule, swa=a.swa)
        if "swa" in info:
            extra["swa"] = info["swa"]
    test_acc, test_logits = evaluate(net, *data["test"])
    val_acc, _ = evaluate(net, *data["val"])
    model = export_weights(net)
    name = a.name or f"kws_lmuformer_{a.variant}"
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / f"{name}.npz")
    (out / f"{name}.onnx").write_bytes(build_step_onnx(model).SerializeToString())
    diff = check_export(model, net, data["test"][0])
    curve = prefix_accuracy(test_logits, data["test"][1])
    report = {"variant": a.variant, "config": asdict(cfg),
              "val_acc": val_acc, "test_acc": test_acc, "best_epoch": info["best_epoch"],
              "parameters": model.parameter_count(), "export_max_abs_diff": diff,
              "spike_rates": spike_rates(net, data["test"][0][:256]) if cfg.spiking else {},
              "prefix_accuracy": [round(float(v), 4) for v in curve],
              "train_seconds": round(time.perf_counter() - t_start, 1),
              "command": "python tools/train_kws.py " + " ".join(sys.argv[1:] if argv is None
                                                                else argv),
              "history": info["history"], **extra}
    (out / f"{name}.json").write_text(json.dumps(report, indent=1))
    print(f"{a.variant}: val {val_acc * 100:.2f}%  test (held-out voices) {test_acc * 100:.2f}%  "
          f"params {model.parameter_count()}  export max|Δlogit| {diff:.2e}  "
          f"time {report['train_seconds']:.0f} s")
    if cfg.spiking:
        print("spike rates: " + ", ".join(f"{k} {v:.3f}" for k, v in report["spike_rates"].items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
