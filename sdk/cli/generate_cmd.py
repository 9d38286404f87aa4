"""`edge generate MODEL.edge --text ...`: KV-cached integer generation from a generation
bundle (``sdk.compile_generation_model``; ``samples/slm/encdec.edge`` and
``samples/slm/deconly.edge`` are G2P models: each word of the text → its ARPAbet phonemes).

Text comes from ``--text`` or, without it (or with ``--text -``), from stdin, one or more
words per line. Output: one line per word, ``word<TAB>PHONEMES``; with ``--stream`` the
phonemes print as they are generated.
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
def command(model: str, text: str | None, strategy: str, beams: int, top_k: int, top_p: float,
            temperature: float, seed: int, max_new_tokens: int | None, stream: bool) -> None:
    """Generate with a KV-cached integer language model (G2P: words -> phonemes)."""
    import sdk

    if text is None or text == "-":
        text = sys.stdin.read()
    words = text.split()
    if not words:
        raise InputError("no input text: pass --text 'some words' or pipe text on stdin")
    gs = sdk.GenerationSession(model)
    if gs.meta.get("tokenizer", "g2p-char-arpabet") != "g2p-char-arpabet":
        raise InputError(f"{model} uses tokenizer {gs.meta.get('tokenizer')!r}; edge generate "
                         "knows g2p-char-arpabet only")
    tok = sdk.G2PTokenizer()
    cfg = sdk.GenerationConfig(max_new_tokens=max_new_tokens, strategy=strategy,
                               num_beams=beams, top_k=top_k, top_p=top_p,
                               temperature=temperature, seed=seed)
    cfg.check()
    ids = [tok.encode_word(w) for w in words]  # every word checked before any output
    for w, x in zip(words, ids):
        if stream and strategy != "beam":
            click.echo(f"{w}\t", nl=False)
            first = True
            for t in gs.stream(x, cfg):
                click.echo(("" if first else " ") + tok.token(t), nl=False)
                sys.stdout.flush()
                first = False
            click.echo("")
        else:
            click.echo(f"{w}\t" + " ".join(tok.decode(gs.generate(x, cfg).tokens)))
