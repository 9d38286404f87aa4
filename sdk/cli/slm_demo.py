"""`edge demo slm`: grapheme-to-phoneme with the committed integer encoder-decoder.

Words typed (or piped) in, phonemes streamed out token by token from the KV-cached integer
decoder, with the time to the first phoneme and per phoneme. ``--speak`` says each result
with espeak-ng's phoneme input (``[[...]]``) where espeak-ng is installed (one line saying so
where it is not). ``--model`` picks another generation bundle (e.g. samples/slm/deconly.edge).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import click

DEFAULT = Path(__file__).resolve().parents[2] / "samples" / "slm" / "encdec.edge"


@click.command("slm")
@click.option("--model", type=click.Path(dir_okay=False), default=None,
              help="generation bundle (default: samples/slm/encdec.edge)")
@click.option("--words", default=None, help="words to convert (default: read stdin)")
@click.option("--speak/--no-speak", default=False, help="say each result with espeak-ng")
def command(model: str | None, words: str | None, speak: bool) -> None:
    """G2P demo: words in, phonemes streamed out by the integer KV-cached decoder."""
    import sdk
    from sdk.text import espeak_phonemes

    path = Path(model) if model else DEFAULT
    if not path.is_file():
        raise sdk.InputError(f"no model at {path}; pass --model MODEL.edge "
                             "(tools/slm_eval.py --compile builds samples/slm/*.edge)")
    gs = sdk.GenerationSession(path)
    tok = sdk.G2PTokenizer()
    espeak = shutil.which("espeak-ng") if speak else None
    if speak and espeak is None:
        click.echo("espeak-ng is not installed: phonemes are printed, not spoken", err=True)
    interactive = words is None and sys.stdin.isatty()
    if interactive:
        click.echo(f"{path.name} ({gs.kind}, KV cache {gs.capacity}); type words, "
                   "Ctrl-D to end", err=True)
    lines = [words] if words is not None else sys.stdin
    for line in lines:
        for w in line.split():
            try:
                ids = tok.encode_word(w)
            except sdk.InputError as exc:
                click.echo(f"{w}\t(skipped: {exc})")
                continue
            click.echo(f"{w}\t", nl=False)
            t0 = time.perf_counter()
            first, phones = None, []
            for t in gs.stream(ids):
                if first is None:
                    first = time.perf_counter() - t0
                phones.append(tok.token(t))
                click.echo(("" if len(phones) == 1 else " ") + phones[-1], nl=False)
                sys.stdout.flush()
            total = time.perf_counter() - t0
            click.echo(f"\t[{1000 * (first or total):.1f} ms first, "
                       f"{1000 * total / max(1, len(phones)):.1f} ms/phoneme]")
            if espeak is not None and phones:
                subprocess.run([espeak, espeak_phonemes(phones)], check=False,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
