"""Continuous-speech streams for keyword spotting: keywords inside sentences, keyword-free talk.

Each *stream* is one espeak-ng speaker (an accent + a voice variant, split by variant exactly as
tools/kws_dataset.py splits them, so no held-out voice is heard in training) reading sentences
with pauses of 0.15–1.2 s between them, at its own rate, pitch and amplitude (each sentence
jittered around them). Text:

* keyword-free sentences: real English from Debian's ``fortunes`` (apt-get install fortunes;
  tools/bootstrap.sh installs it), cut into sentences of 3–18 words, keeping those with none
  of the ten keywords as a whole word (near misses such as "know", "gone", "upon", "often",
  "stopping" stay in: they are what must not fire). Sentences are split train/val/test by a
  hash of their text, so no test sentence is read in training.
* keyword sentences: one keyword inside a sentence of ordinary words, either a natural template
  ("please turn the heater off tonight") or a keyword-free fortune sentence with the keyword
  inserted at a random word position.

Streams are of two kinds: ``kw`` (a share of their sentences carry one keyword; the keyword's
start and end are known, see ``sdk.runtime.keyword_spotter.speak_sentence``) and ``free``
(keyword-free, for false alarms per hour). Conditions (the same speech, rendered per stream):

* ``clean``: speech only (a third of the streams through sox ``reverb``, a room), random level;
* ``snr10``: the same plus noise at 10 dB SNR against the speech level: white, pink or babble
  (four other voices of the same split reading other keyword-free text);
* ``mixed`` (training): SNR drawn from clean / 20 / 10 / 5 dB, noise kind drawn per stream.

Output under ``<out>/<config hash>/`` (cached, gitignored; nothing is committed)::

    <split>_<kind>_<condition>.npz  feats int16 [sum T, 40] (Q8 log2 log-mel, the SDK front
                                    end), offsets [n+1] (frame offsets of the streams),
                                    voice [n], ev_stream / ev_word / ev_start / ev_end (s)
    meta.json                       the configuration, hours per file, keyword counts
    <split>_<kind>_spans.npz        each sentence's stream, start, end (s) and text, saved by
                                    the render (streams reused from another set: replayed
                                    from the stream seeds on first use, :func:`spans`)

Validation holds 10 h of keyword-free speech per condition (one false alarm = 0.1/h, fine
enough to choose a ≤ 0.1 false alarm/h operating point), voices disjoint from training and test.
A stream depends only on its spec (seed, voice, length, conditions), so when a configuration
only adds streams to a split, the streams another cached configuration under ``--out`` already
rendered are reused (the same bits) and only the new ones are rendered.

Usage::

    python tools/kws_stream_data.py --out data/kws_stream --splits val test
    python tools/kws_stream_data.py --out data/kws_stream --splits train
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import kws_dataset

from sdk.errors import EdgeError
from sdk.runtime.keyword_spotter import speak_sentence

KEYWORDS = kws_dataset.KEYWORDS
FORTUNES = Path("/usr/share/games/fortunes")
SR = 16000

# Sentences that use each keyword the way people do; "{k}" is the keyword. Keyword-free otherwise.
TEMPLATES = {
    "yes": ["{k} I think that is right", "she said {k} to the offer", "{k} please do that",
            "I would say {k} to that plan", "the answer was {k} after all"],
    "no": ["there is {k} milk left in the fridge", "{k} I do not want that", "she said {k} twice",
           "we have {k} time for this today", "{k} thank you I am fine"],
    "up": ["please move it {k} a little", "turn the volume {k} now", "look {k} at the sky",
           "pick the box {k} from the floor", "scroll {k} to the top"],
    "down": ["turn the music {k} please", "sit {k} for a minute", "the price went {k} again",
             "put the glass {k} carefully", "scroll {k} to the end"],
    "left": ["turn {k} at the next corner", "the cup is to the {k} of the plate",
             "keep {k} after the bridge", "move the picture {k} a bit", "she {k} early today"],
    "right": ["turn {k} after the bakery", "that is {k} I agree", "the door is to the {k}",
              "do it {k} away please", "move the lamp {k} a little"],
    "on": ["switch the lights {k} please", "turn {k} the radio", "put the kettle {k}",
           "leave the heater {k} tonight", "keep the fan {k} for a while"],
    "off": ["please turn the heater {k} tonight", "switch the lights {k}", "take your shoes {k}",
            "turn the alarm {k} now", "the party was called {k}"],
    "stop": ["please {k} the music", "{k} the car here", "we should {k} for lunch",
             "the bus will {k} at the station", "{k} talking for a moment"],
    "go": ["let us {k} to the park", "{k} to the kitchen please", "we can {k} home now",
           "it is time to {k} to bed", "they will {k} together later"],
}
# What a stream's sentence may be: (text, kind); kind "kw" has exactly one keyword in it.
_WORD = re.compile(r"[a-z']+")


@dataclass(frozen=True)
class StreamConfig:
    """What determines the generated streams (its hash names the cache folder)."""

    seed: int = 0
    stream_s: float = 300.0  # length of one stream
    # hours of speech per split and kind
    test_kw_h: float = 1.5
    test_free_h: float = 10.0
    val_kw_h: float = 0.5
    # 10 h: one false alarm is 0.1/h, fine enough to choose a <= 0.1 FA/h point (2 h was 0.5/h)
    val_free_h: float = 10.0
    train_kw_h: float = 2.5
    train_free_h: float = 1.5
    kw_share: float = 0.6  # share of a kw stream's sentences that carry a keyword
    reverb_share: float = 0.33
    version: int = 1
    #: > 0: another draw of training streams (their voices, text and seeds), none shared with
    #: round 0's or any other round's; the validation and test streams do not depend on it
    train_round: int = 0

    def key(self) -> str:
        d = asdict(self)
        if not d["train_round"]:
            del d["train_round"]  # round 0 keeps the folders named before rounds existed
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


def split_of(text: str) -> str:
    """train / val / test of a sentence, by a hash of its text (70/10/20)."""
    h = int(hashlib.md5(text.encode()).hexdigest()[:8], 16) % 10
    return "test" if h < 2 else "val" if h < 3 else "train"


def fortune_sentences() -> dict[str, list[str]]:
    """Keyword-free fortune sentences per split (sorted, deduplicated)."""
    if not FORTUNES.is_dir():
        raise EdgeError(f"{FORTUNES} is missing: apt-get install fortunes (tools/bootstrap.sh "
                        "installs it)")
    kws = set(KEYWORDS)
    out: dict[str, set[str]] = {"train": set(), "val": set(), "test": set()}
    for f in sorted(FORTUNES.iterdir()):
        if f.suffix or not f.is_file():
            continue
        text = f.read_text(errors="replace")
        for para in text.split("\n%\n"):
            lines = [ln for ln in para.splitlines() if not ln.strip().startswith("--")]
            para = " ".join(lines)
            if "http" in para or "\t" in para or "|" in para or "{" in para:
                continue  # addresses, code, tables
            for sent in re.split(r"[.!?;:()\"]+|--", para):
                words = _WORD.findall(sent.lower())
                if not 3 <= len(words) <= 18 or kws & {w.strip("'") for w in words}:
                    continue
                if len(" ".join(words)) < 0.7 * len(sent.strip()):
                    continue  # mostly symbols or digits
                s = " ".join(words).strip("'")
                out[split_of(s)].add(s)
    return {k: sorted(v) for k, v in out.items()}


def keyword_sentence(word: str, free: list[str], rng: np.random.Generator) -> str:
    """One sentence with ``word`` inside: a template, or a fortune sentence with it inserted."""
    if rng.random() < 0.5:
        t = TEMPLATES[word]
        return t[int(rng.integers(len(t)))].format(k=word)
    words = free[int(rng.integers(len(free)))].split()
    at = int(rng.integers(len(words) + 1))
    return " ".join(words[:at] + [word] + words[at:])


@dataclass(frozen=True)
class StreamSpec:
    split: str
    kind: str  # "kw" or "free"
    index: int
    voice: str
    babble_voices: tuple[str, ...]
    seconds: float
    seed: tuple[int, ...]
    conditions: tuple[str, ...]


def _sox_reverb(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """sox ``reverb`` (reverberance, HF damping, room scale drawn) on float audio."""
    pcm = np.clip(np.rint(x * 16384.0), -32768, 32767).astype(np.int16).tobytes()
    args = [str(int(rng.integers(20, 70))), str(int(rng.integers(20, 80))),
            str(int(rng.integers(20, 90)))]
    raw = ["-t", "raw", "-r", str(SR), "-e", "signed", "-b", "16", "-c", "1"]
    res = subprocess.run(["sox", *raw, "-", *raw, "-", "reverb", *args], input=pcm,
                         capture_output=True, check=True)
    y = np.frombuffer(res.stdout, np.int16).astype(np.float64) / 16384.0
    return y[:len(x)] if len(y) >= len(x) else np.pad(y, (0, len(x) - len(y)))


def _speaker_settings(rng: np.random.Generator) -> tuple[int, int, int]:
    return int(rng.integers(120, 221)), int(rng.integers(20, 81)), int(rng.integers(60, 181))


def _read(text_pool: list[str], voice: str, seconds: float, rng: np.random.Generator,
          kw_share: float = 0.0, spans: list | None = None, truth_times: bool = True
          ) -> tuple[np.ndarray, list[tuple[str, float, float]], float]:
    """Sentences read by one speaker until ``seconds``: audio, keyword truth, speech RMS.

    ``spans``: a list that receives ``(text, start s, end s)`` of every sentence read.
    ``truth_times=False`` skips the keyword times (the extra espeak-ng runs they need); the
    audio and the draws from ``rng`` are the same."""
    rate, pitch, amp = _speaker_settings(rng)
    n = int(seconds * SR)
    out = np.zeros(n + 10 * SR)
    truth: list[tuple[str, float, float]] = []
    pos = int(rng.uniform(0.2, 1.0) * SR)
    sq, cnt = 0.0, 0
    while pos < n:
        if rng.random() < kw_share:
            word = KEYWORDS[int(rng.integers(len(KEYWORDS)))]
            text = keyword_sentence(word, text_pool, rng)
        else:
            text = text_pool[int(rng.integers(len(text_pool)))]
        r = int(np.clip(rate + rng.integers(-15, 16), 80, 260))
        p = int(np.clip(pitch + rng.integers(-8, 9), 0, 99))
        a, tr = speak_sentence(text, voice, r, p, amp,
                               KEYWORDS if kw_share > 0 and truth_times else ())
        if pos + len(a) > len(out):
            break
        if spans is not None:
            spans.append((text, pos / SR, (pos + len(a)) / SR))
        out[pos:pos + len(a)] += a
        sq += float(np.sum(a * a))
        cnt += int(np.count_nonzero(np.abs(a) > 1e-3))
        truth += [(w, pos / SR + t0, pos / SR + t1) for w, t0, t1 in tr]
        pos += len(a) + int(rng.uniform(0.15, 1.2) * SR)
    end = min(n, pos)
    truth = [t for t in truth if t[2] <= end / SR]
    if spans is not None:
        spans[:] = [sp for sp in spans if sp[1] < end / SR]
    return out[:end], truth, float(np.sqrt(sq / max(cnt, 1)))


_FAST = None


def fast_logmel(pcm: np.ndarray) -> np.ndarray:
    """:func:`sdk.audio.logmel` through its Numba twin (the same bits, many times faster)."""
    global _FAST
    if _FAST is None:
        from numba import njit

        from sdk.audio.logmel import frame_signal, logmel_tables
        from sdk.audio.logmel_fast import LogMelHopKernel, logmel_hop_kernel

        @njit(cache=False)
        def run(frames, window, bitrev, tw_re, tw_im, sp_re, sp_im, mel_t, mel_lo, mel_hi,
                lut, out):  # pragma: no cover - compiled
            for i in range(frames.shape[0]):
                logmel_hop_kernel(frames[i], window, bitrev, tw_re, tw_im, sp_re, sp_im,
                                  mel_t, mel_lo, mel_hi, lut, out[i])

        kern = LogMelHopKernel(logmel_tables())
        _FAST = (run, kern._args, kern.n_mels, frame_signal)
    run, args, n_mels, frame_signal = _FAST
    frames = np.ascontiguousarray(frame_signal(pcm))
    out = np.empty((len(frames), n_mels), np.int16)
    run(frames, *args, out)
    return out


def render(spec: StreamSpec, pools: dict[str, list[str]]) -> dict:
    """Synthesize one stream and its conditions → log-mel features per condition + truth."""
    rng = np.random.default_rng(list(spec.seed))
    pool = pools[spec.split]
    share = CFG_KW_SHARE if spec.kind == "kw" else 0.0
    spans: list[tuple[str, float, float]] = []
    speech, truth, rms = _read(pool, spec.voice, spec.seconds, rng, share, spans=spans)
    if rng.random() < CFG_REVERB_SHARE:
        speech = _sox_reverb(speech, rng)
    n = len(speech)
    kinds = ["white", "pink", "babble"]
    noise_kind = kinds[int(rng.integers(3))]
    if noise_kind == "babble":
        noise = np.zeros(n)
        for v in spec.babble_voices:
            b, _, _ = _read(pool, v, min(spec.seconds, 60.0), rng)
            if len(b):
                reps = int(np.ceil(n / len(b)))
                noise += np.roll(np.tile(b, reps)[:n], int(rng.integers(n)))
        noise /= np.sqrt(np.mean(noise ** 2)) + 1e-12
    else:
        noise = kws_dataset.colored_noise(n, noise_kind, rng)
    level = 10.0 ** (rng.uniform(-30.0, -3.0) / 20.0)
    feats = {}
    for cond in spec.conditions:
        snr = {"clean": None, "snr10": 10.0}.get(cond)
        if cond == "mixed":
            snr = [None, 20.0, 10.0, 5.0][int(rng.integers(4))]
        x = speech + (noise * rms * 10.0 ** (-snr / 20.0) if snr is not None else 0.0)
        x = x * (level / (np.max(np.abs(x)) + 1e-12))
        pcm = np.clip(np.rint(x * 32768.0), -32768, 32767).astype(np.int16)
        feats[cond] = fast_logmel(pcm)
    return {"feats": feats, "truth": truth, "voice": spec.voice, "noise": noise_kind,
            "spans": spans}


CFG_KW_SHARE = StreamConfig.kw_share
CFG_REVERB_SHARE = StreamConfig.reverb_share
_POOLS: dict[str, list[str]] = {}


def _render_worker(spec: StreamSpec) -> dict:
    return render(spec, _pools())


#: words espeak-ng says exactly as a keyword (the same phonemes in every accent the streams
#: use: "know" n'oU = "no", "write" r'aIt = "right"); the keyword-free text keeps them (they are
#: not the keyword as text), but no detector that hears only sound can tell them apart
HOMOPHONES = {"know": "no", "write": "right"}


def sentence_spans(spec: StreamSpec, pools: dict[str, list[str]] | None = None
                   ) -> list[tuple[str, float, float]]:
    """``(text, start s, end s)`` of every sentence the stream ``spec`` reads, replayed from its
    seed (the same draws as :func:`render`; espeak-ng runs once per sentence for its length,
    no keyword times, noise or features: about 1 % of real time)."""
    pools = pools or _pools()
    rng = np.random.default_rng(list(spec.seed))
    spans: list[tuple[str, float, float]] = []
    _read(pools[spec.split], spec.voice, spec.seconds, rng,
          CFG_KW_SHARE if spec.kind == "kw" else 0.0, spans=spans, truth_times=False)
    return spans


def _pools() -> dict[str, list[str]]:
    global _POOLS
    if not _POOLS:
        _POOLS = fortune_sentences()
    return _POOLS


def _spans_worker(spec: StreamSpec) -> list[tuple[str, float, float]]:
    return sentence_spans(spec, _pools())


def spans(folder: str | Path, split: str, kind: str, workers: int = 2) -> dict[str, np.ndarray]:
    """Sentence spans of every stream of a generated file (cached as
    ``<split>_<kind>_spans.npz``): ``stream`` [n], ``start`` / ``end`` [n] (s), ``text`` [n]."""
    folder = Path(folder)
    path = folder / f"{split}_{kind}_spans.npz"
    if path.is_file():
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    meta = json.loads((folder / "meta.json").read_text())
    cfg = StreamConfig(**meta["config"])
    specs = [s for s in plan(split, cfg, meta["speakers"][split]) if s.kind == kind]
    with ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
        res = list(pool.map(_spans_worker, specs, chunksize=1))
    out = _pack_spans(res)
    np.savez(path, **out)
    return out


def _pack_spans(res: list[list[tuple[str, float, float]]], first: int = 0
                ) -> dict[str, np.ndarray]:
    """Per-stream sentence spans as the arrays :func:`spans` returns (streams from ``first``)."""
    return {"stream": np.array([first + i for i, r in enumerate(res) for _ in r], np.int32),
            "start": np.array([a for r in res for _, a, _ in r], np.float64),
            "end": np.array([b for r in res for _, _, b in r], np.float64),
            "text": np.array([t for r in res for t, _, _ in r], dtype=str)}


def homophone_spans(sp: dict[str, np.ndarray]) -> list[tuple[int, str, float, float]]:
    """``(stream, keyword, start s, end s)`` of each sentence holding a word espeak-ng says
    exactly as that keyword (:data:`HOMOPHONES`)."""
    out = []
    for sid, text, a, b in zip(sp["stream"], sp["text"], sp["start"], sp["end"]):
        for w in set(str(text).split()) & set(HOMOPHONES):
            out.append((int(sid), HOMOPHONES[w], float(a), float(b)))
    return out


def plan(split: str, cfg: StreamConfig, speakers: list[str]) -> list[StreamSpec]:
    """Stream specs of one split: kw streams then free streams, voices cycled."""
    hours = {"kw": getattr(cfg, f"{split}_kw_h"), "free": getattr(cfg, f"{split}_free_h")}
    conds = ("mixed",) if split == "train" else ("clean", "snr10")
    sid = ["train", "val", "test"].index(split)
    # a training round > 0 extends every seed, so its draws share nothing with round 0's
    extra = (cfg.train_round,) if split == "train" and cfg.train_round else ()
    rng = np.random.default_rng([cfg.seed, sid, 99, *extra])
    specs = []
    for ki, kind in enumerate(("kw", "free")):
        for i in range(round(hours[kind] * 3600 / cfg.stream_s)):
            def voice() -> str:
                acc = kws_dataset.ACCENTS[int(rng.integers(len(kws_dataset.ACCENTS)))]
                return f"{acc}+{speakers[int(rng.integers(len(speakers)))]}"
            specs.append(StreamSpec(split, kind, i, voice(), tuple(voice() for _ in range(4)),
                                    cfg.stream_s, (cfg.seed, sid, ki, i, *extra), conds))
    return specs


SHARD = 6  # streams per cached shard: an interrupted run resumes, a partial set can be used


def _pack(res: list[dict], cond: str) -> dict[str, np.ndarray]:
    lens = [len(r["feats"][cond]) for r in res]
    ev = [(i, KEYWORDS.index(w), a, b) for i, r in enumerate(res) for w, a, b in r["truth"]]
    ev_arr = np.array(ev, np.float64).reshape(-1, 4)
    return {"feats": np.concatenate([r["feats"][cond] for r in res]),
            "offsets": np.concatenate([[0], np.cumsum(lens)]).astype(np.int64),
            "voice": np.array([r["voice"] for r in res]),
            "noise": np.array([r["noise"] for r in res]),
            "ev_stream": ev_arr[:, 0].astype(np.int64), "ev_word": ev_arr[:, 1].astype(np.int64),
            "ev_start": ev_arr[:, 2], "ev_end": ev_arr[:, 3]}


def _merge(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Concatenate packed files (stream indices and frame offsets shifted)."""
    out: dict[str, list] = {k: [] for k in parts[0]}
    n_streams, n_frames = 0, 0
    for i, d in enumerate(parts):
        out["feats"].append(d["feats"])
        out["offsets"].append(d["offsets"][(1 if i else 0):] + n_frames)
        out["ev_stream"].append(d["ev_stream"] + n_streams)
        for k in ("voice", "noise", "ev_word", "ev_start", "ev_end"):
            out[k].append(d[k])
        n_streams += len(d["offsets"]) - 1
        n_frames += int(d["offsets"][-1])
    return {k: np.concatenate(v) for k, v in out.items()}


def _save(path: Path, data: dict[str, np.ndarray]) -> None:
    tmp = path.with_name(path.name + ".part.npz")
    np.savez(tmp, **data)
    tmp.rename(path)


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def _slice(data: dict[str, np.ndarray], lo: int, hi: int) -> dict[str, np.ndarray]:
    """Streams ``lo``..``hi - 1`` of a packed file (the inverse of :func:`_merge`)."""
    off = data["offsets"]
    ev = (data["ev_stream"] >= lo) & (data["ev_stream"] < hi)
    return {"feats": data["feats"][off[lo]:off[hi]], "offsets": off[lo:hi + 1] - off[lo],
            "voice": data["voice"][lo:hi], "noise": data["noise"][lo:hi],
            "ev_stream": data["ev_stream"][ev] - lo, "ev_word": data["ev_word"][ev],
            "ev_start": data["ev_start"][ev], "ev_end": data["ev_end"][ev]}


def _reuse(out: Path, folder: Path, split: str, kind: str, specs: list[StreamSpec],
           names: dict[str, str], cfg: StreamConfig, verbose: bool) -> bool:
    """Streams another cached configuration under ``out`` already rendered: a file of the
    same stream specs (seeds, voices, length, conditions: so the same bits) is linked here; a
    file whose specs are the first streams of ``specs`` becomes this set's first shards (the
    rest is rendered); of several such files, the one holding the most of ``specs``. True
    when something was reused."""
    best: tuple[int, Path, dict[str, Path]] | None = None
    for other in sorted(out.glob("*/meta.json")):
        if other.parent == folder:
            continue
        try:
            ocfg = StreamConfig(**json.loads(other.read_text())["config"])
        except (TypeError, ValueError, KeyError):
            continue
        if (ocfg.kw_share, ocfg.reverb_share, ocfg.version) != (
                cfg.kw_share, cfg.reverb_share, cfg.version):
            continue  # render() reads these module-wide: same specs, other audio
        files = {c: other.parent / nm for c, nm in names.items()}
        if not all(p.is_file() for p in files.values()):
            continue
        speakers = json.loads(other.read_text())["speakers"][split]
        theirs = [s for s in plan(split, ocfg, speakers) if s.kind == kind]
        n = len(theirs)
        if not n or n > len(specs) or theirs != specs[:n]:
            continue
        if n != len(specs):
            n -= n % SHARD
        if n and (best is None or n > best[0]):
            best = (n, other.parent, files)  # the longest prefix of ours
    if best is None:
        return False
    n, other_folder, files = best
    if n == len(specs):
        for c, p in files.items():
            dst = folder / names[c]
            if not dst.exists():
                try:
                    dst.hardlink_to(p)
                except OSError:
                    _save(dst, _load_npz(p))
        if verbose:
            print(f"{split} {kind}: the same {n} streams as {other_folder.name}, linked")
        return True
    for c, p in files.items():
        data = _load_npz(p)
        for k in range(0, n, SHARD):
            dst = folder / f"{names[c][:-4]}.shard{k // SHARD:03d}.npz"
            if not dst.is_file():
                _save(dst, _slice(data, k, k + SHARD))
    if verbose:
        print(f"{split} {kind}: the first {n} of {len(specs)} streams from {other_folder.name}")
    return True


def generate(out: str | Path, cfg: StreamConfig, splits: list[str], workers: int = 2,
             verbose: bool = True) -> Path:
    """Generate the missing files of ``splits`` (cached, in shards of :data:`SHARD` streams
    merged at the end); returns the folder."""
    folder = Path(out) / cfg.key()
    folder.mkdir(parents=True, exist_ok=True)
    speakers = kws_dataset.split_speakers(kws_dataset.list_variants(),
                                          kws_dataset.DatasetConfig(seed=cfg.seed))
    meta_path = folder / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {
        "config": asdict(cfg), "speakers": speakers, "keywords": KEYWORDS, "files": {}}
    for split in splits:
        specs = plan(split, cfg, speakers[split])
        conds = specs[0].conditions
        for kind in ("kw", "free"):
            names = {c: f"{split}_{kind}_{c}.npz" for c in conds}
            if all((folder / nm).is_file() for nm in names.values()):
                continue
            ks = [s for s in specs if s.kind == kind]
            t0 = time.perf_counter()
            if _reuse(Path(out), folder, split, kind, ks, names, cfg, verbose) and all(
                    (folder / nm).is_file() for nm in names.values()):
                for nm in names.values():
                    data = _load_npz(folder / nm)
                    meta["files"][nm] = {"streams": len(data["offsets"]) - 1,
                                         "hours": float(data["offsets"][-1]) / 100 / 3600,
                                         "keywords": len(data["ev_word"])}
                meta_path.write_text(json.dumps(meta, indent=1))
                continue
            with ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
                for k in range(0, len(ks), SHARD):
                    shard = {c: folder / f"{nm[:-4]}.shard{k // SHARD:03d}.npz"
                             for c, nm in names.items()}
                    if all(p.is_file() for p in shard.values()):
                        continue
                    res = list(pool.map(_render_worker, ks[k:k + SHARD], chunksize=1))
                    # the sentence spans the render read, saved before the features (a shard
                    # counts as done once its features are): spans() then needs no replay
                    _save(folder / f"{split}_{kind}_spans.shard{k // SHARD:03d}.npz",
                          _pack_spans([r["spans"] for r in res], k))
                    for c, p in shard.items():
                        _save(p, _pack(res, c))
                    if verbose:
                        print(f"{split} {kind}: streams {k + len(res)}/{len(ks)} "
                              f"{time.perf_counter() - t0:.0f} s", flush=True)
            for c, nm in names.items():
                shards = sorted(folder.glob(f"{nm[:-4]}.shard*.npz"))
                data = _merge([_load_npz(p) for p in shards])
                _save(folder / nm, data)
                for p in shards:
                    p.unlink()
                hours = float(data["offsets"][-1]) / 100 / 3600
                meta["files"][nm] = {"streams": len(data["offsets"]) - 1, "hours": hours,
                                     "keywords": len(data["ev_word"])}
                meta_path.write_text(json.dumps(meta, indent=1))
            _merge_spans(folder, split, kind, (len(ks) + SHARD - 1) // SHARD)
            if verbose:
                print(f"{split} {kind}: {len(ks)} streams, {hours:.2f} h, "
                      f"{len(data['ev_word'])} keywords, {time.perf_counter() - t0:.0f} s",
                      flush=True)
    return folder


def _merge_spans(folder: Path, split: str, kind: str, n_shards: int) -> None:
    """Join the span shards the renders saved into ``<split>_<kind>_spans.npz`` when every
    shard has one (shards reused from another set have none: :func:`spans` replays those)."""
    parts = [folder / f"{split}_{kind}_spans.shard{k:03d}.npz" for k in range(n_shards)]
    if all(p.is_file() for p in parts):
        got = [_load_npz(p) for p in parts]
        _save(folder / f"{split}_{kind}_spans.npz",
              {k: np.concatenate([g[k] for g in got]) for k in got[0]})
    for p in folder.glob(f"{split}_{kind}_spans.shard*.npz"):
        p.unlink()


def load(folder: str | Path, split: str, kind: str, cond: str, partial: bool = False
         ) -> dict[str, np.ndarray]:
    """One file written by :func:`generate`; ``partial``: while it is still being generated,
    the shards finished so far."""
    p = Path(folder) / f"{split}_{kind}_{cond}.npz"
    if p.is_file():
        return _load_npz(p)
    shards = sorted(Path(folder).glob(f"{p.stem}.shard*.npz"))
    if partial and shards:
        return _merge([_load_npz(s) for s in shards])
    raise EdgeError(f"{p} is missing; run tools/kws_stream_data.py --splits {split}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="data/kws_stream")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--splits", nargs="+", default=["val", "test", "train"],
                    choices=["train", "val", "test"])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--test-free-hours", type=float, default=StreamConfig.test_free_h)
    ap.add_argument("--train-kw-hours", type=float, default=StreamConfig.train_kw_h,
                    help="hours of training streams with keywords (more: another cache folder; "
                         "the streams an existing folder already holds are reused)")
    ap.add_argument("--train-free-hours", type=float, default=StreamConfig.train_free_h)
    ap.add_argument("--train-round", type=int, default=0,
                    help="> 0: a fresh draw of training streams (each stream's voices, its "
                         "sentences from the training text, its noise and levels drawn anew), for "
                         "a model that has seen round 0's; validation and test are unchanged")
    a = ap.parse_args(argv)
    if a.train_round < 0:
        ap.error(f"--train-round {a.train_round}: a round is 0 or more")
    if a.train_round and set(a.splits) != {"train"}:
        ap.error("--train-round draws training streams only: pass --splits train")
    cfg = StreamConfig(seed=a.seed, test_free_h=a.test_free_hours, train_kw_h=a.train_kw_hours,
                       train_free_h=a.train_free_hours, train_round=a.train_round)
    print(generate(a.out, cfg, a.splits, a.workers))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
