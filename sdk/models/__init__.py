"""Model builders of the zoo (torch-free): what the samples and training tools share."""

from sdk.models.lmuformer import (
                                  LMUFormerConfig,
                                  LMUFormerWeights,
                                  build_step_onnx,
                                  initial_state,
                                  lmu_matrices,
                                  lmuformer_step,
                                  run_clip,
                                  running_mean_logits,
                                  state_shapes,
)

__all__ = [
                                  "LMUFormerConfig",
                                  "LMUFormerWeights",
                                  "build_step_onnx",
                                  "initial_state",
                                  "lmu_matrices",
                                  "lmuformer_step",
                                  "run_clip",
                                  "running_mean_logits",
                                  "state_shapes",
]
