"""Model importers: ONNX (float) into the IR."""
from sdk.frontends.onnx_import import fold_constants, load_onnx, supported_onnx_ops

__all__ = ["fold_constants", "load_onnx", "supported_onnx_ops"]
