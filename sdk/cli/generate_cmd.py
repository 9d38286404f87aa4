"""`edge generate MODEL.edge --text ...`: KV-cached integer generation from a generation
bundle (``sdk.compile_generation_model``; ``samples/slm/encdec.edge`` and
``samples/slm/deconly.edge`` are G2P models: each word of the text → its ARPAbet phonemes;
``samples/slm/text/*.edge`` restore sentences: each line → its case, punctuation and
spelling). The tokenizer is the one the bundle's metadata names (``sdk.tokenizer_for``).

Text comes from ``--text`` or, without it (or with ``--text -``), from stdin, one or more
words per line (G2P) or one sentence per line (sentence models). Output: one line per word
or sentence, ``input<TAB>output``; with ``--stream`` the output prints as it is generated.
"""

from __future__ import annotations

import sys

import click

from sdk.errors import InputError


@click.command("generate")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--text", default=None, help="input text (default: read stdin; '-' = stdin)")
@click.option("--strategy", type=click.Choice(["greedy", "beam", "sample"]), default="greedy",
              show_default=True)
@click.option("--beams", default=4, show_default=True, help="beam width for --strategy beam")
@click.option("--top-k", default=0, show_default=True, help="sampling: keep the k best (0 off)")
@click.option("--top-p", default=1.0, show_default=True, help="sampling: nucleus mass (1 off)")
@click.option("--temperature", default=1.0, show_default=True)
@click.option("--seed", default=0, show_default=True, help="sampling seed")
@click.option("--max-new-tokens", type=int, default=None,
              help="at most this many tokens per input (default: the KV cache capacity)")
@click.option("--stream/--no-stream", default=False, help="print tokens as they come")
@click.option("--backend", type=click.Choice(["host", "mcu"]), default="host", show_default=True,
              help="mcu: the encoder and the KV-cached decoder step run on the device at --port")
@click.option("--port", help="serial URL of the device for --backend mcu (see `edge emulate`)")
def command(model: str, text: str | None, strategy: str, beams: int, top_k: int, top_p: float,
            temperature: float, seed: int, max_new_tokens: int | None, stream: bool,
            backend: str = "host", port: str | None = None) -> None:
    """Generate with a KV-cached integer language model (G2P: words -> phonemes; sentence
    models: one sentence per line -> restored)."""
    import sdk

    if backend == "mcu":
        from sdk.backends.mcu import require_port

        require_port(port)  # one-line error before reading any text
    if port and backend != "mcu":
        raise InputError("--port is the device for --backend mcu; add --backend mcu")
    if backend == "mcu" and strategy == "beam":
        raise InputError("beam search on the device needs one KV cache per beam; use "
                         "--strategy greedy or sample with --backend mcu")
    if text is None or text == "-":
        text = sys.stdin.read()
    if not text.split():
        raise InputError("no input text: pass --text 'some words' or pipe text on stdin")
    gs = _device_session(model, port) if backend == "mcu" else sdk.GenerationSession(model)
    tok = sdk.tokenizer_for(gs.meta.get("tokenizer", "g2p-char-arpabet"))
    sentences = isinstance(tok, sdk.TextTokenizer)
    sep = "" if sentences else " "
    if sentences:  # one input per non-empty line
        words = [line.strip() for line in text.splitlines() if line.strip()]
        max_src = int(gs.meta.get("config", {}).get("max_src", 0)) or None
        encode = lambda s: tok.encode_source(s, max_src)
        decode = tok.decode
    else:
        words = text.split()
        encode, decode = tok.encode_word, lambda ids: " ".join(tok.decode(ids))
    cfg = sdk.GenerationConfig(max_new_tokens=max_new_tokens, strategy=strategy,
                               num_beams=beams, top_k=top_k, top_p=top_p,
                               temperature=temperature, seed=seed)
    cfg.check()
    ids = [encode(w) for w in words]  # every input checked before any output
    for w, x in zip(words, ids):
        if stream and strategy != "beam":
            click.echo(f"{w}\t", nl=False)
            first = True
            for t in gs.stream(x, cfg):
                click.echo(("" if first else sep) + tok.token(t), nl=False)
                sys.stdout.flush()
                first = False
            click.echo("")
        else:
            click.echo(f"{w}\t" + decode(gs.generate(x, cfg).tokens))
        if backend == "mcu":
            _report_counts(gs, port)


def _device_session(model: str, port: str) -> object:
    from firmware_bridge.generation import DeviceGenerationSession
    from sdk.backends.mcu import connect

    client = connect(port)
    gs = DeviceGenerationSession(model, client, load=False)
    info = client.hello()
    have = {info.slot_crc[s] for s in (0, 1) if info.slot_valid[s]}
    images = [p for p in (gs.images.encoder, gs.images.decoder) if p is not None]
    if not {p.crc32 for p in images} <= have:
        kb = sum(len(p.data) for p in images) / 1024
        what = "encoder and decoder-step images" if len(images) == 2 else "decoder-step image"
        click.echo(f"loading the {what} ({kb:.0f} KiB) onto the device at {port} (over an "
                   "emulated UART this takes minutes)", err=True)
    gs.load()
    return gs


def _report_counts(gs: object, port: str) -> None:
    """One stderr line per word: the device's counts for the encoder and per decoder step."""
    from firmware_bridge.qemu import emulator_icount_shift, ticks_to_instructions
    from sdk.backends.mcu import count_unit

    info = gs.client.info
    shift = emulator_icount_shift(port)
    key, label = count_unit(info.board, info.tick_hz, port, shift)
    steps = gs.ticks["steps"]
    if key == "instructions":
        conv, unit = (lambda t: ticks_to_instructions(t, shift)), "instructions"
    elif key == "cycles":
        conv, unit = float, "cycles"
    else:
        conv, unit = (lambda t: t / info.tick_hz * 1e3), "ms"
    n = max(int(gs.ticks.get("prompt_steps", 0)), 1)  # steps up to the first token's logits
    later = steps[n:]
    per = sum(conv(t) for t in later) / max(1, len(later))
    enc = conv(gs.ticks["encoder"])
    first = enc + sum(conv(t) for t in steps[:n])
    fmt = (lambda v: f"{v / 1e6:.2f} M") if unit != "ms" else (lambda v: f"{v:.2f}")
    how = f"encoder {fmt(enc)} + 1 step" if gs.kind == "encdec" else f"{n} prompt steps"
    click.echo(f"# {info.board}: first token {fmt(first)} {unit} ({how}), then "
               f"{fmt(per)} {unit}/token over {len(later)} steps ({label})", err=True)
