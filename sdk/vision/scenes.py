"""Labelled segmentation scenes composited from real imagery that installed packages ship.

No dataset can be downloaded, so scenes are built procedurally from photographs and textures
inside scikit-image (``skimage.data``: brick, grass, gravel, coins, page/text, the chelsea cat,
``lfw_subset`` face crops, the horse silhouette, several photographs) and scikit-learn
(``china.jpg``, ``flower.jpg``). Every object is pasted through a shape drawn at the output
resolution without anti-aliasing, so the per-pixel mask is exact by construction; later objects
occlude earlier ones.

Variation: crop scale and rotation of each source, object size, shape (ellipse, polygon, horse
silhouette, blob), position, occlusion, lighting (gain, gamma, colour cast, gradient), blur and
sensor noise (all applied to the image, not the labels).

Split: every source image is cut into a train region and a held-out test region (a strip of
it; for the face crops, separate people's images), and a scene of split ``"test"`` only takes
crops from test regions, so test scenes never show a pixel a train scene could have shown.

Everything is seeded: ``make_scenes(n, seed, split)`` returns the same arrays on every machine
(OpenCV and NumPy only); :func:`cached_scenes` keeps them in ``~/.cache/edge/seg``.
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sdk.errors import InputError

CLASSES: tuple[str, ...] = ("background", "brick", "grass", "gravel", "face", "fur", "coins",
                            "text")
"""Class names, index = label value."""

SPLITS = ("train", "test")
TEST_FRACTION = 0.3
"""Share of each source image (a strip along its longer side) held out for test scenes."""

GENERATOR_VERSION = 1
"""Bumped when the generator's output changes (part of the cache key)."""


def _require_skimage():
    try:
        import skimage.data
    except ModuleNotFoundError as exc:
        raise InputError("the scene generator needs scikit-image (a dependency of edge-sdk): "
                         "pip install scikit-image==0.26.0") from exc
    return skimage.data


def _rgb(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype == bool:
        img = img.astype(np.uint8) * 255
    if img.dtype != np.uint8:
        img = np.clip(np.asarray(img, np.float64) * (255.0 if img.max() <= 1.0 else 1.0), 0,
                      255).astype(np.uint8)
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    return np.ascontiguousarray(img[..., :3])


@dataclass(frozen=True)
class Source:
    """One source image of a class and the part of it a split may crop from."""

    cls: int
    image: np.ndarray  # uint8 [H, W, 3]

    def region(self, split: str) -> np.ndarray:
        h, w = self.image.shape[:2]
        if w >= h:
            cut = round(w * (1 - TEST_FRACTION))
            return self.image[:, :cut] if split == "train" else self.image[:, cut:]
        cut = round(h * (1 - TEST_FRACTION))
        return self.image[:cut] if split == "train" else self.image[cut:]


@functools.cache
def _library() -> dict:
    """Source images per class, faces per split, silhouettes (loaded once per process)."""
    d = _require_skimage()
    srcs: dict[int, list[Source]] = {i: [] for i in range(len(CLASSES))}
    bg = [d.coffee(), d.rocket(), d.stereo_motorcycle()[0], d.hubble_deep_field(),
          d.immunohistochemistry(), d.astronaut()[:, 256:]]
    try:
        from sklearn.datasets import load_sample_images

        bg += list(load_sample_images().images)
    except ModuleNotFoundError:
        pass
    srcs[0] = [Source(0, _rgb(b)) for b in bg]
    srcs[1] = [Source(1, _rgb(d.brick()))]
    srcs[2] = [Source(2, _rgb(d.grass()))]
    srcs[3] = [Source(3, _rgb(d.gravel()))]
    srcs[5] = [Source(5, _rgb(d.chelsea()[40:290, 60:380]))]
    srcs[6] = [Source(6, _rgb(d.coins()))]
    srcs[7] = [Source(7, _rgb(d.page())), Source(7, _rgb(d.text()))]
    faces = d.lfw_subset()[:100]  # the first 100 of lfw_subset are faces
    n_train = round(len(faces) * (1 - TEST_FRACTION))
    face_sets = {"train": [_rgb(f) for f in faces[:n_train]],
                 "test": [_rgb(f) for f in faces[n_train:]]}
    horse = ~np.asarray(d.horse(), bool)  # the silhouette is False on white
    return {"sources": srcs, "faces": face_sets, "horse": horse.astype(np.uint8)}


# -- shapes (exact masks at the output resolution) -------------------------------------------
def _shape_mask(rng: np.random.Generator, size: int, kind: str) -> np.ndarray:
    import cv2

    m = np.zeros((size, size), np.uint8)
    cx, cy = rng.uniform(0.15, 0.85, 2) * size
    r = rng.uniform(0.14, 0.4) * size
    ang = rng.uniform(0, 360)
    if kind == "ellipse":
        axes = (int(max(2, r)), int(max(2, r * rng.uniform(0.45, 1.0))))
        cv2.ellipse(m, (int(cx), int(cy)), axes, ang, 0, 360, 1, -1, lineType=cv2.LINE_8)
    elif kind == "polygon":
        k = int(rng.integers(3, 8))
        t = np.sort(rng.uniform(0, 2 * np.pi, k))
        rad = r * rng.uniform(0.6, 1.2, k)
        pts = np.stack([cx + rad * np.cos(t), cy + rad * np.sin(t)], 1).astype(np.int32)
        cv2.fillPoly(m, [pts], 1, lineType=cv2.LINE_8)
    elif kind == "horse":
        horse = _library()["horse"]
        s = 2 * r / max(horse.shape)
        rot = cv2.getRotationMatrix2D((horse.shape[1] / 2, horse.shape[0] / 2), ang / 8 - 22, s)
        rot[:, 2] += (cx - horse.shape[1] / 2, cy - horse.shape[0] / 2)
        if rng.random() < 0.5:
            rot[0, :2] *= -1
            rot[0, 2] = 2 * cx - rot[0, 2]
        m = cv2.warpAffine(horse, rot, (size, size), flags=cv2.INTER_NEAREST)
    else:  # blob: a smoothed noise field thresholded inside a disc
        g = rng.standard_normal((6, 6)).astype(np.float32)
        g = cv2.resize(g, (size, size), interpolation=cv2.INTER_CUBIC)
        yy, xx = np.mgrid[:size, :size]
        disc = ((xx - cx) ** 2 + (yy - cy) ** 2) < (1.3 * r) ** 2
        m = ((g > np.quantile(g, 0.4)) & disc).astype(np.uint8)
    return m.astype(bool)


def _texture(rng: np.random.Generator, region: np.ndarray, size: int,
             scale_range: tuple[float, float]) -> np.ndarray:
    """A ``size``×``size`` view of ``region``: random scale, rotation and flip (reflect at the
    borders so rotated corners stay textured)."""
    import cv2

    h, w = region.shape[:2]
    scale = rng.uniform(*scale_range)
    # the source patch that fills the view must fit in the region
    scale = max(scale, size / min(h, w) * 1.0)
    ang = rng.uniform(0, 360)
    src_px = size / scale
    cx = rng.uniform(min(src_px / 2, w / 2), max(w - src_px / 2, w / 2))
    cy = rng.uniform(min(src_px / 2, h / 2), max(h - src_px / 2, h / 2))
    rot = cv2.getRotationMatrix2D((float(cx), float(cy)), ang, scale)
    rot[:, 2] += (size / 2 - cx, size / 2 - cy)
    out = cv2.warpAffine(region, rot, (size, size), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REFLECT_101)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    return out


def _face(rng: np.random.Generator, faces: list[np.ndarray], size: int
          ) -> tuple[np.ndarray, np.ndarray]:
    """A face crop scaled into an upright-ish ellipse; returns (image, mask)."""
    import cv2

    f = faces[int(rng.integers(len(faces)))]
    if rng.random() < 0.5:
        f = f[:, ::-1]
    fw = int(rng.uniform(0.22, 0.5) * size)
    fh = int(fw * rng.uniform(1.1, 1.3))
    face = cv2.resize(np.ascontiguousarray(f), (fw, fh), interpolation=cv2.INTER_LINEAR)
    tint = rng.uniform(0.75, 1.1, 3) * np.array([1.0, 0.85, 0.7])  # skin-like cast on grey
    face = np.clip(face * tint, 0, 255).astype(np.uint8)
    ang = rng.uniform(-20, 20)
    x0 = int(rng.integers(0, max(1, size - fw)))
    y0 = int(rng.integers(0, max(1, size - fh)))
    canvas = np.zeros((size, size, 3), np.uint8)
    mask = np.zeros((size, size), np.uint8)
    canvas[y0:y0 + fh, x0:x0 + fw] = face[:size - y0, :size - x0]
    cv2.ellipse(mask, (x0 + fw // 2, y0 + fh // 2), (int(fw * 0.42), int(fh * 0.47)), 0, 0, 360,
                1, -1, lineType=cv2.LINE_8)
    rot = cv2.getRotationMatrix2D((x0 + fw / 2, y0 + fh / 2), ang, 1.0)
    canvas = cv2.warpAffine(canvas, rot, (size, size), flags=cv2.INTER_LINEAR)
    mask = cv2.warpAffine(mask, rot, (size, size), flags=cv2.INTER_NEAREST)
    return canvas, mask.astype(bool)


def _photometric(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Lighting (gain, gamma, colour cast, a linear gradient), blur and sensor noise."""
    import cv2

    size = img.shape[0]
    x = img.astype(np.float32) / 255.0
    x = x ** rng.uniform(0.7, 1.4)
    x = x * rng.uniform(0.6, 1.25) * rng.uniform(0.85, 1.15, 3).astype(np.float32)
    gx, gy = rng.uniform(-0.35, 0.35, 2)
    yy, xx = np.mgrid[:size, :size].astype(np.float32) / size - 0.5
    x = x * (1.0 + gx * xx + gy * yy)[..., None]
    sigma = rng.choice([0.0, 0.0, rng.uniform(0.4, 1.3)])
    if sigma > 0:
        x = cv2.GaussianBlur(x, (0, 0), float(sigma))
    x = x + rng.normal(0, rng.uniform(0.0, 0.04), x.shape).astype(np.float32)
    return np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)


def _object_light(rng: np.random.Generator, tex: np.ndarray) -> np.ndarray:
    """Per-object lighting (half of the objects), before the scene's own."""
    if rng.random() < 0.5:
        return np.clip(tex * rng.uniform(0.7, 1.2, 3), 0, 255).astype(np.uint8)
    return tex


def make_scene(rng: np.random.Generator, size: int = 96, split: str = "train"
               ) -> tuple[np.ndarray, np.ndarray]:
    """One scene: ``(image uint8 [size, size, 3] RGB, labels uint8 [size, size])``."""
    if split not in SPLITS:
        raise InputError(f"split must be one of {list(SPLITS)}, got {split!r}")
    lib = _library()
    srcs = lib["sources"]
    bg = srcs[0][int(rng.integers(len(srcs[0])))]
    img = _texture(rng, bg.region(split), size, (0.15, 0.6)).copy()
    labels = np.zeros((size, size), np.uint8)
    n_obj = int(rng.integers(2, 7))
    for _ in range(n_obj):
        cls = int(rng.integers(1, len(CLASSES)))
        if CLASSES[cls] == "face":
            tex, mask = _face(rng, lib["faces"][split], size)
        else:
            src = srcs[cls][int(rng.integers(len(srcs[cls])))]
            tex = _texture(rng, src.region(split), size, (0.3, 1.2))
            kind = str(rng.choice(["ellipse", "polygon", "horse", "blob"]))
            mask = _shape_mask(rng, size, kind)
            tex = _object_light(rng, tex)
        img[mask] = tex[mask]
        labels[mask] = cls
    return _photometric(rng, img), labels


def make_scenes(n: int, seed: int = 0, split: str = "train", size: int = 96
                ) -> tuple[np.ndarray, np.ndarray]:
    """``n`` scenes: images ``uint8 [n, size, size, 3]`` (RGB) and labels ``uint8 [n, size,
    size]``. Same ``(n, seed, split, size)`` → same arrays."""
    if split not in SPLITS:
        raise InputError(f"split must be one of {list(SPLITS)}, got {split!r}")
    if n < 0 or size < 16:
        raise InputError(f"need n >= 0 and size >= 16, got n={n}, size={size}")
    # a different stream per split even for the same seed
    rng = np.random.default_rng([int(seed), SPLITS.index(split), int(size)])
    imgs = np.zeros((n, size, size, 3), np.uint8)
    labs = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        imgs[i], labs[i] = make_scene(rng, size, split)
    return imgs, labs


def cache_dir() -> Path:
    """``$EDGE_CACHE_DIR`` or ``~/.cache/edge``, plus ``/seg``."""
    root = os.environ.get("EDGE_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache",
                                                            "edge")
    return Path(root) / "seg"


def cached_scenes(n: int, seed: int = 0, split: str = "train", size: int = 96
                  ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`make_scenes`, kept in :func:`cache_dir` (an ``.npz`` per argument set)."""
    key = hashlib.sha256(f"v{GENERATOR_VERSION}-{n}-{seed}-{split}-{size}".encode()).hexdigest()
    path = cache_dir() / f"scenes-{split}-{n}-{seed}-{size}-{key[:10]}.npz"
    if path.is_file():
        with np.load(path) as z:
            return z["images"], z["labels"]
    imgs, labs = make_scenes(n, seed, split, size)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez_compressed(tmp, images=imgs, labels=labs)
    os.replace(tmp, path)
    return imgs, labs


def demo_photographs() -> list[tuple[str, np.ndarray]]:
    """Real photographs (no masks) for the demo's image source: ``(name, RGB uint8)``."""
    d = _require_skimage()
    out = [("astronaut", d.astronaut()), ("chelsea", d.chelsea()), ("coffee", d.coffee()),
           ("rocket", d.rocket()), ("brick", d.brick()), ("grass", d.grass()),
           ("gravel", d.gravel()), ("coins", d.coins()), ("page", d.page())]
    return [(n, _rgb(im)) for n, im in out]


def center_square(rgb: np.ndarray, size: int) -> np.ndarray:
    """The centre square of an RGB uint8 image, resized (area) to ``size``×``size``."""
    import cv2

    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise InputError(f"expected an RGB image [H, W, 3], got shape {rgb.shape}")
    h, w = rgb.shape[:2]
    s = min(h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    sq = rgb[y0:y0 + s, x0:x0 + s]
    if s != size:
        sq = cv2.resize(sq, (size, size), interpolation=cv2.INTER_AREA)
    return sq


def preprocess(rgb: np.ndarray, size: int = 96) -> np.ndarray:
    """An RGB uint8 image → the model input ``float32 [1, 3, size, size]``: centre crop to a
    square, resize (area), ``(x/255 − 0.5)/0.25``."""
    sq = center_square(rgb, size)
    x = (sq.astype(np.float32) / 255.0 - 0.5) / 0.25
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def normalize_batch(images: np.ndarray) -> np.ndarray:
    """uint8 ``[n, H, W, 3]`` scenes → float32 ``[n, 3, H, W]`` model inputs."""
    x = (np.asarray(images, np.float32) / 255.0 - 0.5) / 0.25
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
