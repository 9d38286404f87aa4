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


def surrogate_grad(x: torch.Tensor) -> torch.Tensor:
    """Arctan surrogate of the Heaviside derivative: ``α/2 / (1 + (π/2·α·x)²)``, α = 2."""
    return (SURROGATE_ALPHA / 2) / (1 + (math.pi / 2 * SURROGATE_ALPHA * x) ** 2)


class LIFFunction(torch.autograd.Function):
    """LIF over ``[B, T, C]`` with hand-written backpropagation through time.

    Forward: ``H_t = (V_{t−1} + X_t)/2``, ``S_t = [H_t ≥ th]``, ``V_t = H_t·(1 − S_t)``.
    Backward (reset detached, surrogate ``σ'``): ``∂L/∂H_t = ∂L/∂S_t·σ'(H_t − th)
    + ∂L/∂V_t·(1 − S_t)``, ``∂L/∂X_t = ∂L/∂V_{t−1} = ∂L/∂H_t / 2``. One loop each way, no
    autograd graph per step: several times faster than unrolling with autograd.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, threshold: float) -> torch.Tensor:
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
        return s_all.transpose(0, 1)

    @staticmethod
    def backward(ctx, grad_s: torch.Tensor):
        h_all, s_all = ctx.saved_tensors
        gs = grad_s.transpose(0, 1).contiguous() * surrogate_grad(h_all - ctx.threshold)
        keep = 1 - s_all
        grad_h = torch.empty_like(gs)
        g = torch.zeros_like(gs[0])
        for t in range(gs.shape[0] - 1, -1, -1):
            g = torch.addcmul(gs[t], g, keep[t], out=grad_h[t])
            g = 0.5 * g
        return 0.5 * grad_h.transpose(0, 1), None


class LIF(nn.Module):
    """LIF, τ = 2, hard reset to 0, threshold ``th``, over ``[B, T, C]``."""

    def __init__(self, threshold: float) -> None:
        super().__init__()
        self.threshold = threshold

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return LIFFunction.apply(x, self.threshold)


class FrameBN(nn.BatchNorm1d):
    """BatchNorm over the channel axis of ``[B, T, C]``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.reshape(-1, x.shape[-1])).reshape(x.shape)


class KWSNet(nn.Module):
    """Training form of sdk.models.lmuformer (same equations, parallel over time, with BN)."""

    def __init__(self, cfg: LMUFormerConfig, in_mean: np.ndarray, in_std: np.ndarray,
                 frames: int = 100) -> None:
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
        self.acts = nn.ModuleDict({site: (LIF(th) if cfg.spiking else nn.ReLU())
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

    def _act(self, site: str, x: torch.Tensor) -> torch.Tensor:
        s = self.acts[site](x)
        if self.record_rates:
            self.rates[site] = float((s > 0).float().mean())
        return s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features ``[B, T, n_mels]`` → frame logits ``[B, T, K]``."""
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
        return self.w_o(self._act("v_head", y2))


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


def _calibrate_bns(net: KWSNet, x: np.ndarray,
                   target: dict[str, tuple[torch.Tensor, torch.Tensor]] | None) -> dict:
    """One training-mode pass over ``x``; before each batch norm runs (forward order), set
    ``γ``, ``β`` so its output has per-channel mean/std ``target[name]`` (default: those of its
    input, i.e. the identity), running statistics = the batch's. Returns the output stats."""
    out: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def pre(name: str, bn: nn.BatchNorm1d, args: tuple) -> None:
        z = args[0].reshape(-1, args[0].shape[-1])
        mu, var = z.mean(0), z.var(0, unbiased=False)
        t_mu, t_sd = target[name] if target else (mu, torch.sqrt(var + bn.eps))
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
    shape = ("n_mels", "n_classes", "d_model", "lmu_units", "lmu_order", "mlp_ratio")
    if any(getattr(cfg, k) != getattr(mc, k) for k in shape):
        raise SystemExit(f"--init checkpoint config {mc} does not match {cfg}; train with the "
                         "same --d-model or pass a matching checkpoint")
    ref = KWSNet(mc, net.in_mean.numpy(), 1.0 / net.in_inv_std.numpy(), frames=x.shape[1])
    _load_folded(ref, model)
    stats = _calibrate_bns(ref, x, None)
    _load_folded(net, model)
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
          init: LMUFormerWeights | None = None, time_budget: float | None = None
          ) -> tuple[KWSNet, dict]:
    """Train; keep the weights of the best validation epoch.

    ``init``: warm-start from this folded checkpoint (see :func:`warm_start`).
    ``time_budget``: stop after the first epoch that ends past this many seconds (the best
    validation epoch so far is kept).
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    xtr, ytr = data["train"]
    mean = xtr.reshape(-1, xtr.shape[-1]).mean(0).astype(np.float32)
    std = xtr.reshape(-1, xtr.shape[-1]).std(0) + 1e-3
    net = KWSNet(cfg, mean, std, frames=xtr.shape[1])
    if init is not None:
        warm_start(net, init, xtr[rng.permutation(len(xtr))[:512]])
        init_acc, _ = evaluate(net, *data["val"])
        log(f"warm start: val {init_acc * 100:.2f}% before training")
    t_train = time.perf_counter()
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-3)
    steps = epochs * math.ceil(len(xtr) / batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    best = (-1.0, None, -1)
    history = []
    for ep in range(epochs):
        net.train()
        t0 = time.perf_counter()
        order = rng.permutation(len(xtr))
        total = 0.0
        for i in range(0, len(order), batch):
            idx = order[i:i + batch]
            xb = spec_augment(xtr[idx], mean, rng) if augment else xtr[idx]
            logits = net(torch.from_numpy(xb))
            loss = nn.functional.cross_entropy(logits.mean(1), torch.from_numpy(ytr[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        val_acc, _ = evaluate(net, *data["val"])
        history.append({"epoch": ep + 1, "loss": total / len(xtr), "val_acc": val_acc,
                        "seconds": time.perf_counter() - t0})
        log(f"epoch {ep + 1:3d}  loss {total / len(xtr):.4f}  val {val_acc * 100:.2f}%  "
            f"{time.perf_counter() - t0:.1f} s")
        if val_acc > best[0]:
            best = (val_acc, {k: v.clone() for k, v in net.state_dict().items()}, ep + 1)
        if time_budget is not None and time.perf_counter() - t_train > time_budget:
            log(f"time budget {time_budget:.0f} s spent after epoch {ep + 1}; stopping")
            break
    net.load_state_dict(best[1])
    return net, {"history": history, "best_epoch": best[2], "best_val_acc": best[0]}


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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variant", choices=["spiking", "nonspiking"], default="spiking")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", default="data/kws")
    ap.add_argument("--data-seed", type=int, default=0)
    ap.add_argument("--d-model", type=int, default=LMUFormerConfig.d_model)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--out", default="samples/kws/models")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--init", default=None,
                    help="warm-start from this .npz checkpoint (e.g. the non-spiking one)")
    ap.add_argument("--time-budget", type=float, default=None,
                    help="stop training after the epoch that ends past this many seconds")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    t_start = time.perf_counter()
    folder = kws_dataset.generate(a.data, kws_dataset.DatasetConfig(seed=a.data_seed),
                                  verbose=True)
    data = {s: kws_dataset.load_features(folder, s) for s in ("train", "val", "test")}
    t_data = time.perf_counter() - t_start
    print(f"data: {folder} ({t_data:.0f} s) train {len(data['train'][1])} val "
          f"{len(data['val'][1])} test {len(data['test'][1])}")
    cfg = LMUFormerConfig(d_model=a.d_model, spiking=a.variant == "spiking")
    init = LMUFormerWeights.load(a.init) if a.init else None
    net, info = train(cfg, data, a.epochs, a.seed, lr=a.lr, batch=a.batch, init=init,
                      time_budget=a.time_budget)
    test_acc, test_logits = evaluate(net, *data["test"])
    val_acc, _ = evaluate(net, *data["val"])
    model = export_weights(net)
    name = f"kws_lmuformer_{a.variant}"
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
              "history": info["history"]}
    (out / f"{name}.json").write_text(json.dumps(report, indent=1))
    print(f"{a.variant}: val {val_acc * 100:.2f}%  test (held-out voices) {test_acc * 100:.2f}%  "
          f"params {model.parameter_count()}  export max|Δlogit| {diff:.2e}  "
          f"time {report['train_seconds']:.0f} s")
    if cfg.spiking:
        print("spike rates: " + ", ".join(f"{k} {v:.3f}" for k, v in report["spike_rates"].items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
