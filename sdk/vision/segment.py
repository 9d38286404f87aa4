"""Run a segmentation model on frames: compile (cached), session, label map, modelled energy.

The committed model is ``samples/seg/seg_vit_mask.onnx`` (tools/train_seg.py): input ``x``
float32 [1, 3, S, S] (see :func:`sdk.vision.scenes.preprocess`), output ``logits`` [1, C, S, S].
Its integer bundle is compiled once, calibrated on generated train scenes, and kept in
``~/.cache/edge/seg/models`` under the ONNX file's SHA-256 and the SDK version.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sdk.errors import InputError

CALIB_SCENES = 32
CALIB_SEED = 11


def samples_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "samples" / "seg"


def default_model() -> Path:
    """The committed float model (samples/seg/seg_vit_mask.onnx of this checkout)."""
    path = samples_dir() / "seg_vit_mask.onnx"
    if not path.is_file():
        raise InputError(f"no segmentation model at {path}; train one with tools/train_seg.py "
                         "or pass --model MODEL.onnx|.edge")
    return path


def model_size(path: str | os.PathLike) -> int:
    return Path(path).stat().st_size


def input_size(onnx_or_bundle: Any) -> int:
    """The square input side of a segmentation model (from the session's input shape)."""
    shape = onnx_or_bundle.inputs[0].shape
    if len(shape) != 4 or shape[2] != shape[3]:
        raise InputError(f"a segmentation model takes [1, 3, S, S], this one takes {list(shape)}")
    return int(shape[2])


def calibration_set(n: int = CALIB_SCENES, size: int = 96, seed: int = CALIB_SEED
                    ) -> np.ndarray:
    """``[n, 1, 3, size, size]`` model inputs from generated train scenes."""
    from sdk.vision.scenes import cached_scenes, normalize_batch

    images, _ = cached_scenes(n, seed, "train", size)
    return normalize_batch(images)[:, None]


def compile_segmenter(onnx_path: str | os.PathLike, calib: np.ndarray | None = None,
                      cache: bool = True) -> Path:
    """The integer bundle of ``onnx_path`` (a cached ``.edge`` path). ``calib`` defaults to
    :func:`calibration_set`; a given ``calib`` is part of the cache key."""
    import sdk
    from sdk.compile import compile_model
    from sdk.vision.scenes import cache_dir

    onnx_path = Path(onnx_path)
    digest = hashlib.sha256(onnx_path.read_bytes())
    if calib is not None:
        digest.update(np.ascontiguousarray(calib, np.float32).tobytes())
    out = cache_dir() / "models" / f"{onnx_path.stem}-{digest.hexdigest()[:12]}-" \
                                   f"{sdk.__version__}.edge"
    if cache and out.is_file():
        return out
    if calib is None:
        from sdk.runtime.session import Session

        calib = calibration_set(size=input_size(Session(onnx_path)))
    bundle = compile_model(onnx_path, {"x": np.asarray(calib, np.float32)})
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    bundle.save(tmp)
    os.replace(tmp, out)
    return out


def modelled_energy_uj(model: str | os.PathLike, target: str | None) -> float | None:
    """Modelled energy of one inference on ``target``, µJ: the profiler's headline (active
    power × modelled time, as ``edge profile`` prints it), not the op-count table's per-layer
    sum, which only weights the breakdown."""
    from sdk.profile import profile_model

    try:
        rep = profile_model(model, target or "laptop", measure=False)
    except Exception:  # noqa: BLE001 - energy is a nicety of the demo, never fatal
        return None
    return rep.energy_per_inference_j * 1e6


def pixel_table(info: Any) -> np.ndarray:
    """uint8 pixel value → the model's integer input (``(p/255 − 0.5)/0.25`` on the input's
    grid, rounded half to even and clamped as the session's own quantizer does)."""
    qp = info.quant
    lo, hi = (-128, 127) if info.dtype == "int8" else (0, 255)
    x = (np.arange(256, dtype=np.float32) / np.float32(255.0) - np.float32(0.5)) / \
        np.float32(0.25)
    q = np.round(x / np.float32(qp.scale)) + int(qp.zero_point)
    return np.clip(q, lo, hi).astype(info.dtype)


@dataclass
class Segmenter:
    """A model session that turns RGB frames into label maps, timing each call."""

    model: Path
    backend: str | None = None
    target: str | None = None
    session: Any = field(init=False)
    size: int = field(init=False)
    classes: int = field(init=False)

    def __post_init__(self) -> None:
        from sdk.runtime.session import Session

        self.integer = Path(self.model).suffix == ".edge"
        # an integer bundle on the SDK's own kernels runs integers end to end: camera pixels
        # through a 256-entry table to the int8 input grid, int8 logits, integer argmax
        self.integer_io = self.integer and self.backend in (None, "reference") and \
            self.target is None
        self.session = Session(self.model, backend=self.backend, target=self.target,
                               integer_io=self.integer_io)
        self.size = input_size(self.session)
        self.classes = int(self.session.outputs[0].shape[1])
        self.pixel_table = None
        if self.integer_io:
            self.pixel_table = pixel_table(self.session.inputs[0])

    def logits(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run({"x": x})["logits"])

    def __call__(self, rgb: np.ndarray) -> tuple[np.ndarray, float]:
        """``(labels uint8 [S, S], seconds)`` of the frame's centre square (seconds: the model
        call). With integer I/O the argmax is taken over the int8 logits; otherwise over the
        dequantized ones (a per-tensor affine map, so the same classes)."""
        from sdk.vision.scenes import center_square, preprocess

        if self.pixel_table is not None:
            x = self.pixel_table[center_square(rgb, self.size)].transpose(2, 0, 1)[None]
        else:
            x = preprocess(rgb, self.size)
        t = time.perf_counter()
        y = self.logits(np.ascontiguousarray(x))
        dt = time.perf_counter() - t
        return y[0].argmax(0).astype(np.uint8), dt

    @property
    def plan(self) -> Any:
        return getattr(self.session, "plan", None)
