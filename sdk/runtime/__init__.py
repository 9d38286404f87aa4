"""sdk.runtime: sessions that run models."""
from sdk.runtime.session import Session, TensorInfo

__all__ = ["Session", "TensorInfo"]

from sdk.runtime.detection import DetectionEvent, KeywordDetector, softmax  # noqa: E402
from sdk.runtime.streaming import (StepResult, StreamingSession, pair_states,  # noqa: E402
                                   unroll_step_graph)

__all__ += ["DetectionEvent", "KeywordDetector", "softmax", "StepResult", "StreamingSession",
            "pair_states", "unroll_step_graph"]
