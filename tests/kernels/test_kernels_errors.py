"""Bad inputs and attributes raise one-line SDK errors that name the problem."""

from __future__ import annotations

import numpy as np
import pytest

from sdk.errors import GraphError, InputError
from sdk.kernels import conv, linear, lut, quantize, resize, transformer
from sdk.kernels.fast import conv as fconv
from sdk.kernels.fast import linear as flinear
from sdk.ops.registry import load_all

X8 = np.zeros((1, 4, 5, 5), np.int8)


@pytest.mark.parametrize("impl", [conv.conv2d, fconv.conv2d])
def test_conv_group_mismatch(impl) -> None:
    with pytest.raises(GraphError, match="group=3"):
        impl(X8, np.zeros((4, 2, 3, 3), np.int8), None, group=3, m0=2**30, shift=0)


@pytest.mark.parametrize("impl", [conv.conv2d, fconv.conv2d])
def test_conv_kernel_larger_than_input(impl) -> None:
    with pytest.raises(InputError, match="larger than the padded input"):
        impl(X8, np.zeros((4, 4, 7, 7), np.int8), None, m0=2**30, shift=0)


@pytest.mark.parametrize("impl", [linear.fully_connected, flinear.fully_connected])
def test_fully_connected_shape_mismatch(impl) -> None:
    with pytest.raises(InputError, match="does not match weights"):
        impl(np.zeros((2, 8), np.int8), np.zeros((3, 9), np.int8), None, m0=2**30, shift=0)


def test_float_input_to_integer_kernel() -> None:
    with pytest.raises(InputError, match="QuantizeLinear"):
        linear.matmul_int32(np.zeros((2, 2), np.float32), np.zeros((2, 2), np.int8))


def test_per_channel_length_mismatch() -> None:
    with pytest.raises(GraphError, match="3 entries but the op has 4 output channels"):
        conv.conv2d(X8, np.zeros((4, 4, 1, 1), np.int8), None, m0=[2**30] * 3, shift=0)


def test_bad_output_clamp() -> None:
    with pytest.raises(GraphError, match="act_min/act_max"):
        linear.qmatmul(np.zeros((2, 2), np.int8), np.zeros((2, 2), np.int8), m0=2**30, shift=0,
                       act_min=10, act_max=-10)


def test_shift_exp_overflow_is_refused() -> None:
    with pytest.raises(GraphError, match="use a smaller n"):
        transformer.shiftmax(np.zeros((1, 4), np.int8), x0=-1000, n=23)


def test_lut_needs_int8() -> None:
    with pytest.raises(InputError, match="int8"):
        lut.lut_apply(np.zeros(3, np.int16), np.zeros(256, np.int8))


def test_quantize_rejects_nan() -> None:
    with pytest.raises(InputError, match="NaN"):
        quantize.quantize_linear(np.array([1.0, np.nan], np.float32), 0.1)


def test_resize_sizes_rank() -> None:
    with pytest.raises(GraphError, match="one size per axis"):
        resize.resize_nearest(X8, sizes=(10, 10))


def test_registry_names_a_missing_attribute() -> None:
    ops = load_all()
    with pytest.raises(GraphError, match="QConv2d node lacks attribute.*m0"):
        ops["QConv2d"]([X8, np.zeros((4, 4, 1, 1), np.int8), None], {"shift": 0}, False)


def test_registry_covers_every_integer_op_of_the_catalogue() -> None:
    ops = load_all()
    catalogue = ["QuantizeLinear", "DequantizeLinear", "Requantize", "QFullyConnected", "QMatMul",
                 "QConv1d", "QConv2d", "QDepthwiseConv2d", "QAdd", "QMul", "QClamp", "QMaxPool2d",
                 "QAvgPool2d", "QGlobalAvgPool", "QLut", "Shiftmax", "ShiftGELU", "ILayerNorm",
                 "IRMSNorm", "ResizeNearest"]
    assert [op for op in catalogue if op not in ops] == []
