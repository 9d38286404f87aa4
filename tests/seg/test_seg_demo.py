"""`edge demo seg` on real sources: a video written by OpenCV's encoder, an image folder, a
camera index that does not exist (one-line notice, generator fallback), bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import sdk
from sdk.cli.main import main

ROOT = Path(__file__).resolve().parents[2]


def _edge(capsys, *args):
    rc = main([str(a) for a in args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def _frame_lines(out: str) -> list[str]:
    return [ln for ln in out.splitlines() if ln.startswith("frame ")]


def test_a_video_written_by_opencv_drives_the_demo(seg_bundle, tmp_path, capsys) -> None:
    import cv2

    images, _ = sdk.vision.make_scenes(5, seed=2, split="test", size=80)
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (80, 80))
    assert writer.isOpened()
    for im in images:
        writer.write(cv2.cvtColor(im, cv2.COLOR_RGB2BGR))
    writer.release()
    # read back through VideoCapture: the demo sees what was written
    cap = cv2.VideoCapture(str(path))
    n_read = 0
    while cap.read()[0]:
        n_read += 1
    cap.release()
    assert n_read == 5
    last = tmp_path / "last.png"
    rc, out, err = _edge(capsys, "demo", "seg", "--source", path, "--model", seg_bundle,
                         "--max-fps", 0, "--save", last)
    assert rc == 0, err
    assert f"source: video file {path}" in out
    assert len(_frame_lines(out)) == 5  # every frame of the file, then the end of the file
    assert "5 frames in" in out
    shot = cv2.imread(str(last))
    assert shot.shape[0] == 400 and shot.shape[1] > 400  # 5x enlarged, plus the legend column


def test_an_image_folder_in_turn(seg_bundle, tmp_path, capsys) -> None:
    import cv2

    images, _ = sdk.vision.make_scenes(2, seed=3, split="test", size=64)
    for i, im in enumerate(images):
        cv2.imwrite(str(tmp_path / f"{i}.png"), cv2.cvtColor(im, cv2.COLOR_RGB2BGR))
    rc, out, err = _edge(capsys, "demo", "seg", "--source", tmp_path, "--model", seg_bundle,
                         "--frames", 5, "--loop", "--max-fps", 0)
    assert rc == 0, err
    assert "image folder" in out and "(2 images)" in out
    assert len(_frame_lines(out)) == 5


def test_a_missing_camera_is_one_line_and_falls_back(seg_bundle) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "sdk.cli.main", "demo", "seg", "--source", "9",
                        "--model", str(seg_bundle), "--frames", "2", "--max-fps", "0"],
                       capture_output=True, text=True, timeout=240, env=env, cwd=ROOT,
                       check=False)
    assert r.returncode == 0, r.stderr
    notices = [ln for ln in (r.stdout + r.stderr).splitlines() if "camera" in ln.lower()]
    assert notices == ["camera index 9 could not be opened: falling back to the scene generator"]
    assert r.stderr.strip() == "", r.stderr  # no OpenCV warnings on top of the notice
    assert "source: scene generator" in r.stdout
    assert len(_frame_lines(r.stdout)) == 2


@pytest.mark.parametrize("args, needle", [
    (["--source", "no/such/clip.avi"], "neither a camera index"),
    (["--source", "videotestsrc ! autovideosink"], "appsink"),
])
def test_bad_sources_are_one_line_errors(seg_bundle, capsys, args, needle) -> None:
    rc, _, err = _edge(capsys, "demo", "seg", *args, "--model", seg_bundle, "--frames", 1)
    assert rc != 0
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0], err


def test_a_file_that_is_not_a_video_is_refused(seg_bundle, tmp_path, capsys) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("not a video")
    rc, _, err = _edge(capsys, "demo", "seg", "--source", bad, "--model", seg_bundle)
    assert rc != 0 and "not a video OpenCV can decode" in err
    assert len([ln for ln in err.splitlines() if ln.strip()]) == 1


def test_bad_serve_address_is_refused(seg_bundle, capsys) -> None:
    rc, _, err = _edge(capsys, "demo", "seg", "--serve", "localhost", "--model", seg_bundle)
    assert rc != 0 and "HOST:PORT" in err


def test_window_without_a_gui_build_is_one_notice(seg_bundle, capsys) -> None:
    import cv2

    try:  # a GUI build with a display would open the window: nothing to check then
        cv2.namedWindow("probe")
        cv2.destroyAllWindows()
        pytest.skip("this OpenCV opens windows")
    except cv2.error:
        pass
    rc, out, err = _edge(capsys, "demo", "seg", "--window", "--model", seg_bundle,
                         "--frames", 1, "--max-fps", 0)
    assert rc == 0, err
    notes = [ln for ln in out.splitlines() if ln.startswith("no window")]
    assert len(notes) == 1 and "--serve HOST:PORT" in notes[0]
    assert len(_frame_lines(out)) == 1
