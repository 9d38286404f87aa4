"""Audio input for streaming models: WAV loading and the fixed-point log-mel front end."""

from sdk.audio.logmel import (
                              HOP_LENGTH,
                              N_MELS,
                              SAMPLE_RATE,
                              WIN_LENGTH,
                              StreamingLogMel,
                              logmel,
                              logmel_float_reference,
                              mel_filterbank,
                              tolerance_mask,
)
from sdk.audio.opcount import LogMelOpCount, direct_dft_op_count, logmel_op_count
from sdk.audio.wav import (
                              WavInfo,
                              decode_wav_bytes,
                              float_to_int16,
                              load_wav,
                              read_wav_info,
                              resample,
                              write_wav,
)

__all__ = [
                              "HOP_LENGTH",
                              "N_MELS",
                              "SAMPLE_RATE",
                              "WIN_LENGTH",
                              "LogMelOpCount",
                              "StreamingLogMel",
                              "WavInfo",
                              "decode_wav_bytes",
                              "direct_dft_op_count",
                              "float_to_int16",
                              "load_wav",
                              "logmel",
                              "logmel_float_reference",
                              "logmel_op_count",
                              "mel_filterbank",
                              "read_wav_info",
                              "resample",
                              "tolerance_mask",
                              "write_wav",
]
