"""Frame sources for the segmentation demo, all yielding RGB uint8 frames.

``open_source(spec)``:

* ``None`` / ``"generator"``: generated scenes (held-out test split), a new one per frame;
* ``"photos"``: the real photographs scikit-image ships, in turn;
* an integer (``"0"``): a camera by OpenCV index (``cv2.VideoCapture(i)``);
* ``/dev/video*``: a V4L2 device path (``cv2.CAP_V4L2``);
* a string containing ``!``: a GStreamer pipeline (``cv2.CAP_GSTREAMER``, as Jetson CSI
  cameras need, e.g. ``nvarguscamerasrc ! ... ! appsink``), ending in ``appsink``;
* a folder: its images (png/jpg/bmp/tif), sorted, in turn;
* a file: a video file read through ``cv2.VideoCapture``.

A camera (index, V4L2 path, GStreamer pipeline) that cannot be opened or gives no frame raises
:class:`SourceUnavailable` with a one-line reason; the demo then says so on one line and falls
back to the generator. A path that does not exist is an :class:`~sdk.errors.InputError`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sdk.errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class SourceUnavailable(InputError):
    """A camera that exists in the spec but cannot be opened or read (one-line reason)."""


class FrameSource:
    """``read()`` → the next RGB frame, or None at the end; ``close()``; ``name``;
    ``live`` (a camera: frames come at its own pace)."""

    name = "source"
    live = False

    def read(self) -> np.ndarray | None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> FrameSource:  # noqa: PYI034
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class GeneratorSource(FrameSource):
    """Generated scenes of the test split (:func:`sdk.vision.scenes.make_scene`), seeded."""

    def __init__(self, size: int = 240, seed: int = 0, limit: int | None = None) -> None:
        self.size, self.limit, self.count = int(size), limit, 0
        self.rng = np.random.default_rng([int(seed), 99])
        self.name = f"scene generator ({self.size}x{self.size}, seed {seed})"

    def read(self) -> np.ndarray | None:
        from sdk.vision.scenes import make_scene

        if self.limit is not None and self.count >= self.limit:
            return None
        self.count += 1
        return make_scene(self.rng, self.size, "test")[0]


class ListSource(FrameSource):
    """Frames from a list of RGB images, in turn (``loop`` starts again at the end)."""

    def __init__(self, frames: list[np.ndarray], name: str, loop: bool = True) -> None:
        if not frames:
            raise InputError(f"{name} holds no images")
        self.frames, self.name, self.loop, self.i = frames, name, loop, 0

    def read(self) -> np.ndarray | None:
        if self.i >= len(self.frames):
            if not self.loop:
                return None
            self.i = 0
        frame = self.frames[self.i]
        self.i += 1
        return frame


def image_folder(path: Path, loop: bool = True) -> ListSource:
    """The images of a folder (sorted by name) as a :class:`ListSource`."""
    import cv2

    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"{path} holds no images ({', '.join(IMAGE_SUFFIXES)}); pass a folder "
                         "of images, a video file or a camera")
    frames = []
    for f in files:
        bgr = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if bgr is None:
            raise InputError(f"{f} is not a readable image; remove it from the folder")
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    return ListSource(frames, f"image folder {path} ({len(frames)} images)", loop)


class CaptureSource(FrameSource):
    """A ``cv2.VideoCapture`` (camera, V4L2 device, GStreamer pipeline or video file)."""

    def __init__(self, spec: str | int, api: int | None, name: str, live: bool,
                 loop: bool = False) -> None:
        import cv2

        self.spec, self.api, self.name, self.live, self.loop = spec, api, name, live, loop
        log = cv2.utils.logging
        level = log.getLogLevel()
        log.setLogLevel(log.LOG_LEVEL_ERROR)  # a missing camera is our one-line notice
        try:
            self.cap = cv2.VideoCapture(spec, api) if api is not None else cv2.VideoCapture(spec)
        finally:
            log.setLogLevel(level)
        if not self.cap.isOpened():
            self.cap.release()
            raise SourceUnavailable(f"{name} could not be opened")
        self.first = self._grab()
        if self.first is None:
            self.cap.release()
            raise SourceUnavailable(f"{name} opened but gave no frame")
        self.frames = 0

    def _grab(self) -> np.ndarray | None:
        import cv2

        ok, bgr = self.cap.read()
        if not ok or bgr is None:
            return None
        if bgr.ndim == 2:
            bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def read(self) -> np.ndarray | None:
        import cv2

        if self.first is not None:
            frame, self.first = self.first, None
            self.frames += 1
            return frame
        frame = self._grab()
        if frame is None and self.loop and not self.live and self.frames > 0:
            self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            frame = self._grab()
        if frame is not None:
            self.frames += 1
        return frame

    def close(self) -> None:
        self.cap.release()


def open_source(spec: str | None, *, size: int = 240, seed: int = 0, loop: bool = False,
                limit: int | None = None) -> FrameSource:
    """The frame source ``spec`` names (module docstring). ``size``/``seed``/``limit`` are the
    generator's; ``loop`` restarts a video file or image folder at its end."""
    import cv2

    if spec is None or spec == "generator":
        return GeneratorSource(size, seed, limit)
    spec = str(spec)
    if spec == "photos":
        from sdk.vision.scenes import demo_photographs

        return ListSource([im for _, im in demo_photographs()], "scikit-image photographs", loop)
    if spec.lstrip("-").isdigit():
        return CaptureSource(int(spec), None, f"camera index {spec}", live=True)
    if "!" in spec:
        if "appsink" not in spec:
            raise InputError("a GStreamer pipeline for OpenCV must end in appsink, e.g. "
                             "'v4l2src ! videoconvert ! appsink'")
        return CaptureSource(spec, cv2.CAP_GSTREAMER, f"GStreamer pipeline {spec!r}", live=True)
    if spec.startswith("/dev/video"):
        if not Path(spec).exists():
            raise SourceUnavailable(f"V4L2 device {spec} does not exist")
        return CaptureSource(spec, cv2.CAP_V4L2, f"V4L2 device {spec}", live=True)
    path = Path(spec)
    if path.is_dir():
        return image_folder(path, loop)
    if path.is_file():
        if path.suffix.lower() in IMAGE_SUFFIXES:
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                raise InputError(f"{path} is not a readable image")
            return ListSource([cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)], f"image {path}", loop)
        try:
            return CaptureSource(str(path), None, f"video file {path}", live=False, loop=loop)
        except SourceUnavailable as exc:
            raise InputError(f"{exc}: not a video OpenCV can decode; pass a video file "
                             "(e.g. .avi/.mp4), an image folder or a camera") from None
    raise InputError(f"source {spec!r} is neither a camera index, a /dev/video* path, a "
                     "GStreamer pipeline, an image folder, a video file, 'photos' nor "
                     "'generator'")
