"""A .tflite written the way TFLite's converter writes an int8 model, without the SDK's writer.

Built directly with the ``tflite`` schema package: float input → QUANTIZE → CONV_2D (SAME,
per-channel OHWI weights, fused RELU6) → DEPTHWISE_CONV_2D (SAME, stride 2) →
AVERAGE_POOL_2D → RESHAPE (flattening NHWC) → FULLY_CONNECTED (per-tensor weights) →
DEQUANTIZE → float output. Tensor names follow the converter's style. Deliberately its own
code: it checks the SDK's reader against a layout the SDK did not produce.
"""

from __future__ import annotations

import flatbuffers
import numpy as np
import tflite

INT8, INT32, FLOAT32 = 9, 2, 0
_B = tflite.BuiltinOperator
# operator versions the converter stamps on int8 kernels
VERSIONS = {_B.QUANTIZE: 2, _B.CONV_2D: 3, _B.DEPTHWISE_CONV_2D: 3, _B.AVERAGE_POOL_2D: 2,
            _B.RESHAPE: 1, _B.FULLY_CONNECTED: 4, _B.DEQUANTIZE: 2, _B.MEAN: 2, _B.SOFTMAX: 2,
            _B.LOGISTIC: 2}


def _vec_i32(b, xs):
    return b.CreateNumpyVector(np.asarray(xs, np.int32))


def _offsets(b, offs):
    b.StartVector(4, len(offs), 4)
    for o in reversed(offs):
        b.PrependUOffsetTRelative(o)
    return b.EndVector()


def build(seed: int = 0, head: str = "dense") -> bytes:
    """``head="dense"``: avg-pool, flatten, FC. ``head="classifier"``: LOGISTIC, MEAN over H,W,
    FC, SOFTMAX (the usual ending of a converted image classifier)."""
    rng = np.random.default_rng(seed)
    buffers: list[bytes] = [b""]
    tensors: list[dict] = []

    def tensor(name, shape, ttype, scale=None, zp=None, qdim=0, data=None):
        buf = 0
        if data is not None:
            buffers.append(np.ascontiguousarray(data).tobytes())
            buf = len(buffers) - 1
        tensors.append(dict(name=name, shape=shape, type=ttype, buf=buf, scale=scale, zp=zp,
                            qdim=qdim))
        return len(tensors) - 1

    s_in, z_in = 0.0235, -3
    t_in = tensor("serving_default_input_1:0", [1, 8, 8, 3], FLOAT32)
    t_q = tensor("tfl.quantize", [1, 8, 8, 3], INT8, [s_in], [z_in])
    w1s = rng.uniform(0.003, 0.01, 6).astype(np.float32)
    t_w1 = tensor("sequential/conv2d/Conv2D", [6, 3, 3, 3], INT8, w1s, [0] * 6, 0,
                  rng.integers(-127, 128, (6, 3, 3, 3)).astype(np.int8))
    t_b1 = tensor("sequential/conv2d/BiasAdd/ReadVariableOp", [6], INT32,
                  (np.float32(s_in) * w1s).astype(np.float32), [0] * 6, 0,
                  rng.integers(-500, 500, 6).astype(np.int32))
    s1, z1 = 6.0 / 255, -128
    t_c1 = tensor("sequential/conv2d/Relu6;sequential/conv2d/BiasAdd", [1, 8, 8, 6], INT8, [s1], [z1])
    w2s = rng.uniform(0.004, 0.02, 6).astype(np.float32)
    t_w2 = tensor("sequential/depthwise_conv2d/depthwise", [1, 3, 3, 6], INT8, w2s, [0] * 6, 3,
                  rng.integers(-127, 128, (1, 3, 3, 6)).astype(np.int8))
    t_b2 = tensor("sequential/depthwise_conv2d/BiasAdd/ReadVariableOp", [6], INT32,
                  (np.float32(s1) * w2s).astype(np.float32), [0] * 6, 0,
                  rng.integers(-300, 300, 6).astype(np.int32))
    s2, z2 = 0.05, 7
    t_c2 = tensor("sequential/depthwise_conv2d/BiasAdd", [1, 4, 4, 6], INT8, [s2], [z2])
    t_p = tensor("sequential/average_pooling2d/AvgPool", [1, 2, 2, 6], INT8, [s2], [z2])
    t_shape = tensor("sequential/flatten/Const", [2], INT32, data=np.array([-1, 24], np.int32))
    t_f = tensor("sequential/flatten/Reshape", [1, 24], INT8, [s2], [z2])
    w3s = 0.0062
    t_w3 = tensor("sequential/dense/MatMul", [5, 24], INT8, [w3s], [0], 0,
                  rng.integers(-127, 128, (5, 24)).astype(np.int8))
    t_b3 = tensor("sequential/dense/BiasAdd/ReadVariableOp", [5], INT32,
                  [float(np.float32(s2) * np.float32(w3s))], [0], 0,
                  rng.integers(-1000, 1000, 5).astype(np.int32))
    s3, z3 = 0.11, -10
    t_d = tensor("sequential/dense/BiasAdd", [1, 5], INT8, [s3], [z3])
    t_out = tensor("StatefulPartitionedCall:0", [1, 5], FLOAT32)

    B = tflite.BuiltinOperator
    O = tflite.BuiltinOptions
    if head == "classifier":
        return _finish(buffers, tensors, _classifier_ops(tensor, rng, t_in, t_q, t_w1, t_b1, t_c1,
                                                         t_w2, t_b2, t_c2, s2, z2), t_in)
    ops = [
        (B.QUANTIZE, [t_in], [t_q], None),
        (B.CONV_2D, [t_q, t_w1, t_b1], [t_c1], ("Conv2DOptions", O.Conv2DOptions,
         dict(Padding=0, StrideW=1, StrideH=1, FusedActivationFunction=3,
              DilationWFactor=1, DilationHFactor=1))),
        (B.DEPTHWISE_CONV_2D, [t_c1, t_w2, t_b2], [t_c2], ("DepthwiseConv2DOptions",
         O.DepthwiseConv2DOptions, dict(Padding=0, StrideW=2, StrideH=2, DepthMultiplier=1,
                                        FusedActivationFunction=0, DilationWFactor=1,
                                        DilationHFactor=1))),
        (B.AVERAGE_POOL_2D, [t_c2], [t_p], ("Pool2DOptions", O.Pool2DOptions,
         dict(Padding=1, StrideW=2, StrideH=2, FilterWidth=2, FilterHeight=2,
              FusedActivationFunction=0))),
        (B.RESHAPE, [t_p, t_shape], [t_f], None),
        (B.FULLY_CONNECTED, [t_f, t_w3, t_b3], [t_d], ("FullyConnectedOptions",
         O.FullyConnectedOptions, dict(FusedActivationFunction=0, KeepNumDims=False))),
        (B.DEQUANTIZE, [t_d], [t_out], None),
    ]
    return _finish(buffers, tensors, ops, t_in, t_out)


def _classifier_ops(tensor, rng, t_in, t_q, t_w1, t_b1, t_c1, t_w2, t_b2, t_c2, s2, z2):
    B = tflite.BuiltinOperator
    O = tflite.BuiltinOptions
    t_sig = tensor("sequential/activation/Sigmoid", [1, 4, 4, 6], INT8, [1.0 / 256], [-128])
    t_axes = tensor("sequential/global_average_pooling2d/Mean/reduction_indices", [2], INT32,
                    data=np.array([1, 2], np.int32))
    s_m, z_m = 1.0 / 300, -120
    t_mean = tensor("sequential/global_average_pooling2d/Mean", [1, 6], INT8, [s_m], [z_m])
    w_s = 0.0093
    t_w = tensor("sequential/dense/MatMul", [5, 6], INT8, [w_s], [0], 0,
                 rng.integers(-127, 128, (5, 6)).astype(np.int8))
    t_b = tensor("sequential/dense/BiasAdd/ReadVariableOp", [5], INT32,
                 [float(np.float32(s_m) * np.float32(w_s))], [0], 0,
                 rng.integers(-300, 300, 5).astype(np.int32))
    t_logit = tensor("sequential/dense/BiasAdd", [1, 5], INT8, [0.02], [3])
    t_prob = tensor("sequential/dense/Softmax", [1, 5], INT8, [1.0 / 256], [-128])
    t_out = tensor("StatefulPartitionedCall:0", [1, 5], FLOAT32)
    ops = [
        (B.QUANTIZE, [t_in], [t_q], None),
        (B.CONV_2D, [t_q, t_w1, t_b1], [t_c1], ("Conv2DOptions", O.Conv2DOptions,
         dict(Padding=0, StrideW=1, StrideH=1, FusedActivationFunction=3,
              DilationWFactor=1, DilationHFactor=1))),
        (B.DEPTHWISE_CONV_2D, [t_c1, t_w2, t_b2], [t_c2], ("DepthwiseConv2DOptions",
         O.DepthwiseConv2DOptions, dict(Padding=0, StrideW=2, StrideH=2, DepthMultiplier=1,
                                        FusedActivationFunction=0, DilationWFactor=1,
                                        DilationHFactor=1))),
        (B.LOGISTIC, [t_c2], [t_sig], None),
        (B.MEAN, [t_sig, t_axes], [t_mean], ("ReducerOptions", O.ReducerOptions,
                                              dict(KeepDims=False))),
        (B.FULLY_CONNECTED, [t_mean, t_w, t_b], [t_logit], ("FullyConnectedOptions",
         O.FullyConnectedOptions, dict(FusedActivationFunction=0, KeepNumDims=False))),
        (B.SOFTMAX, [t_logit], [t_prob], ("SoftmaxOptions", O.SoftmaxOptions, dict(Beta=1.0))),
        (B.DEQUANTIZE, [t_prob], [t_out], None),
    ]
    return ops, t_out


def _finish(buffers, tensors, ops, t_in, t_out=None):
    if t_out is None:
        ops, t_out = ops
    codes = sorted({op[0] for op in ops})

    b = flatbuffers.Builder(4096)
    buf_offs = []
    for data in buffers:
        if data:
            b.StartVector(1, len(data), 16)
            b.head -= len(data)
            b.Bytes[b.head:b.head + len(data)] = data
            vec = b.EndVector()
            tflite.BufferStart(b)
            tflite.BufferAddData(b, vec)
        else:
            tflite.BufferStart(b)
        buf_offs.append(tflite.BufferEnd(b))
    t_offs = []
    for t in tensors:
        name = b.CreateString(t["name"])
        shape = _vec_i32(b, t["shape"])
        q = None
        if t["scale"] is not None:
            sc = b.CreateNumpyVector(np.asarray(t["scale"], np.float32))
            zp = b.CreateNumpyVector(np.asarray(t["zp"], np.int64))
            tflite.QuantizationParametersStart(b)
            tflite.QuantizationParametersAddScale(b, sc)
            tflite.QuantizationParametersAddZeroPoint(b, zp)
            tflite.QuantizationParametersAddQuantizedDimension(b, t["qdim"])
            q = tflite.QuantizationParametersEnd(b)
        tflite.TensorStart(b)
        tflite.TensorAddShape(b, shape)
        tflite.TensorAddType(b, t["type"])
        tflite.TensorAddBuffer(b, t["buf"])
        tflite.TensorAddName(b, name)
        if q is not None:
            tflite.TensorAddQuantization(b, q)
        t_offs.append(tflite.TensorEnd(b))
    op_offs = []
    for code, ins, outs, opt in ops:
        iv, ov = _vec_i32(b, ins), _vec_i32(b, outs)
        opt_off = None
        if opt is not None:
            kind, _, fields = opt
            getattr(tflite, f"{kind}Start")(b)
            for k, v in fields.items():
                getattr(tflite, f"{kind}Add{k}")(b, v)
            opt_off = getattr(tflite, f"{kind}End")(b)
        tflite.OperatorStart(b)
        tflite.OperatorAddOpcodeIndex(b, codes.index(code))
        tflite.OperatorAddInputs(b, iv)
        tflite.OperatorAddOutputs(b, ov)
        if opt is not None:
            tflite.OperatorAddBuiltinOptionsType(b, opt[1])
            tflite.OperatorAddBuiltinOptions(b, opt_off)
        op_offs.append(tflite.OperatorEnd(b))
    tv, ov = _offsets(b, t_offs), _offsets(b, op_offs)
    iv, outv = _vec_i32(b, [t_in]), _vec_i32(b, [t_out])
    sgname = b.CreateString("main")
    tflite.SubGraphStart(b)
    tflite.SubGraphAddTensors(b, tv)
    tflite.SubGraphAddInputs(b, iv)
    tflite.SubGraphAddOutputs(b, outv)
    tflite.SubGraphAddOperators(b, ov)
    tflite.SubGraphAddName(b, sgname)
    sg = tflite.SubGraphEnd(b)
    code_offs = []
    for code in codes:
        tflite.OperatorCodeStart(b)
        tflite.OperatorCodeAddDeprecatedBuiltinCode(b, min(code, 127))
        tflite.OperatorCodeAddBuiltinCode(b, code)
        tflite.OperatorCodeAddVersion(b, VERSIONS[code])
        code_offs.append(tflite.OperatorCodeEnd(b))
    cv, sv, bv = _offsets(b, code_offs), _offsets(b, [sg]), _offsets(b, buf_offs)
    desc = b.CreateString("MLIR Converted.")
    tflite.ModelStart(b)
    tflite.ModelAddVersion(b, 3)
    tflite.ModelAddOperatorCodes(b, cv)
    tflite.ModelAddSubgraphs(b, sv)
    tflite.ModelAddDescription(b, desc)
    tflite.ModelAddBuffers(b, bv)
    b.Finish(tflite.ModelEnd(b), file_identifier=b"TFL3")
    return bytes(b.Output())
