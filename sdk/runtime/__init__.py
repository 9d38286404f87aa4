"""sdk.runtime: sessions that run models."""
from sdk.runtime.session import Session, TensorInfo

__all__ = ["Session", "TensorInfo"]

from sdk.graph.state import pair_states, unroll_step_graph
from sdk.runtime.detection import DetectionEvent, KeywordDetector, softmax
from sdk.runtime.streaming import StepResult, StreamingSession

__all__ += [
                                   "DetectionEvent",
                                   "KeywordDetector",
                                   "StepResult",
                                   "StreamingSession",
                                   "pair_states",
                                   "softmax",
                                   "unroll_step_graph",
]

from sdk.runtime.audio_input import (
                                   CaptureDevice,
                                   MicrophoneStream,
                                   WavStream,
                                   find_input_device,
                                   level_dbfs,
                                   level_meter,
                                   synthesize_speech,
)
from sdk.runtime.keyword_spotter import (
                                   SPEECH_COMMANDS_12,
                                   KeywordSpotter,
                                   compile_keyword_model,
                                   model_labels,
)

__all__ += [
                                   "SPEECH_COMMANDS_12",
                                   "CaptureDevice",
                                   "KeywordSpotter",
                                   "MicrophoneStream",
                                   "WavStream",
                                   "compile_keyword_model",
                                   "find_input_device",
                                   "level_dbfs",
                                   "level_meter",
                                   "model_labels",
                                   "synthesize_speech",
]
