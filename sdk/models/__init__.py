"""Model builders of the zoo (torch-free): what the samples and training tools share."""

from sdk.models.lmuformer import (
    LMUFormerConfig,
    LMUFormerWeights,
    build_step_onnx,
    initial_state,
    lmu_matrices,
    lmuformer_step,
    macs_per_frame,
    run_clip,
    run_clips,
    running_mean_logits,
    state_shapes,
    step_calibration_data,
)

__all__ = ["LMUFormerConfig", "LMUFormerWeights", "build_step_onnx", "initial_state",
           "lmu_matrices", "lmuformer_step", "macs_per_frame", "run_clip", "run_clips", "running_mean_logits",
           "state_shapes", "step_calibration_data"]
