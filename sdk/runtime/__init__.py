"""sdk.runtime: sessions that run models."""
from sdk.runtime.session import Session, TensorInfo

__all__ = ["Session", "TensorInfo"]
