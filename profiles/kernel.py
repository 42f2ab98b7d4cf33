"""Kernels: groups of ONNX nodes that a runtime executes as one launch, with the features
every predictor reads (op class, shapes, kernel size, stride, groups, FLOPs, bytes)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

# Kernel op classes. `identity` is the only class that is free by definition (Identity,
# Dropout at inference); `reshape` (views) is priced by each profile like any other class.
OP_CLASSES = (
    "conv",
    "dwconv",
    "quadconv",
    "linear",
    "matmul",
    "layernorm",
    "gelu",
    "softmax",
    "pool",
    "globalpool",
    "reduce",
    "elementwise",
    "concat",
    "split",
    "transpose",
    "slice",
    "reshape",
    "pad",
    "resize",
    "reorder",  # a runtime's layout conversion between kernels (layout.py), not an ONNX op
    "identity",
)

ELEMENTWISE = frozenset(
    {
        "Add",
        "Sub",
        "Mul",
        "Div",
        "Relu",
        "Clip",
        "Sigmoid",
        "HardSigmoid",
        "HardSwish",
        "Tanh",
        "LeakyRelu",
        "Erf",
        "Sqrt",
        "Pow",
        "Neg",
        "Abs",
        "Exp",
        "Log",
        "Reciprocal",
        "Cast",
        "Where",
        "Equal",
        "Less",
        "Greater",
        "LessOrEqual",
        "GreaterOrEqual",
        "Not",
        "And",
        "Or",
        "Max",
        "Min",
        "PRelu",
        "Softplus",
        "Mish",
        "Floor",
        "Ceil",
        "Round",
        "Sign",
        "Mod",
        "BatchNormalization",
        "Elu",
        "Selu",
        "Celu",
        "Gelu",
        "Cos",
        "Sin",
        "Atan",
        "IsNaN",
        "IsInf",
    }
)
SINGLE_OP_CLASS = {
    "Conv": "conv",
    "ConvTranspose": "conv",
    "Gemm": "linear",
    "LayerNormalization": "layernorm",
    "GroupNormalization": "layernorm",
    "InstanceNormalization": "layernorm",
    "Softmax": "softmax",
    "LogSoftmax": "softmax",
    "MaxPool": "pool",
    "AveragePool": "pool",
    "LpPool": "pool",
    "GlobalAveragePool": "globalpool",
    "GlobalMaxPool": "globalpool",
    "ReduceMean": "reduce",
    "ReduceMax": "reduce",
    "ReduceSum": "reduce",
    "ReduceMin": "reduce",
    "ReduceL2": "reduce",
    "ArgMax": "reduce",
    "ArgMin": "reduce",
    "TopK": "reduce",
    "CumSum": "reduce",
    "ReduceProd": "reduce",
    "ScatterElements": "slice",
    "NonZero": "slice",
    "Concat": "concat",
    "Split": "split",
    "Transpose": "transpose",
    "DepthToSpace": "transpose",
    "SpaceToDepth": "transpose",
    "Gather": "slice",
    "Slice": "slice",
    "Tile": "slice",
    "Expand": "slice",
    "ScatterND": "slice",
    "GatherElements": "slice",
    "Reshape": "reshape",
    "Flatten": "reshape",
    "Squeeze": "reshape",
    "Unsqueeze": "reshape",
    "Pad": "pad",
    "Resize": "resize",
    "Upsample": "resize",
    "Identity": "identity",
    "Dropout": "identity",
}
FLOPS_PER_ELEM = {"layernorm": 8.0, "gelu": 8.0, "softmax": 5.0}


@dataclass
class Kernel:
    """One runtime launch. Bytes count data and weights at the profile's element size."""

    op: str
    name: str
    nodes: list[str]
    input_shapes: list[tuple[int, ...]]
    output_shapes: list[tuple[int, ...]]
    flops: float
    bytes_read: float
    bytes_written: float
    weight_bytes: float = 0.0
    kernel_size: tuple[int, ...] | None = None
    stride: tuple[int, ...] | None = None
    groups: int = 1
    extra: dict = field(default_factory=dict)
    latency_ms: float | None = None

    def to_json(self) -> dict:
        d = asdict(self)
        d["input_shapes"] = [list(s) for s in self.input_shapes]
        d["output_shapes"] = [list(s) for s in self.output_shapes]
        return d

    def signature(self) -> tuple:
        """Shapes and config; two kernels with equal signatures cost the same."""
        return (
            self.op,
            tuple(self.input_shapes),
            tuple(self.output_shapes),
            self.kernel_size,
            self.stride,
            self.groups,
            round(self.flops),
            round(self.weight_bytes),
        )
