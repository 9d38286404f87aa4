"""sdk.profile: op counts, memory, latency (measured and roofline-modelled) and energy
(modelled, and measured where a sensor exists) per layer.

>>> from sdk.profile import profile_graph
>>> report = profile_graph(graph, "stm32h7")      # doctest: +SKIP
>>> report.save_json("profile.json"); report.plot("profile.png")  # doctest: +SKIP
"""

from sdk.profile.energy import HOROWITZ_45NM, EnergyTable, table_for
from sdk.profile.opcount import OpCount, count_graph, count_node
from sdk.profile.profiler import load_model_graph, profile_graph, profile_model
from sdk.profile.report import LayerRow, ProfileReport
from sdk.profile.roofline import LatencyEstimate, estimate_node
from sdk.profile.spikes import firing_rate, spike_silent_levels, spike_tensors
from sdk.profile.stream import (
    FrontEndCount,
    StreamingEnergy,
    core_input_names,
    core_state_pairs,
    integer_core,
    logmel_front_end_count,
    stream_firing_rates,
    streaming_energy,
)

__all__ = ["HOROWITZ_45NM", "EnergyTable", "FrontEndCount", "LatencyEstimate", "LayerRow",
           "OpCount", "ProfileReport", "StreamingEnergy", "core_input_names", "core_state_pairs",
           "count_graph", "count_node", "estimate_node", "firing_rate", "integer_core",
           "load_model_graph", "logmel_front_end_count", "profile_graph", "profile_model",
           "spike_silent_levels", "spike_tensors", "stream_firing_rates", "streaming_energy",
           "table_for"]
