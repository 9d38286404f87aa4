"""Edge SDK: compile models to integer graphs and run them on CPUs, NPUs and microcontrollers.

The public API is what this module exports; samples/ and tools/ use nothing else.
"""
__version__ = "0.1.0"

from sdk.errors import (CalibrationError, DeviceError, EdgeError, GraphError, InputError,
                        ModelFormatError, TargetError, UnsupportedOpError)
from sdk.graph import Graph, Node, QuantParams, Tensor

__all__ = ["__version__", "EdgeError", "GraphError", "UnsupportedOpError", "ModelFormatError",
           "InputError", "CalibrationError", "TargetError", "DeviceError",
           "Graph", "Node", "QuantParams", "Tensor"]

from sdk.frontends import load_onnx  # noqa: E402
from sdk.runtime.session import Session  # noqa: E402

__all__ += ["load_onnx", "Session"]

from sdk.compile import Bundle, compile_model, load_bundle  # noqa: E402
from sdk.quant import OBSERVER_NAMES, calibrate, quantize  # noqa: E402

__all__ += ["Bundle", "compile_model", "load_bundle", "quantize", "calibrate", "OBSERVER_NAMES"]

from sdk.runtime.detection import DetectionEvent, KeywordDetector  # noqa: E402
from sdk.runtime.keyword_spotter import KeywordSpotter  # noqa: E402
from sdk.runtime.streaming import StepResult, StreamingSession  # noqa: E402

__all__ += ["StreamingSession", "StepResult", "KeywordDetector", "DetectionEvent",
            "KeywordSpotter"]
