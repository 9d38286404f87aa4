"""Vision helpers for the segmentation demo: labelled scene generator, colour overlay with a
legend, frame sources (camera / V4L2 / GStreamer / video / image folder / generator) and an
MJPEG server. OpenCV and scikit-image are imported inside the functions that need them."""

from sdk.vision.mcu import (
    TINY_BUDGET,
    McuBudget,
    McuSegmenter,
    QemuSegmenter,
    int8_weight_bytes,
    quantize_input,
    reference_logits,
    segmenter_image,
)
from sdk.vision.scenes import (
    CLASSES,
    cached_scenes,
    demo_photographs,
    make_scene,
    make_scenes,
    normalize_batch,
    preprocess,
)
from sdk.vision.segment import Segmenter, calibration_set, compile_segmenter, default_model

__all__ = ["CLASSES", "TINY_BUDGET", "McuBudget", "McuSegmenter", "QemuSegmenter", "Segmenter",
           "cached_scenes", "calibration_set", "compile_segmenter", "default_model",
           "demo_photographs", "int8_weight_bytes", "make_scene", "make_scenes",
           "normalize_batch", "preprocess", "quantize_input", "reference_logits",
           "segmenter_image"]
