"""tools/train_kws.py pieces that change what a model learns from: the distillation teacher
computes the committed checkpoint's function, the mel-axis warp stretches spectra (needs the
train extra, torch)."""

import sys
from pathlib import Path

import numpy as np
import pytest

from sdk.models import LMUFormerWeights, run_clips

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
torch = pytest.importorskip("torch")  # tools/train_kws.py needs the train extra


@pytest.mark.parametrize("variant", ["nonspiking", "spiking"])
def test_distillation_teacher_is_the_checkpoint(variant):
    """The teacher net ``train`` builds (folded maps, identity batch norms) gives the NumPy
    step's frame logits of the checkpoint."""
    import train_kws as tk

    model = LMUFormerWeights.load(ROOT / "samples" / "kws" / "models"
                                  / f"kws_lmuformer_{variant}.npz")
    rng = np.random.default_rng(0)
    x = (rng.normal(9.0, 2.0, (6, 100, 40))).astype(np.float32)
    teach = tk.KWSNet(model.config, model.weights["in_mean"],
                      1.0 / model.weights["in_inv_std"], frames=100)
    tk._load_folded(teach, model)
    tk._calibrate_bns(teach, x, None)
    teach.eval()
    with torch.no_grad():
        got = teach(torch.from_numpy(x)).numpy()
    want = run_clips(model, x)
    if variant == "nonspiking":
        np.testing.assert_allclose(got, want, atol=1e-2)  # float32: conv vs recurrence
        assert (got.mean(1).argmax(1) == want.mean(1).argmax(1)).all()
    else:  # a spike flips where a membrane sits on the threshold: compare clip decisions
        assert (got.mean(1).argmax(1) == want.mean(1).argmax(1)).mean() >= 5 / 6
        assert np.abs(got - want).mean() < 0.05


def test_warm_start_into_a_wider_net_keeps_the_function():
    """``--init`` a checkpoint into a net with more model and LMU channels
    (``--d-model 96 --lmu-units 24``, with a new stream head): the widened net computes the
    checkpoint's logits on both heads at the start of training."""
    from dataclasses import replace

    import train_kws as tk

    model = LMUFormerWeights.load(ROOT / "samples" / "kws" / "models"
                                  / "kws_lmuformer_nonspiking.npz")
    x = np.random.default_rng(1).normal(9.0, 2.0, (4, 80, 40)).astype(np.float32)
    cfg = replace(model.config, d_model=96, lmu_units=24, stream_head=True)
    net = tk.KWSNet(cfg, model.weights["in_mean"], 1.0 / model.weights["in_inv_std"],
                    frames=80)
    tk.warm_start(net, model, x)
    net.eval()
    with torch.no_grad():
        clip, stream = (h.numpy() for h in net.forward_heads(torch.from_numpy(x)))
    want = run_clips(model, x)
    np.testing.assert_allclose(clip, want, atol=2e-2)  # float32: conv vs recurrence
    np.testing.assert_allclose(stream, want, atol=2e-2)  # a new stream head starts as the clip head
    assert sum(p.numel() for p in net.parameters()) > 2 * model.parameter_count()
    with pytest.raises(SystemExit, match="at least its --d-model"):
        tk.warm_start(tk.KWSNet(replace(model.config, d_model=48), model.weights["in_mean"],
                                1.0 / model.weights["in_inv_std"], frames=80), model, x)


def test_mel_warp_stretches_the_mel_axis():
    import train_kws as tk

    x = np.tile(np.arange(40, dtype=np.float32), (4, 3, 1))  # value = bin index
    assert tk.mel_warp(x, np.random.default_rng(0), 0.0) is x
    y = tk.mel_warp(x, np.random.default_rng(1), 0.2)
    assert y.shape == x.shape and y.dtype == x.dtype
    for row in y[:, 0]:
        a = row[10] / 10.0  # bin f reads the value at f·α
        assert 0.8 <= a <= 1.2
        np.testing.assert_allclose(row[:30], np.minimum(np.arange(30) * a, 39), atol=1e-4)
    assert (y[:, 0] == y[:, 2]).all()  # one factor per clip, every frame alike
    assert len({round(float(r[10]), 4) for r in y[:, 0]}) == 4  # a factor per clip


def test_neg_peak_loss_is_the_worst_moving_average_of_keyword_mass():
    import train_kws as tk

    z = torch.full((2, 60, 12), -20.0)
    z[..., 10] = 0.0  # "unknown" everywhere: no keyword mass
    z[0, 30:34, 4] = 20.0  # window 0: a 4-frame keyword flash inside keyword-free speech
    z[1, 30:34, 4] = 20.0  # window 1: the same flash, but those frames are a said keyword's
    y = torch.full((2, 60), tk.NEG)
    y[1, 28:40] = 4
    got = tk.neg_peak_loss(z, y, pool=8)
    # window 0: peak 8-frame mean = 4/8; window 1: the flash is not a "no keyword" frame
    want = (-np.log(1 - 0.5) + -np.log(1 - 0.0 + 1e-12)) / 2
    assert float(got) == pytest.approx(want, abs=1e-4)
    # no "no keyword" frame anywhere: nothing to pay
    assert float(tk.neg_peak_loss(z, torch.full((2, 60), 4), pool=8)) == 0.0


def test_surrogate_alpha_changes_the_gradient_not_the_spikes():
    """``--surrogate-alpha``: the LIF forward pass (what is exported) is the same spikes for
    any α; the backward pass is the arctan surrogate of that α, through the membrane's
    recurrence (checked against autograd unrolled over the steps); bad values refused."""
    import train_kws as tk

    rng = np.random.default_rng(2)
    x = torch.tensor(rng.normal(0.8, 1.0, (3, 12, 5)), dtype=torch.float32)
    grads, spikes = {}, {}
    for alpha in (1.0, 2.0, 4.0):
        xi = x.clone().requires_grad_(True)
        s = tk.LIF(1.0, alpha)(xi)
        (s * torch.arange(1.0, 13.0)[None, :, None]).sum().backward()
        grads[alpha], spikes[alpha] = xi.grad.clone(), s.detach()
        # reference: the same LIF unrolled with autograd, spikes through a straight-through
        # surrogate of the same α
        xr = x.clone().requires_grad_(True)
        v, out = torch.zeros(3, 5), []
        for t in range(12):
            h = (v + xr[:, t]) / 2
            hard = (h >= 1.0).float()
            sg = tk.surrogate_grad(h.detach() - 1.0, alpha)
            st = hard + (h - h.detach()) * sg
            out.append(st)
            v = h * (1 - hard)
        (torch.stack(out, 1) * torch.arange(1.0, 13.0)[None, :, None]).sum().backward()
        torch.testing.assert_close(grads[alpha], xr.grad, atol=1e-5, rtol=1e-4)
    assert torch.equal(spikes[1.0], spikes[2.0]) and torch.equal(spikes[2.0], spikes[4.0])
    assert spikes[2.0].sum() > 0 and (1 - spikes[2.0]).sum() > 0
    assert not torch.allclose(grads[1.0], grads[4.0])
    # far from threshold the wide surrogate passes more gradient than the sharp one
    assert float(tk.surrogate_grad(torch.tensor(1.5), 1.0)) > float(
        tk.surrogate_grad(torch.tensor(1.5), 4.0))
    with pytest.raises(SystemExit, match="sharpness > 0"):
        tk.main(["--surrogate-alpha", "0"])
    with pytest.raises(SystemExit, match="--variant spiking"):
        tk.main(["--variant", "nonspiking", "--surrogate-alpha", "1"])


class _NoKeywordWindows:
    """Stream windows of keyword-free talk, stand-ins with real shapes (``StreamWindows.batch``
    cuts them from rendered streams; here Gaussian log-mels): every frame after the warm-up is
    "no keyword"."""

    def batch(self, n, rng):
        import train_kws as tk

        x = rng.normal(9.0, 2.0, (n, tk.WINDOW, 40)).astype(np.float32)
        y = np.full((n, tk.WINDOW), tk.NEG, np.int64)
        y[:, :tk.WARMUP] = tk.IGNORE
        return x, y


def test_streaming_anneal_ramps_relu_into_lif_and_ends_pure_lif():
    """``--anneal`` on the streaming fine-tune (a spiking student from the non-spiking
    checkpoint): it starts as the checkpoint's function, β climbs from 0 over the given share of the steps, the rest of the run and the
    weights it returns are pure LIF; a run cut before β reaches 1 is refused, and a non-spiking
    config is refused outright."""
    from dataclasses import replace

    import train_kws as tk

    model = LMUFormerWeights.load(ROOT / "samples" / "kws" / "models"
                                  / "kws_lmuformer_nonspiking.npz")
    rng = np.random.default_rng(2)
    x = rng.normal(9.0, 2.0, (24, 100, 40)).astype(np.float32)
    y = rng.integers(0, model.config.n_classes, 24)
    data = {"train": (x, y), "val": (x[:8], y[:8])}
    cfg = replace(model.config, spiking=True)
    logs = []
    common = dict(hardneg=np.zeros((0, 100, 40), np.float32), init=model, seed=0, lr=1e-4,
                  clip_batch=4, window_batch=2, neg_weight=1.0, time_budget=None,
                  head_scale=1.0, log_every=1, log=lambda m, **k: logs.append(m))
    net, info = tk.train_streaming(cfg, data, _NoKeywordWindows(), steps=8, anneal=0.5,
                                   **common)
    assert logs[0].startswith("warm start: val clips") and logs[0].endswith("β 0)")
    # at β = 0 the spiking net is the checkpoint (batch norms matched in ReLU mode): with a
    # zero learning rate the weights stay as the warm start set them
    still, _ = tk.train_streaming(cfg, data, _NoKeywordWindows(), steps=4, anneal=0.5,
                                  **{**common, "lr": 0.0})
    still.eval()
    still.blend = 0.0
    with torch.no_grad():
        got = still(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, run_clips(model, x), atol=2e-2)  # float32: conv vs recurrence
    blends = [h["blend"] for h in info["history"]]
    assert blends == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 1.0])  # β of each step
    assert net.blend is None and net.cfg.spiking
    plain, info = tk.train_streaming(cfg, data, _NoKeywordWindows(), steps=2, **common)
    assert plain.blend is None and "blend" not in info["history"][0]
    with pytest.raises(ValueError, match="needs a spiking config"):
        tk.train_streaming(model.config, data, _NoKeywordWindows(), steps=2, anneal=0.5,
                           **common)
    with pytest.raises(SystemExit, match="before the ReLU→LIF blend reached pure LIF"):
        tk.train_streaming(cfg, data, _NoKeywordWindows(), steps=1, anneal=0.99, **common)


@pytest.mark.parametrize("flags, message", [
    (["--variant", "nonspiking", "--anneal", "0.5"], "needs --variant spiking"),
    (["--variant", "spiking", "--anneal", "1.5"], "give a fraction of the steps"),
])
def test_streaming_anneal_flags_are_checked_before_any_data(tmp_path, flags, message):
    """``--anneal`` with ``--streams`` was silently dropped before; now it is honoured, and
    refused in one line where it cannot apply."""
    import train_kws as tk

    with pytest.raises(SystemExit, match=message):
        tk.main(["--streams", str(tmp_path), "--init", str(ROOT / "samples" / "kws" / "models"
                                                          / "kws_lmuformer_nonspiking.npz"),
                 "--data", str(tmp_path / "none"), *flags])


def test_swa_keeps_the_average_of_the_last_epochs_with_fresh_batch_norm_statistics(
        monkeypatch):
    """``--swa N``: the parameters kept are the mean of those at the end of the last N epochs
    (not the best epoch's), chosen when the average scores higher on validation; the batch
    norms' running statistics are then those of the average's own activations over the
    training clips. When the average scores lower, the best epoch is kept."""
    import train_kws as tk

    cfg = tk.LMUFormerConfig(d_model=16, lmu_units=4)
    rng = np.random.default_rng(3)
    x = rng.normal(9.0, 2.0, (24, 30, 40)).astype(np.float32)
    y = rng.integers(0, cfg.n_classes, 24)
    data = {"train": (x, y), "val": (x[:8], y[:8])}
    seen = []  # parameters at each validation (end of each epoch, then the average)
    real = tk.evaluate

    def scored(accs):
        def evaluate(net, xv, yv):
            seen.append({k: v.detach().clone() for k, v in net.named_parameters()})
            _, logits = real(net, xv, yv)
            return accs[len(seen) - 1], logits
        return evaluate

    monkeypatch.setattr(tk, "evaluate", scored([0.5, 0.6, 0.4, 0.4, 0.9]))
    net, info = tk.train(cfg, data, epochs=4, seed=0, lr=1e-2, batch=8, swa=3,
                         schedule="constant", log=lambda *a, **k: None)
    assert info["best_epoch"] == "swa" and info["swa"] == {"epochs": 3, "val_acc": 0.9}
    for k, p in net.named_parameters():
        want = (seen[1][k] + seen[2][k] + seen[3][k]) / 3
        torch.testing.assert_close(p.detach(), want)
    assert not torch.allclose(seen[1]["w_u.weight"], seen[3]["w_u.weight"])  # it trained
    # the first batch norm's running mean: its input's mean over every training clip
    with torch.no_grad():
        xn = ((torch.from_numpy(x) - net.in_mean) * net.in_inv_std).transpose(1, 2)
        e = net.embed(torch.nn.functional.pad(xn, (tk.CONV_KERNEL - 1, 0))).transpose(1, 2)
    torch.testing.assert_close(net.bn_embed.running_mean, e.reshape(-1, 16).mean(0),
                               atol=1e-4, rtol=1e-4)
    assert not net.training

    seen.clear()
    monkeypatch.setattr(tk, "evaluate", scored([0.5, 0.7, 0.4, 0.4, 0.6]))
    net, info = tk.train(cfg, data, epochs=4, seed=0, lr=1e-2, batch=8, swa=3,
                         schedule="constant", log=lambda *a, **k: None)
    assert info["best_epoch"] == 2 and info["swa"]["val_acc"] == 0.6
    for k, p in net.named_parameters():
        torch.testing.assert_close(p.detach(), seen[1][k])


@pytest.mark.parametrize("flags, message", [
    (["--swa", "5", "--epochs", "4"], "give a number of final epochs"),
    (["--swa", "-1"], "give a number of final epochs"),
    (["--streams", "x", "--init", str(ROOT / "samples" / "kws" / "models"
                                     / "kws_lmuformer_nonspiking.npz"), "--swa", "2"],
     "belong to clip training"),
    (["--schedule", "linear"], "invalid choice"),
])
def test_swa_flags_are_checked_before_any_data(tmp_path, flags, message, capsys):
    import train_kws as tk

    with pytest.raises(SystemExit) as err:
        tk.main(["--data", str(tmp_path / "none"), *flags])
    assert message in str(err.value) + capsys.readouterr().err
    assert not (tmp_path / "none").exists()


def test_constant_and_cosine_schedules():
    """``--schedule constant``: a linear warm-up, then the full rate; ``cosine``: the same
    warm-up, then a cosine that reaches 0 at the last step."""
    import train_kws as tk

    warm, steps = 10, 110
    assert [tk.lr_factor("constant", k, warm, steps) for k in (0, 4, 9, 10, 109)] == \
        pytest.approx([0.1, 0.5, 1.0, 1.0, 1.0])
    cos = [tk.lr_factor("cosine", k, warm, steps) for k in range(steps + 1)]
    assert cos[:10] == pytest.approx([(k + 1) / 10 for k in range(10)])
    assert cos[10] == 1.0 and cos[60] == pytest.approx(0.5) and cos[110] == pytest.approx(0.0)
    assert all(a >= b for a, b in zip(cos[10:], cos[11:]))
