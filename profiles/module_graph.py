"""nn.Module → `Graph` without exporting: run the module on meta tensors (no compute, no
memory) under a dispatch mode that records every aten op, spelled as the ONNX op the
exporter would emit, so fusion and pricing are shared with the ONNX path.

Fast (a QuadraNet-36-B in a fraction of a second), which `edgedet predict` and NAS
look-up tables need; `predict_module(..., via="onnx")` takes the exporter route instead.
An aten op with no ONNX spelling here stays in the graph as `aten::<name>`, which the
fusion reports as unknown: nothing vanishes silently.
"""

from __future__ import annotations

from typing import Any

from edgedet.profiles.graph import Graph, Node

# aten op → ONNX op; views and copies that the exporter does not emit map to Identity
_SIMPLE = {
    "permute": "Transpose",
    "transpose": "Transpose",
    "view": "Reshape",
    "_unsafe_view": "Reshape",
    "reshape": "Reshape",
    "flatten": "Flatten",
    "unsqueeze": "Unsqueeze",
    "squeeze": "Squeeze",
    "alias": "Identity",
    "detach": "Identity",
    "clone": "Identity",
    "_to_copy": "Identity",
    "expand": "Identity",
    "contiguous": "Identity",
    "lift_fresh": "Identity",
    "add": "Add",
    "sub": "Sub",
    "mul": "Mul",
    "div": "Div",
    "rsub": "Sub",
    "pow": "Pow",
    "relu": "Relu",
    "sigmoid": "Sigmoid",
    "tanh": "Tanh",
    "hardswish": "HardSwish",
    "hardsigmoid": "HardSigmoid",
    "hardtanh": "Clip",
    "clamp": "Clip",
    "leaky_relu": "LeakyRelu",
    "gelu": "Gelu",
    "erf": "Erf",
    "sqrt": "Sqrt",
    "rsqrt": "Reciprocal",
    "exp": "Exp",
    "neg": "Neg",
    "abs": "Abs",
    "reciprocal": "Reciprocal",
    "elu": "Elu",
    "mish": "Mish",
    "softplus": "Softplus",
    "where": "Where",
    "masked_fill": "Where",
    "maximum": "Max",
    "minimum": "Min",
    "_softmax": "Softmax",
    "_safe_softmax": "Softmax",
    "cos": "Cos",
    "sin": "Sin",
    "gather": "GatherElements",
    "topk": "TopK",
    "sort": "TopK",
    "log": "Log",
    "floor": "Floor",
    "ceil": "Ceil",
    "round": "Round",
    "lt": "Less",
    "gt": "Greater",
    "le": "LessOrEqual",
    "ge": "GreaterOrEqual",
    "logical_and": "And",
    "logical_not": "Not",
    "sum": "ReduceSum",
    "max": "ReduceMax",
    "min": "ReduceMin",
    "argmax": "ArgMax",
    "bitwise_not": "Not",
    "bitwise_and": "And",
    "bitwise_or": "Or",
    "any": "ReduceMax",
    "all": "ReduceMin",
    "exp2": "Exp",
    "log2": "Log",
    "addcmul": "Mul",
    "addcdiv": "Div",
    "index_put": "ScatterND",
    "scatter": "ScatterElements",
    "scatter_add": "ScatterElements",
    "prod": "ReduceProd",
    "cumsum": "CumSum",
    "grid_sampler_2d": "Resize",
    "remainder": "Mod",
    "floor_divide": "Div",
    "atan2": "Atan",
    "baddbmm": "MatMul",
    "linspace": "ConstantOfShape",
    "softmax": "Softmax",
    "_log_softmax": "LogSoftmax",
    "mm": "MatMul",
    "bmm": "MatMul",
    "matmul": "MatMul",
    "cat": "Concat",
    "stack": "Concat",
    "select": "Gather",
    "index": "Gather",
    "slice": "Slice",
    "index_select": "Gather",
    "roll": "Slice",
    "constant_pad_nd": "Pad",
    "upsample_nearest2d": "Resize",
    "upsample_bilinear2d": "Resize",
    "split": "Split",
    "split_with_sizes": "Split",
    "unbind": "Split",
    "chunk": "Split",
    "avg_pool2d": "AveragePool",
    "max_pool2d_with_indices": "MaxPool",
    "max_pool2d": "MaxPool",
    "_native_batch_norm_legit_no_training": "BatchNormalization",
    "native_batch_norm": "BatchNormalization",
    "native_layer_norm": "LayerNormalization",
    "native_group_norm": "GroupNormalization",
}


class _Recorder:
    def __init__(self):
        self.nodes: list[Node] = []
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.data: set[str] = set()
        self.names: dict[int, str] = {}
        self.keep: list[Any] = []  # hold tensors so their ids stay unique
        self.n = 0

    def name_of(self, t, data: bool = False) -> str:
        k = id(t)
        if k not in self.names:
            self.n += 1
            nm = f"t{self.n}"
            self.names[k] = nm
            self.keep.append(t)
            self.shapes[nm] = tuple(int(d) for d in t.shape)
            if data:
                self.data.add(nm)
        return self.names[k]

    def fresh(self, t) -> str:
        self.n += 1
        nm = f"t{self.n}"
        self.names[id(t)] = nm
        self.keep.append(t)
        self.shapes[nm] = tuple(int(d) for d in t.shape)
        return nm

    def const(self, v: Any) -> str:
        self.n += 1
        nm = f"k{self.n}"
        self.shapes[nm] = ()
        return nm


def _tensors(x) -> list:
    import torch

    if isinstance(x, torch.Tensor):
        return [x]
    if isinstance(x, (list, tuple)):
        return [t for y in x for t in _tensors(y)]
    return []


def _attrs(op: str, name: str, args: tuple, out) -> dict:
    if op in ("Conv", "ConvTranspose"):
        w = args[1]
        return {
            "group": int(args[8]),
            "strides": list(args[3]),
            "pads": list(args[4]) * 2,
            "kernel_shape": list(w.shape[2:]),
        }
    if op == "ReduceMean":
        nd = args[0].dim()
        dims = args[1] if len(args) > 1 and args[1] is not None else list(range(nd))
        return {"axes": [int(d) % nd for d in dims]}
    if op in ("MaxPool", "AveragePool"):
        ks = list(args[1])
        st = list(args[2]) if len(args) > 2 and args[2] else ks
        return {"kernel_shape": ks, "strides": st}
    return {}


def _attention(rec: _Recorder, args: tuple, out, is_data: bool) -> None:
    """Fused scaled-dot-product attention, spelled as the exporter spells it:
    MatMul(q, kᵀ) → Softmax → MatMul(·, v)."""
    q, k, v = args[:3]
    lq, sk = int(q.shape[-2]), int(k.shape[-2])
    qn, kn, vn = (rec.name_of(t) for t in (q, k, v))
    scores = rec.const(None)
    rec.shapes[scores] = tuple(int(d) for d in q.shape[:-2]) + (lq, sk)
    probs = rec.const(None)
    rec.shapes[probs] = rec.shapes[scores]
    kt = rec.const(None)
    rec.shapes[kt] = tuple(int(d) for d in k.shape[:-2]) + (int(k.shape[-1]), sk)
    o = rec.fresh(out)
    rec.nodes += [
        Node(f"n{len(rec.nodes)}_kT", "Transpose", [kn], [kt]),
        Node(f"n{len(rec.nodes)}_qk", "MatMul", [qn, kt], [scores]),
        Node(f"n{len(rec.nodes)}_softmax", "Softmax", [scores], [probs]),
        Node(f"n{len(rec.nodes)}_pv", "MatMul", [probs, vn], [o]),
    ]
    if is_data:
        rec.data.update({kt, scores, probs, o})


def _drop_gemm_views(nodes: list[Node]) -> None:
    """aten spells Linear on N-D input as view → addmm → view; ONNX has one MatMul on the
    N-D tensor. The two views are bookkeeping, not kernels."""
    prod = {t: n for n in nodes for t in n.outputs}
    users: dict[str, list[Node]] = {}
    for n in nodes:
        for t in n.inputs:
            users.setdefault(t, []).append(n)
    for n in nodes:
        if n.op != "Gemm":
            continue
        src = prod.get(n.inputs[0])
        if src is not None and src.op == "Reshape" and len(users.get(src.outputs[0], [])) == 1:
            src.op = "Identity"
        us = users.get(n.outputs[0], [])
        if len(us) == 1 and us[0].op == "Reshape":
            us[0].op = "Identity"


def _bypass_identities(nodes: list[Node], outputs: list[str]) -> tuple[list[Node], list[str]]:
    """Remove Identity nodes (views, copies the exporter never emits), rewiring their users."""
    alias: dict[str, str] = {}
    kept = []
    for n in nodes:
        n.inputs = [alias.get(t, t) for t in n.inputs]
        if n.op == "Identity" and len(n.inputs) >= 1 and len(n.outputs) == 1:
            alias[n.outputs[0]] = n.inputs[0]
            continue
        kept.append(n)
    return kept, [alias.get(t, t) for t in outputs]


def record(module, input_shape: tuple[int, ...], device: str = "meta") -> Graph:
    """The runtime graph of `module` on an input of `input_shape` (batch included).

    device="meta" runs nothing; device="cpu" really runs the module (random input) for
    models whose shapes depend on values (e.g. detectors that select queries by score)."""
    import torch  # lazily: fresh timing children import the predictor and never record modules
    from torch.utils._python_dispatch import TorchDispatchMode

    rec = _Recorder()

    class Mode(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            _record_op(rec, func, args, kwargs, out)
            return out

    was_training = module.training
    module.eval()
    try:
        params = {k: v.to(device) for k, v in module.named_parameters()}
        buffers = {k: v.to(device) for k, v in module.named_buffers()}
        x = torch.zeros(*input_shape, device="meta") if device == "meta" else torch.randn(*input_shape)
        rec.name_of(x, data=True)
        rec.names[id(x)] = "input"
        rec.shapes["input"] = tuple(input_shape)
        rec.data = {"input"}
        # with grad enabled nn.MultiheadAttention skips its fused fast path (one opaque op)
        with torch.set_grad_enabled(device != "meta"), Mode():
            y = torch.func.functional_call(module, {**params, **buffers}, (x,))
    finally:
        module.train(was_training)
    outputs = [rec.names[id(t)] for t in _tensors(y) if id(t) in rec.names]
    _drop_gemm_views(rec.nodes)
    rec.nodes, outputs = _bypass_identities(rec.nodes, outputs)
    runtime = [n for n in rec.nodes if any(i in rec.data for i in n.inputs)]
    folded = [n for n in rec.nodes if not any(i in rec.data for i in n.inputs)]
    for n in runtime:  # constants and weights: shape known; no bytes for Python scalars
        for t in n.inputs:
            rec.shapes.setdefault(t, ())
    return Graph(runtime, rec.shapes, rec.data, ["input"], outputs, folded)


# ops that read only a shape (or sync a scalar): not kernels on the data
_SHAPE_ONLY = {"zeros_like", "ones_like", "full_like", "empty_like", "_local_scalar_dense", "new_zeros",
               "new_ones", "new_full", "new_empty"}
# constants built from shapes: folded at load time
_FOLDED = {"zeros", "ones", "full", "arange", "empty", "scalar_tensor", "zeros_like", "ones_like", "ne", "eq",
           "fill"}


def _record_op(rec: _Recorder, func, args, kwargs: dict, out) -> None:
    """One dispatched aten op as a graph node (or nothing, for shape-only and constant ops)."""
    name = func.overloadpacket.__name__.rstrip("_")
    inplace = func.overloadpacket.__name__.endswith("_") and name != "copy"
    ins = _tensors(list(args) + list(kwargs.values()))
    if not ins:
        return
    in_names = [rec.name_of(t) for t in ins]  # names every input, even of ops dropped below
    is_data = any(n in rec.data for n in in_names)
    outs = _tensors(out)
    if name in _SHAPE_ONLY:
        return
    if name.startswith("_scaled_dot_product") or name == "scaled_dot_product_attention":
        _attention(rec, args, outs[0], is_data)
        return
    if name in _FOLDED:
        return
    op, in_names = _op_and_inputs(rec, name, args, outs, in_names, is_data)
    if op in ("LayerNormalization", "BatchNormalization", "MaxPool", "GroupNormalization"):
        outs = outs[:1]  # mean / rstd / indices are not used at inference
    # scalar operands of binary ops are constants
    if op in ("Add", "Sub", "Mul", "Div", "Pow") and len(in_names) == 1:
        in_names = in_names + [rec.const(None)]
    out_names = [rec.fresh(t) for t in outs] if not inplace else [rec.fresh(outs[0])]
    attrs = _attrs(op, name, args, out)
    rec.nodes.append(Node(f"n{len(rec.nodes)}_{name}", op, in_names, out_names, attrs))
    if is_data:
        rec.data.update(out_names)


def _op_and_inputs(rec: _Recorder, name: str, args, outs, in_names: list[str], is_data: bool):
    """The ONNX-style op an aten op maps to, and its inputs in that op's order."""
    if name in ("convolution", "_convolution"):
        op = "ConvTranspose" if args[6] else "Conv"
        return op, [rec.name_of(args[0]), rec.name_of(args[1])] + (
            [rec.name_of(args[2])] if args[2] is not None else []
        )
    if name == "addmm":  # bias + a @ b  → Gemm(a, b, bias)
        return "Gemm", [rec.name_of(args[1]), rec.name_of(args[2]), rec.name_of(args[0])]
    if name in ("mean", "amax"):
        return ("ReduceMean" if name == "mean" else "ReduceMax"), in_names
    if name in ("_adaptive_avg_pool2d", "adaptive_avg_pool2d"):
        return ("GlobalAveragePool" if tuple(outs[0].shape[-2:]) == (1, 1) else "AveragePool"), in_names
    if name == "silu":  # x · sigmoid(x): a Sigmoid node, then the Mul
        sig = rec.const(None)
        rec.shapes[sig] = tuple(int(d) for d in outs[0].shape)
        rec.nodes.append(Node(f"n{len(rec.nodes)}", "Sigmoid", in_names[:1], [sig]))
        if is_data:
            rec.data.add(sig)
        return "Mul", [in_names[0], sig]
    if name == "copy":
        return "Identity", in_names
    return _SIMPLE.get(name, f"aten::{name}"), in_names
