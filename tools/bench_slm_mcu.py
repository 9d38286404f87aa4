"""The G2P models on the Cortex-M4 (QEMU mps2-an386): instructions per word and per token,
memory against the board, and a tokens/s model at its clock.

The committed ``samples/slm/encdec.edge`` (and ``deconly.edge``) run with
:class:`firmware_bridge.generation.DeviceGenerationSession` (encoder once per word, the
decoder step per token with its KV caches in the device's arena; the decoder-only prompt
through the step token by token) on held-out words; every step's integer logits from the
first output token on and every token are compared with the host's
:class:`sdk.GenerationSession`; the first token's and the later tokens' counts of the two
models are set side by side. Counts are QEMU instruction counts
(``-icount``: deterministic, independent of the host's load), not cycles; the time figures are
a model, **instructions / clock** at the board's 25 MHz, i.e. one instruction per cycle (a
Cortex-M4 runs most of these at 1 cycle; loads, multiplies-with-64-bit-accumulate and taken
branches take more, flash wait states more again), so real boards are slower than modelled.

    python tools/bench_slm_mcu.py [--quick] [--words N] [--models encdec,deconly] [--json FILE]
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))


def _op_table(names, types, ticks, conv) -> list[tuple[str, float]]:
    agg: collections.Counter = collections.Counter()
    for _, op, t in zip(names, types, ticks):
        agg[op] += conv(t)
    return agg.most_common()


def run(words: list[str], packed_kernels: bool, host, model: str = "encdec") -> dict:
    import sdk
    from firmware_bridge.client import DeviceClient
    from firmware_bridge.generation import (
        DeviceGenerationSession,
        pack_generation,
        program_flash_file,
    )
    from firmware_bridge.qemu import QemuFirmware, ticks_to_instructions
    from sdk.compile import load_bundle

    bundle = load_bundle(ROOT / "samples" / "slm" / f"{model}.edge")
    images = pack_generation(bundle, packed_kernels)
    tok = sdk.G2PTokenizer()
    enc, steps, per_word, mismatches, tokens = [], [], [], 0, 0
    first, later = [], []
    with tempfile.TemporaryDirectory() as d:
        flash = Path(d) / "flash.bin"
        program_flash_file(flash, images)
        with QemuFirmware(flash) as q:
            client = DeviceClient(q.url, timeout=1.0)
            dev = DeviceGenerationSession(bundle, client, packed_kernels=packed_kernels)

            def conv(t: int) -> float:
                return ticks_to_instructions(t, q.icount_shift)

            t0 = time.perf_counter()
            for w in words:
                ids = tok.encode_word(w)
                got = dev.generate(ids)
                feeds, state, lg = host.start(ids)
                ref = [lg] + [host._decode(feeds, [t], state) for t in got.tokens]
                n = dev.ticks["prompt_steps"]
                mine = dev.last_logits[max(n - 1, 0):]
                same = got.tokens == host.generate(ids).tokens and len(mine) <= len(ref) and \
                    all(np.array_equal(a, b) for a, b in zip(mine, ref))
                mismatches += not same
                tokens += len(got.tokens)
                e = conv(dev.ticks["encoder"])
                s = [conv(t) for t in dev.ticks["steps"]]
                n1 = max(n, 1)  # steps until the first token's logits
                enc.append(e)
                steps += s[n:] if n else s
                first.append(e + sum(s[:n1]))
                later += s[n1:]
                per_word.append(e + sum(s))
            wall = time.perf_counter() - t0
            dec_ops = _op_table(images.decoder.op_names, images.decoder.op_types,
                                client.get_profile(), conv)
            enc_ops = []
            if images.encoder is not None:
                dev.encode(tok.encode_word(words[0]))
                enc_ops = _op_table(images.encoder.op_names, images.encoder.op_types,
                                    client.get_profile(), conv)
            client.close()
    return {"model": model, "packed_kernels": packed_kernels, "words": len(words),
            "tokens": tokens, "first_token_instructions": statistics.mean(first),
            "instructions_per_later_token": statistics.mean(later),
            "steps": len(steps), "mismatching_words": mismatches,
            "encoder_instructions_per_word": statistics.mean(enc),
            "decoder_instructions_per_step": statistics.mean(steps),
            "decoder_instructions_step_min_max": [min(steps), max(steps)],
            "instructions_per_word": statistics.mean(per_word),
            "sizes": images.sizes, "qemu_wall_s": wall,
            "encoder_ops": enc_ops[:8], "decoder_ops": dec_ops[:10]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="4 words, SMLAD kernels only (< 1 min)")
    ap.add_argument("--words", type=int, default=20, help="held-out words (every k-th)")
    ap.add_argument("--models", default="encdec,deconly",
                    help="committed samples/slm models to run (the SMLAD kernels; encdec also "
                         "with the plain ones)")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args()

    import slm_data

    import sdk
    from firmware_bridge.build import toolchain_missing
    from firmware_bridge.qemu import qemu_missing

    why = toolchain_missing("m4") or toolchain_missing("host") or qemu_missing()
    if why:
        print(f"error: cannot run the Cortex-M4 emulation: {why}", file=sys.stderr)
        return 2
    n = 4 if args.quick else args.words
    held = slm_data.heldout_words()
    words = held[:: max(1, len(held) // n)][:n]
    target = tomllib.loads((ROOT / "targets" / "mps2-an386.toml").read_text())
    clock = float(target["cpu"]["clock_hz"])
    ram, flash = int(target["memory"]["ram_bytes"]), int(target["memory"]["flash_bytes"])
    models = ["encdec"] if args.quick else args.models.split(",")
    results = []
    for m in models:
        host = sdk.GenerationSession(ROOT / "samples" / "slm" / f"{m}.edge", compiled=False)
        results.append(run(words, True, host, m))
        if m == "encdec" and not args.quick:
            results.append(run(words, False, host, m))

    print(f"G2P models on QEMU mps2-an386 (Cortex-M4), {len(words)} held-out words; "
          "QEMU instruction counts (-icount), time modelled at 1 instruction/cycle, "
          f"{clock / 1e6:g} MHz")
    print("| model, kernels | bit-exact words | encoder instr/word | decoder instr/token | "
          "encoder ms | decoder ms/token | tokens/s | words/s | flash (both images) | "
          "arena (max) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        s = r["sizes"]
        s.setdefault("encoder_image", 0), s.setdefault("encoder_arena", 0)
        s.setdefault("encoder_weights", 0)
        e, d = r["encoder_instructions_per_word"], r["decoder_instructions_per_step"]
        per_word = r["instructions_per_word"]
        r["modelled"] = {"clock_hz": clock, "encoder_ms": e / clock * 1e3,
                      "decoder_ms_per_token": d / clock * 1e3, "tokens_per_s": clock / d,
                      "words_per_s": clock / per_word}
        img = s["encoder_image"] + s["decoder_image"]
        arena = max(s["encoder_arena"], s["decoder_arena"])
        r["memory"] = {"flash_bytes_target": flash, "ram_bytes_target": ram,
                       "images_bytes": img, "arena_bytes": arena}
        name = r["model"] + (", SMLAD (int16 weights)" if r["packed_kernels"]
                             else ", plain (int8 weights)")
        print(f"| {name} | {r['words'] - r['mismatching_words']}/{r['words']} | {e / 1e6:.2f} M | "
              f"{d / 1e6:.3f} M | {e / clock * 1e3:.0f} | {d / clock * 1e3:.1f} | "
              f"{clock / d:.1f} | {clock / per_word:.2f} | {img / 1024:.0f} KiB of "
              f"{flash / 2**20:g} MiB | {arena / 1024:.1f} KiB of {ram / 2**20:g} MiB |")
    by = {r["model"]: r for r in results if r["packed_kernels"]}
    if {"encdec", "deconly"} <= set(by):
        a, b = by["encdec"], by["deconly"]
        ft = a["first_token_instructions"] / b["first_token_instructions"] - 1
        tp = b["instructions_per_later_token"] / a["instructions_per_later_token"]
        print(f"\nenc-dec vs dec-only (same words, SMLAD): first token "
              f"{a['first_token_instructions'] / 1e6:.2f} M vs "
              f"{b['first_token_instructions'] / 1e6:.2f} M instructions ({ft:+.0%}); "
              f"later tokens {a['instructions_per_later_token'] / 1e6:.3f} M vs "
              f"{b['instructions_per_later_token'] / 1e6:.3f} M (throughput x{tp:.2f})")
    for r in results:
        s = r["sizes"]
        print(f"\n{r['model']}, {'SMLAD' if r['packed_kernels'] else 'plain'}: weights encoder "
              f"{s['encoder_weights'] / 1024:.0f} KiB, decoder {s['decoder_weights'] / 1024:.0f} "
              f"KiB; arena encoder {s['encoder_arena'] / 1024:.1f} KiB, decoder "
              f"{s['decoder_arena'] / 1024:.1f} KiB (KV caches and held cross K/V included); "
              f"{r['tokens']} tokens, {r['steps']} decoder steps (stop steps included); "
              f"QEMU wall {r['qemu_wall_s']:.1f} s (machine shared)")
        print("  decoder step by op: " + ", ".join(f"{o} {v / 1e3:.0f} k"
                                                  for o, v in r["decoder_ops"]))
        print("  encoder by op: " + ", ".join(f"{o} {v / 1e6:.2f} M"
                                             for o, v in r["encoder_ops"]))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0 if all(r["mismatching_words"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
