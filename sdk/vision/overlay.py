"""Colour overlay of a label map on a frame, with a legend and a stats line."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

PALETTE = np.array([
    [0, 0, 0],        # background: left as the frame
    [220, 70, 40],    # brick
    [40, 200, 60],    # grass
    [150, 150, 170],  # gravel
    [255, 200, 140],  # face
    [230, 140, 0],    # fur
    [240, 230, 0],    # coins
    [30, 120, 255],   # text
], np.uint8)
"""RGB colour per class (index 0, background, is not painted)."""


def palette(n: int) -> np.ndarray:
    """``n`` RGB colours: :data:`PALETTE`, extended by a fixed-seed random colour per class."""
    if n <= len(PALETTE):
        return PALETTE[:n]
    extra = np.random.default_rng(0).integers(40, 256, (n - len(PALETTE), 3)).astype(np.uint8)
    return np.concatenate([PALETTE, extra])


def upsample_labels(labels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of a label map ``[h, w]`` (integer index arithmetic,
    ``src = floor(i·h/H)``, as the integer ResizeNearest)."""
    labels = np.asarray(labels)
    h, w = labels.shape
    ys = (np.arange(height) * h) // height
    xs = (np.arange(width) * w) // width
    return labels[ys[:, None], xs[None, :]]


def overlay(frame: np.ndarray, labels: np.ndarray, classes: Sequence[str], alpha: float = 0.55,
            stats: str | None = None, legend: bool = True, min_height: int = 360) -> np.ndarray:
    """``frame`` (RGB uint8 ``[H, W, 3]``) with each non-background pixel of ``labels`` (a
    label map of the frame's square centre crop, any resolution) blended with its class
    colour; a legend column on the right (classes present bold-boxed) and ``stats`` on top.
    A frame lower than ``min_height`` is first enlarged by an integer factor (nearest).
    Returns a new RGB image ``[H', W' + legend, 3]``."""
    import cv2

    frame = np.ascontiguousarray(np.asarray(frame, np.uint8))
    h, w = frame.shape[:2]
    if h < min_height:  # small frames are shown enlarged, so the legend stays readable
        k = -(-min_height // h)
        frame = cv2.resize(frame, (w * k, h * k), interpolation=cv2.INTER_NEAREST)
        h, w = frame.shape[:2]
    s = min(h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    lab = upsample_labels(labels, s, s)
    pal = palette(len(classes)).astype(np.float32)
    out = frame.astype(np.float32)
    crop = out[y0:y0 + s, x0:x0 + s]
    paint = lab > 0
    crop[paint] = (1 - alpha) * crop[paint] + alpha * pal[lab[paint]]
    out = np.clip(out, 0, 255).astype(np.uint8)
    if s < w or s < h:  # the part the model did not see, dimmed
        cv2.rectangle(out, (x0, y0), (x0 + s - 1, y0 + s - 1), (255, 255, 255), 1)
    scale = max(0.35, h / 480.0)
    if stats:
        th = int(22 * scale) + 4
        band = out[:th].astype(np.float32) * 0.4
        out[:th] = band.astype(np.uint8)
        cv2.putText(out, stats, (4, th - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.5 * scale,
                    (255, 255, 255), 1, cv2.LINE_AA)
    if not legend:
        return out
    lw = int(120 * scale)
    panel = np.full((h, lw, 3), 32, np.uint8)
    present = set(np.unique(lab).tolist())
    row = max(12, min(int(26 * scale), h // max(1, len(classes))))
    for i, name in enumerate(classes):
        y = 6 + i * row
        color = tuple(int(c) for c in palette(len(classes))[i])
        cv2.rectangle(panel, (6, y), (6 + row - 6, y + row - 6), color if i else (90, 90, 90), -1)
        if i in present:
            cv2.rectangle(panel, (4, y - 2), (8 + row - 6, y + row - 4), (255, 255, 255), 1)
        cv2.putText(panel, name, (12 + row - 6, y + row - 9), cv2.FONT_HERSHEY_SIMPLEX,
                    0.42 * scale, (255, 255, 255) if i in present else (150, 150, 150), 1,
                    cv2.LINE_AA)
    return np.concatenate([out, panel], axis=1)


def encode_jpeg(rgb: np.ndarray, quality: int = 80) -> bytes:
    """RGB uint8 → JPEG bytes (OpenCV)."""
    import cv2

    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                           [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()
