"""The sounddevice capture path through a REAL PortAudio device fed from a file.

ALSA's ``type file`` PCM with ``infile`` (raw S16_LE) over ``slave.pcm "null"`` is a capture
device that PortAudio lists and opens like a microphone; its callbacks deliver the file's
samples (bit-exact, not paced in real time). ALSA reads its configuration when PortAudio
starts, so each capture runs in a subprocess with ``ALSA_CONFIG_PATH`` set before
``import sounddevice``. The file holds espeak-ng speech.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import sdk
from sdk.runtime.audio_input import synthesize_speech

ALSA_CONF = Path("/usr/share/alsa/alsa.conf")
WORDS = ["yes", "stop", "go"]
PY = sys.executable


def _portaudio_missing() -> str | None:
    if not ALSA_CONF.is_file():
        return "ALSA configuration (alsa-utils / libasound2) not installed"
    probe = subprocess.run([PY, "-c", "import sounddevice"], check=False, capture_output=True,
                           text=True)
    if probe.returncode != 0:
        return f"sounddevice/PortAudio (libportaudio2) not installed: {probe.stderr[-200:]}"
    return None


pytestmark = [
    pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed"),
    pytest.mark.skipif(_portaudio_missing() is not None, reason=str(_portaudio_missing())),
]


@pytest.fixture(scope="module")
def speech():
    samples, _ = synthesize_speech(WORDS, voice="en-us+m3", gap_s=1.0)
    return samples


@pytest.fixture(scope="module")
def file_device(tmp_path_factory, speech):
    """An ALSA config defining capture device ``kwsfile`` that plays the speech file."""
    d = tmp_path_factory.mktemp("alsa")
    raw = d / "speech.raw"
    speech.astype("<i2").tofile(raw)
    conf = d / "asound.conf"
    conf.write_text(textwrap.dedent(f"""\
        pcm.kwsfile {{
            type file
            slave.pcm "null"
            file "/dev/null"
            infile "{raw}"
            format "raw"
        }}
        """))
    env = dict(os.environ, ALSA_CONFIG_PATH=f"{ALSA_CONF}:{conf}")
    return env


def _run(code: str, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-c", code], check=False, env=env, cwd=cwd, capture_output=True,
                          text=True,
                          timeout=120)


def test_portaudio_lists_the_file_device(file_device, tmp_path):
    code = ("from sdk.runtime import find_input_device\n"
            "dev, note = find_input_device('kwsfile')\n"
            "print(dev.name, dev.host_api, dev.max_input_channels)\n")
    r = _run(code, file_device, tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[:2] == ["kwsfile", "ALSA"]


def test_microphone_stream_delivers_the_file_bit_exactly(file_device, speech, tmp_path):
    seconds = len(speech) / 16000
    code = textwrap.dedent(f"""\
        import numpy as np
        from sdk.runtime import MicrophoneStream, find_input_device
        dev, _ = find_input_device("kwsfile")
        mic = MicrophoneStream(dev, chunk=160, duration_s={seconds!r})
        chunks = list(mic)
        np.save("captured.npy", np.concatenate(chunks))
        print(len(chunks), {{len(c) for c in chunks[:-1]}}, mic.overflows)
        """)
    r = _run(code, file_device, tmp_path)
    assert r.returncode == 0, r.stderr
    captured = np.load(tmp_path / "captured.npy")
    assert captured.dtype == np.int16
    assert np.array_equal(captured, speech)
    assert "{160}" in r.stdout  # the callback's block size


def test_keywords_detected_through_the_device_equal_the_file_path(file_device, speech,
                                                                  tmp_path):
    from sdk.cli.kws_demo import default_model

    model = default_model()
    code = textwrap.dedent(f"""\
        import sdk
        from sdk.runtime import MicrophoneStream, find_input_device
        dev, _ = find_input_device("kwsfile")
        spotter = sdk.KeywordSpotter({str(model)!r})
        for chunk in MicrophoneStream(dev, duration_s={len(speech) / 16000!r}):
            for r in spotter.push(chunk):
                if r.event:
                    print(r.event.keyword, r.event.hop, repr(r.event.confidence))
        """)
    r = _run(code, file_device, tmp_path)
    assert r.returncode == 0, r.stderr
    live = [tuple(line.split()) for line in r.stdout.splitlines()]
    offline = [(e.keyword, str(e.hop), repr(e.confidence))
               for e in sdk.KeywordSpotter(model).spot(speech)]
    assert live == offline
    assert [k for k, _, _ in live] == WORDS


def test_edge_demo_kws_live_uses_the_device(file_device, speech, tmp_path):
    seconds = len(speech) / 16000
    code = ("import sys\nfrom sdk.cli.main import main\n"
            f"sys.exit(main(['demo', 'kws', '--live', '--device', 'kwsfile', "
            f"'--seconds', '{seconds}']))\n")
    r = _run(code, file_device, tmp_path)
    assert r.returncode == 0, r.stderr
    assert "live: kwsfile (ALSA)" in r.stdout
    detected = [line.split("detected")[1].split()[0].strip("'") for line in
                r.stdout.splitlines() if "detected" in line]
    assert detected == WORDS


def test_missing_device_falls_back_to_the_file_with_one_line(file_device, tmp_path):
    code = ("import sys\nfrom sdk.cli.main import main\n"
            "sys.exit(main(['demo', 'kws', '--live', '--device', 'no-such-mic', '--fast', '--words', "
            "'--seconds', '3']))\n")
    r = _run(code, file_device, tmp_path)
    assert r.returncode == 0, r.stderr
    notes = [line for line in r.stdout.splitlines() if "no audio capture device" in line]
    assert len(notes) == 1
    assert notes[0].startswith("no audio capture device: no capture device named "
                               "'no-such-mic' (have: [")
    assert "'kwsfile'" in notes[0] and notes[0].endswith("; streaming a WAV file instead")
    assert "generated speech" in r.stdout and "detected 'yes'" in r.stdout
