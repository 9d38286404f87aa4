"""sdk.quant: calibration observers, post-training quantization, integer-only lowering."""
from sdk.quant.calibrate import calibrate
from sdk.quant.integer_ops import assert_integer_only
from sdk.quant.observers import OBSERVERS
from sdk.quant.ptq import quantize

OBSERVER_NAMES = sorted(OBSERVERS)

__all__ = ["OBSERVERS", "OBSERVER_NAMES", "assert_integer_only", "calibrate", "quantize"]
