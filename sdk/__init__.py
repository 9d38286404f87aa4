"""Edge SDK: compile models to integer graphs and run them on CPUs, NPUs and microcontrollers.

The public API is what this module exports; samples/ and tools/ use nothing else.

    import sdk
    bundle = sdk.compile_model("model.onnx", {"x": calib})        # float ONNX -> integers
    bundle.save("model.edge"); bundle.memory_plan.arena_bytes      # static arena plan
    sess = sdk.Session("model.edge", backend="litert", target="raspberry-pi-4")
    y = sess.run({"x": x}); print(sess.plan)
    report = sdk.profile_model("model.edge", "stm32h7")

Names that pull in optional runtimes (ONNX Runtime, LiteRT, the profiler, board profiles)
are imported on first use, so ``import sdk`` stays light and free of import cycles
(``targets`` itself imports ``sdk``).
"""
from __future__ import annotations

import importlib
import importlib.util
from typing import Any

__version__ = "0.1.0"

from sdk.errors import (
    CalibrationError,
    DeviceError,
    EdgeError,
    GraphError,
    InputError,
    ModelFormatError,
    TargetError,
    UnsupportedOpError,
)
from sdk.graph import Graph, Node, QuantParams, Tensor

__all__ = [
    "CalibrationError",
    "DeviceError",
    "EdgeError",
    "Graph",
    "GraphError",
    "InputError",
    "ModelFormatError",
    "Node",
    "QuantParams",
    "TargetError",
    "Tensor",
    "UnsupportedOpError",
    "__version__",
]

# public name -> "module:attribute" (attribute "" = the module itself), imported on first use.
# Everything past the errors and the graph classes is lazy: the runtime, the compiler and the
# quantizer import Numba (~0.3-0.4 s of CPU), which `edge run` on an ahead-of-time module
# (sdk.aot) never needs
_LAZY: dict[str, str] = {
    # sessions, compiling, quantizing, keyword spotting
    "Session": "sdk.runtime.session:Session",
    "TensorInfo": "sdk.runtime.session:TensorInfo",
    "load_onnx": "sdk.frontends:load_onnx",
    "OBSERVER_NAMES": "sdk.quant:OBSERVER_NAMES",
    "Bundle": "sdk.compile:Bundle",
    "MemoryPlan": "sdk.compile.memory_plan:MemoryPlan",
    "calibrate": "sdk.quant:calibrate",
    "compile_model": "sdk.compile:compile_model",
    "load_bundle": "sdk.compile:load_bundle",
    "plan_memory": "sdk.compile.memory_plan:plan_memory",
    "quantize": "sdk.quant:quantize",
    "quantize_multiplier": "sdk.kernels.requant:quantize_multiplier",
    "quantize_multiplier_array": "sdk.kernels.requant:quantize_multiplier_array",
    "DetectionEvent": "sdk.runtime.detection:DetectionEvent",
    "KeywordDetector": "sdk.runtime.detection:KeywordDetector",
    "KeywordSpotter": "sdk.runtime.keyword_spotter:KeywordSpotter",
    "StepResult": "sdk.runtime.streaming:StepResult",
    "StreamingSession": "sdk.runtime.streaming:StreamingSession",
    # ahead-of-time modules (edge aot): built with numba.pycc, loaded without Numba
    "build_aot": "sdk.aot:build",
    "find_aot": "sdk.aot:find",
    # backends, partitioning, emulator mode
    "BACKENDS": "sdk.backends:BACKENDS",
    "Backend": "sdk.backends:Backend",
    "Executable": "sdk.backends:Executable",
    "Plan": "sdk.backends:Plan",
    "compile_for": "sdk.backends:compile_for",
    "partition": "sdk.backends:partition",
    "default_backend": "sdk.backends:default_backend",
    "get_backend": "sdk.backends:get_backend",
    "run_float": "sdk.backends:run_float",
    "check_fits": "sdk.backends:check_fits",
    "emulate": "sdk.backends:emulate",
    "ReferenceBackend": "sdk.backends.reference:ReferenceBackend",
    "OrtBackend": "sdk.backends.onnxruntime:OrtBackend",
    "LiteRTBackend": "sdk.backends.litert:LiteRTBackend",
    "sample_graphs": "sdk.backends.sample_graphs:",
    # declared state, KV caches, multi-entry sessions, the op schema
    "StateDecl": "sdk.graph:StateDecl",
    "SessionState": "sdk.runtime.session:SessionState",
    "add_kv_cache": "sdk.graph.state:add_kv_cache",
    "with_input_shapes": "sdk.ops.shapes:with_input_shapes",
    "op_schema": "sdk.ops.schema:load_schema",
    # .tflite files
    "write_tflite": "sdk.compile.tflite_writer:write_tflite",
    "read_tflite": "sdk.frontends.tflite_import:read_tflite",
    # profiling and energy
    "profile_graph": "sdk.profile:profile_graph",
    "profile_model": "sdk.profile:profile_model",
    "ProfileReport": "sdk.profile:ProfileReport",
    "count_graph": "sdk.profile:count_graph",
    "energy_table": "sdk.profile:table_for",
    "stream_firing_rates": "sdk.profile:stream_firing_rates",
    "streaming_energy": "sdk.profile:streaming_energy",
    "logmel_front_end_count": "sdk.profile:logmel_front_end_count",
    "integer_core": "sdk.profile:integer_core",
    "core_input_names": "sdk.profile:core_input_names",
    # Cortex-M cycles from the QEMU instruction mix; MLPerf Tiny reference models
    "estimate_cycles_for_target": "sdk.profile.cycles:estimate_for_target",
    "measure_instruction_mix": "sdk.profile.qemu_mix:measure_mix",
    "instruction_mix_unavailable": "sdk.profile.qemu_mix:mix_unavailable",
    "mlperf_tiny": "sdk.profile.mlperf_tiny:",
    # keyword spotting helpers (speech synthesis needs espeak-ng)
    "compile_keyword_model": "sdk.runtime.keyword_spotter:compile_keyword_model",
    "synthesize_speech": "sdk.runtime.audio_input:synthesize_speech",
    "logmel": "sdk.audio:logmel",
    # early exit: calibrated integer exit rules, stage-by-stage sessions
    "EarlyExitSession": "sdk.runtime.early_exit:EarlyExitSession",
    "ExitResult": "sdk.runtime.early_exit:ExitResult",
    "ExitPlan": "sdk.exits:ExitPlan",
    "add_exits": "sdk.exits:add_exits",
    "exit_integer_outputs": "sdk.exits.calibrate:integer_outputs",
    "DeviceExitModel": "sdk.exits.device:DeviceExitModel",
    "LMExitSession": "sdk.exits.lm:LMExitSession",
    "compile_exit_generation_model": "sdk.exits.lm:compile_exit_generation_model",
    "calibrate_lm_exits": "sdk.exits.lm:calibrate_lm_exits",
    # small language models: G2P tokenizer, KV-cached generation
    "G2PTokenizer": "sdk.text:G2PTokenizer",
    "TextTokenizer": "sdk.text.sentence:TextTokenizer",
    "tokenizer_for": "sdk.text.sentence:tokenizer_for",
    "GenerationSession": "sdk.runtime.generation:GenerationSession",
    "GenerationConfig": "sdk.runtime.generation:GenerationConfig",
    "compile_generation_model": "sdk.runtime.generation:compile_generation_model",
    # segmentation: scenes, frame sources, overlay, MJPEG live view (sdk.vision)
    "vision": "sdk.vision:",
    "Segmenter": "sdk.vision.segment:Segmenter",
    "compile_segmenter": "sdk.vision.segment:compile_segmenter",
    "open_source": "sdk.vision.sources:open_source",
    "MjpegServer": "sdk.vision.mjpeg:MjpegServer",
    # Linux boards: the agent's host side, self-tests, signing keys, OTA artifacts
    "DeviceClient": "sdk.agent.client:DeviceClient",
    "prepare_deploy": "sdk.agent.client:prepare_deploy",
    "make_selftest": "sdk.agent.selftest:make_selftest",
    "generate_signing_key": "sdk.agent.signing:generate_key",
    "export_artifact": "sdk.agent.export:export",
    # board profiles (the top-level `targets` package imports sdk, hence lazy)
    "Target": "targets:Target",
    "load_target": "targets:load_target",
    "list_targets": "targets:list_targets",
}

__all__ += list(_LAZY)


def __getattr__(name: str) -> Any:
    """Import a lazily exported name (see ``_LAZY``) on first access and cache it."""
    try:
        module, attr = _LAZY[name].split(":")
    except KeyError:
        if not name.startswith("_") and importlib.util.find_spec(f"sdk.{name}") is not None:
            return importlib.import_module(f"sdk.{name}")  # a subpackage: sdk.runtime ...
        raise AttributeError(f"module 'sdk' has no attribute {name!r}") from None
    mod = importlib.import_module(module)
    value = getattr(mod, attr) if attr else mod
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
