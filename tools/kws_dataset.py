"""Keyword-spotting dataset from espeak-ng speech: 12 Speech-Commands-style classes, split by voice.

Classes: ``yes no up down left right on off stop go`` plus ``_unknown_`` (other words) and
``_silence_`` (noise only). Every clip is 1 s of mono int16 audio at 16 kHz.

A *speaker* is an espeak-ng voice variant (``!v/<name>``, about 100 of them); each clip is
spoken by one of 8 native English accents with one variant (``en-us+klatt3``). Variants are
split disjointly into train / validation / test by a seeded shuffle, so no test speaker (in any
accent) is heard in training. Per clip the generator draws the accent, the variant, the speaking
rate (``-s``), the pitch (``-p``) and the amplitude (``-a``), then augments: speed perturbation
(resampling by 0.9–1.1), a random time shift inside the 1 s window, additive white / pink /
brown noise at an SNR drawn from ``SNRS_DB`` (or none), and a random output level.

Everything is drawn from one seed (each clip from its own ``SeedSequence`` child), so a run is
reproducible regardless of thread scheduling. Output (cached; nothing is committed)::

    <out>/<config-hash>/{train,val,test}.npz   audio int16 [N, 16000], label int [N],
                                               speaker, voice, word (str [N])
    <out>/<config-hash>/meta.json              the configuration and the speaker split

Usage: ``python tools/kws_dataset.py --out data/kws --seed 0``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sdk.audio import decode_wav_bytes, logmel, resample
from sdk.errors import EdgeError

KEYWORDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
UNKNOWN = "_unknown_"
SILENCE = "_silence_"
CLASSES = KEYWORDS + [UNKNOWN, SILENCE]
# The auxiliary words of Speech Commands v2 (its "_unknown_" class).
UNKNOWN_WORDS = ["bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila", "tree",
                 "wow", "zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                 "nine", "learn", "follow", "forward", "backward", "visual"]
# Native English voices of espeak-ng 1.51; "en-gb+X" would ignore the variant, "en+X" does not.
ACCENTS = ["en", "en-us", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-gb-x-gbcwmd",
           "en-029", "en-us-nyc"]
SNRS_DB = [None, 30.0, 20.0, 10.0, 5.0]
SAMPLE_RATE = 16000
CLIP_SAMPLES = 16000
ESPEAK_RATE = 22050


@dataclass(frozen=True)
class DatasetConfig:
    """What determines a generated dataset (its hash names the cache folder)."""

    seed: int = 0
    train_per_class: int = 1000
    val_per_class: int = 150
    test_per_class: int = 200
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    version: int = 2

    def key(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def espeak_data_dir() -> Path:
    """The espeak-ng data folder, from ``espeak-ng --version``."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise EdgeError("espeak-ng is not installed; run tools/bootstrap.sh (or apt-get install "
                        "espeak-ng)")
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True).stdout
    if "Data at:" not in out:
        raise EdgeError(f"cannot find the espeak-ng data folder in `espeak-ng --version`: {out}")
    return Path(out.split("Data at:")[1].strip())


def list_variants() -> list[str]:
    """Voice variant names (``!v`` folder), sorted; names with spaces cannot be addressed."""
    names = [p.name for p in (espeak_data_dir() / "voices" / "!v").iterdir() if p.is_file()]
    return sorted(n for n in names if " " not in n)


def split_speakers(variants: list[str], cfg: DatasetConfig) -> dict[str, list[str]]:
    """Seeded disjoint split of the variants into train / val / test speakers."""
    order = list(np.random.default_rng([cfg.seed, 7]).permutation(len(variants)))
    n_test = max(1, round(cfg.test_fraction * len(variants)))
    n_val = max(1, round(cfg.val_fraction * len(variants)))
    pick = [variants[i] for i in order]
    return {"test": sorted(pick[:n_test]), "val": sorted(pick[n_test:n_test + n_val]),
            "train": sorted(pick[n_test + n_val:])}


def synthesize(word: str, voice: str, rate_wpm: int, pitch: int, amplitude: int) -> np.ndarray:
    """espeak-ng speech of ``word`` as float samples at 16 kHz (full scale 1.0)."""
    cmd = ["espeak-ng", "-v", voice, "-s", str(rate_wpm), "-p", str(pitch), "-a",
           str(amplitude), "--stdout", word]
    res = subprocess.run(cmd, capture_output=True, check=True)
    x = decode_wav_bytes(res.stdout, SAMPLE_RATE, name=f"espeak-ng {voice} {word!r}")
    return x.astype(np.float64) / 32768.0


def trim_silence(x: np.ndarray, rel_threshold: float = 0.02) -> np.ndarray:
    """Cut leading and trailing samples quieter than ``rel_threshold`` of the peak."""
    peak = np.max(np.abs(x)) if len(x) else 0.0
    if peak == 0.0:
        return x[:0]
    loud = np.nonzero(np.abs(x) >= rel_threshold * peak)[0]
    return x[loud[0]:loud[-1] + 1]


def colored_noise(n: int, kind: str, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS white, pink (1/f power) or brown (1/f² power) noise."""
    white = rng.standard_normal(n)
    if kind == "white":
        y = white
    else:
        spec = np.fft.rfft(white)
        f = np.arange(len(spec), dtype=np.float64)
        f[0] = 1.0
        spec /= np.sqrt(f) if kind == "pink" else f
        y = np.fft.irfft(spec, n)
    return y / (np.sqrt(np.mean(y * y)) + 1e-12)


@dataclass(frozen=True)
class ClipSpec:
    """Everything drawn for one clip before synthesis."""

    label: int
    word: str
    voice: str
    speaker: str
    rate_wpm: int
    pitch: int
    amplitude: int
    seed: tuple[int, ...]


def make_clip(spec: ClipSpec) -> np.ndarray:
    """Synthesize and augment one clip → int16 ``[16000]``."""
    rng = np.random.default_rng(list(spec.seed))
    out = np.zeros(CLIP_SAMPLES)
    rms = 0.1
    if spec.word != SILENCE:
        x = trim_silence(synthesize(spec.word, spec.voice, spec.rate_wpm, spec.pitch,
                                    spec.amplitude))
        factor = rng.uniform(0.9, 1.1)  # speed perturbation: tempo and pitch together
        x = resample(x, 1000, round(1000 * factor))
        if len(x) > CLIP_SAMPLES:  # keep the middle second
            start = (len(x) - CLIP_SAMPLES) // 2
            x = x[start:start + CLIP_SAMPLES]
        offset = int(rng.integers(0, CLIP_SAMPLES - len(x) + 1))  # time shift
        out[offset:offset + len(x)] = x
        rms = float(np.sqrt(np.mean(x * x))) if len(x) else 0.1
        snr = SNRS_DB[int(rng.integers(len(SNRS_DB)))]
    else:
        snr = 0.0
    kind = ["white", "pink", "brown"][int(rng.integers(3))]
    if snr is not None:
        noise = colored_noise(CLIP_SAMPLES, kind, rng) * rms * 10.0 ** (-snr / 20.0)
        if spec.word == SILENCE:  # silence: noise alone, over a wide range of levels
            noise *= 10.0 ** rng.uniform(-2.5, 0.0)
        out += noise
    peak = np.max(np.abs(out))
    if peak > 0:
        target = 10.0 ** (rng.uniform(-30.0, -1.0) / 20.0)
        if spec.word == SILENCE:
            target = min(target, peak)  # never amplify pure noise to full scale
        out *= target / peak
    return np.clip(np.rint(out * 32768.0), -32768, 32767).astype(np.int16)


def plan_split(split: str, speakers: list[str], per_class: int, cfg: DatasetConfig
               ) -> list[ClipSpec]:
    """Draw the clip specs of one split (deterministic from the seed)."""
    split_id = ["train", "val", "test"].index(split)
    rng = np.random.default_rng([cfg.seed, split_id, 1])
    specs = []
    for label, name in enumerate(CLASSES):
        for i in range(per_class):
            word = name
            if name == UNKNOWN:
                word = UNKNOWN_WORDS[int(rng.integers(len(UNKNOWN_WORDS)))]
            accent = ACCENTS[int(rng.integers(len(ACCENTS)))]
            speaker = speakers[int(rng.integers(len(speakers)))]
            specs.append(ClipSpec(
                label=label, word=word, voice=f"{accent}+{speaker}", speaker=speaker,
                rate_wpm=int(rng.integers(120, 221)), pitch=int(rng.integers(20, 81)),
                amplitude=int(rng.integers(60, 181)),
                seed=(cfg.seed, split_id, label, i)))
    return specs


def generate_split(specs: list[ClipSpec], workers: int = 2) -> dict[str, np.ndarray]:
    """Render the clips of one split (threads: the work is in espeak-ng subprocesses)."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        audio = list(pool.map(make_clip, specs))
    return {"audio": np.stack(audio) if audio else np.zeros((0, CLIP_SAMPLES), np.int16),
            "label": np.array([s.label for s in specs], np.int64),
            "speaker": np.array([s.speaker for s in specs]),
            "voice": np.array([s.voice for s in specs]),
            "word": np.array([s.word for s in specs])}


def generate(out: str | Path, cfg: DatasetConfig, workers: int = 2, verbose: bool = False
             ) -> Path:
    """Generate (or reuse the cached) dataset; returns its folder."""
    folder = Path(out) / cfg.key()
    if (folder / "meta.json").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    speakers = split_speakers(list_variants(), cfg)
    counts = {"train": cfg.train_per_class, "val": cfg.val_per_class,
              "test": cfg.test_per_class}
    for split in ("train", "val", "test"):
        t0 = time.perf_counter()
        data = generate_split(plan_split(split, speakers[split], counts[split], cfg), workers)
        np.savez(folder / f"{split}.npz", **data)
        if verbose:
            n = len(data["label"])
            dt = time.perf_counter() - t0
            print(f"{split}: {n} clips, {len(speakers[split])} speakers, {dt:.1f} s "
                  f"({n / max(dt, 1e-9):.0f} clips/s)")
    meta = {"config": asdict(cfg), "classes": CLASSES, "accents": ACCENTS,
            "speakers": speakers, "sample_rate": SAMPLE_RATE}
    (folder / "meta.json").write_text(json.dumps(meta, indent=1))
    return folder


def load_split(folder: str | Path, split: str) -> dict[str, np.ndarray]:
    """Load one split written by :func:`generate`."""
    with np.load(Path(folder) / f"{split}.npz") as z:
        return {k: z[k] for k in z.files}


def load_features(folder: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Integer log-mel features of a split as float32 log2 units ``[N, T, 40]`` (the
    front end's Q8 output / 256) and labels; cached beside the audio."""
    cache = Path(folder) / f"features_{split}.npz"
    if cache.is_file():
        with np.load(cache) as z:
            return z["x"], z["y"]
    data = load_split(folder, split)
    x = np.stack([logmel(a) for a in data["audio"]]).astype(np.float32) / 256.0
    np.savez(cache, x=x, y=data["label"])
    return x, data["label"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="data/kws")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-per-class", type=int, default=DatasetConfig.train_per_class)
    ap.add_argument("--val-per-class", type=int, default=DatasetConfig.val_per_class)
    ap.add_argument("--test-per-class", type=int, default=DatasetConfig.test_per_class)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args(argv)
    cfg = DatasetConfig(seed=a.seed, train_per_class=a.train_per_class,
                        val_per_class=a.val_per_class, test_per_class=a.test_per_class)
    folder = generate(a.out, cfg, workers=a.workers, verbose=True)
    print(folder)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
