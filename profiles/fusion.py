"""Fusion: group the runtime nodes of a `Graph` into the kernels a runtime launches.

Two stages:
1. *patterns* every runtime treats as one kernel however the exporter spelled them: the
   quadratic conv (depthwise conv(s) → Mul → Add [→ bias]), LayerNorm decomposed into
   ReduceMean/Sub/Pow/…, GELU as Div/Erf/Add/Mul/Mul, swish as Sigmoid·x;
2. *epilogues* a profile says its runtime folds into the producing conv / matmul:
   bias, bn, act (Relu/Clip/HardSwish/…), scale (× a weight), gelu, residual add.
Every node left over becomes a kernel of its own op class; an op type with no class is
reported as unknown (never silently dropped).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from edgedet import flops as flop_count
from edgedet.profiles.graph import Graph, Node
from edgedet.profiles.kernel import ELEMENTWISE, FLOPS_PER_ELEM, SINGLE_OP_CLASS, Kernel

VIEW_OPS = frozenset({"Gather", "Slice", "Split", "Reshape", "Squeeze", "Unsqueeze", "Identity"})
ACT_OPS = frozenset(
    {
        "Relu",
        "Clip",
        "LeakyRelu",
        "HardSigmoid",
        "HardSwish",
        "Sigmoid",
        "Tanh",
        "Elu",
        "Selu",
        "PRelu",
        "Mish",
        "Softplus",
    }
)
ANCHORS = frozenset({"conv", "dwconv", "linear", "quadconv"})
DEFAULT_EPILOGUES = ("bias", "bn", "act")
_FOLDS_ANY_TAIL = ["bias", "bn", "act", "residual", "scale", "gelu"]  # TVM's FuseOps: any elementwise tail
RUNTIME_FUSION = {  # `fusion` of a profile measured with each runtime
    rt: {"epilogues": eps, "layernorm_pattern": True, "gelu_pattern": True}
    for rt, eps in (("onnxruntime", list(DEFAULT_EPILOGUES)), ("openvino", list(DEFAULT_EPILOGUES)),
                    ("tvm", _FOLDS_ANY_TAIL))
}


@dataclass
class FusionRules:
    """What a runtime folds into a conv/linear kernel (profile JSON `fusion`)."""

    epilogues: tuple[str, ...] = DEFAULT_EPILOGUES
    layernorm_pattern: bool = True
    gelu_pattern: bool = True

    @classmethod
    def from_json(cls, d: dict | None) -> FusionRules:
        d = d or {}
        return cls(
            tuple(d.get("epilogues", DEFAULT_EPILOGUES)),
            bool(d.get("layernorm_pattern", True)),
            bool(d.get("gelu_pattern", True)),
        )


@dataclass
class _Group:
    op: str
    nodes: list[int]
    anchor: int
    extra: dict = field(default_factory=dict)


class _Fuser:
    def __init__(self, g: Graph, rules: FusionRules):
        self.g, self.rules = g, rules
        self.producer = {t: i for i, n in enumerate(g.nodes) for t in n.outputs if t}
        self.owner: dict[int, _Group] = {}

    # -- helpers ---------------------------------------------------------------------
    def node(self, i: int) -> Node:
        return self.g.nodes[i]

    def data_inputs(self, n: Node) -> list[str]:
        return [t for t in n.inputs if t and t in self.g.data]

    def users(self, t: str) -> list[int]:
        return self.g.consumers.get(t, [])

    def sole_user(self, i: int) -> int | None:
        """The one consumer of node i's single output (None if 0 or several / graph output)."""
        outs = [t for t in self.node(i).outputs if t]
        if len(outs) != 1 or outs[0] in self.g.outputs:
            return None
        us = self.users(outs[0])
        return us[0] if len(us) == 1 else None

    def free(self, i: int | None) -> bool:
        return i is not None and i not in self.owner

    def claim(self, grp: _Group) -> None:
        for i in grp.nodes:
            self.owner[i] = grp

    def trace_view(self, t: str, path: list[int]) -> int | None:
        """Walk back from tensor t through view ops to the producing node."""
        i = self.producer.get(t)
        while i is not None and self.node(i).op in VIEW_OPS:
            path.append(i)
            src = self.data_inputs(self.node(i))
            if not src:
                return None
            i = self.producer.get(src[0])
        return i

    def is_dw(self, i: int | None) -> bool:
        if i is None or self.node(i).op != "Conv":
            return False
        n = self.node(i)
        g = int(n.attrs.get("group", 1))
        return g > 1 and g == self.g.shapes[n.inputs[0]][1]

    # -- patterns --------------------------------------------------------------------
    def quadconv(self) -> None:
        for m, n in enumerate(self.g.nodes):
            if n.op != "Mul" or m in self.owner or len(self.data_inputs(n)) != 2:
                continue
            pa, pb = [], []
            ca, cb = self.trace_view(n.inputs[0], pa), self.trace_view(n.inputs[1], pb)
            if not (self.is_dw(ca) and self.is_dw(cb)):
                continue
            x = self.node(ca).inputs[0]
            if self.node(cb).inputs[0] != x:
                continue
            add = self.sole_user(m)
            if not self.free(add) or self.node(add).op != "Add":
                continue
            other = [t for t in self.node(add).inputs if t != n.outputs[0]]
            pc: list[int] = []
            cc = self.trace_view(other[0], pc) if other else None
            if not self.is_dw(cc) or self.node(cc).inputs[0] != x:
                continue
            nodes = {ca, cb, cc, m, add, *pa, *pb, *pc}
            # the grouped form's views (one Split / three Gathers) all belong to it
            for c in {ca, cb, cc}:
                for t in self.node(c).outputs:
                    for u in self.users(t):
                        if self.node(u).op in VIEW_OPS:
                            nodes.add(u)
                            for t2 in self.node(u).outputs:
                                nodes.update(v for v in self.users(t2) if self.node(v).op in VIEW_OPS)
            if any(i in self.owner for i in nodes):
                continue
            grp = _Group("quadconv", sorted(nodes), ca, {"convs": sorted({ca, cb, cc})})
            bias = self.sole_user(add)
            if (
                self.free(bias)
                and self.node(bias).op == "Add"
                and len(self.data_inputs(self.node(bias))) == 1
            ):
                grp.nodes.append(bias)
            self.claim(grp)

    def gelu(self) -> None:
        for e, n in enumerate(self.g.nodes):
            if n.op != "Erf" or e in self.owner:
                continue
            pre = self.producer.get(n.inputs[0])
            if pre is None or self.node(pre).op not in ("Div", "Mul") or pre in self.owner:
                continue
            x = self.data_inputs(self.node(pre))
            if len(x) != 1:
                continue
            x = x[0]
            nodes = [pre, e]
            cur = self.sole_user(e)
            if not self.free(cur) or self.node(cur).op != "Add":
                continue
            nodes.append(cur)
            for _ in range(2):
                nxt = self.sole_user(cur)
                if not self.free(nxt) or self.node(nxt).op != "Mul":
                    break
                for t in self.node(nxt).inputs:
                    p = self.producer.get(t)
                    if (
                        p is not None
                        and p not in nodes
                        and self.node(p).op == "Mul"
                        and x in self.node(p).inputs
                        and self.free(p)
                        and len(self.data_inputs(self.node(p))) == 1
                    ):
                        nodes.append(p)  # 0.5·x computed first
                nodes.append(nxt)
                cur = nxt
            if sum(self.node(i).op == "Mul" for i in nodes) < 2:
                continue
            self.claim(_Group("gelu", nodes, pre))

    def layernorm(self) -> None:
        for r, n in enumerate(self.g.nodes):
            if n.op != "ReduceMean" or r in self.owner:
                continue
            x = n.inputs[0]
            subs = [
                u for u in self.users(n.outputs[0]) if self.node(u).op == "Sub" and x in self.node(u).inputs
            ]
            if len(subs) != 1:
                continue
            s = subs[0]
            nodes = [r, s]
            frontier = [s]
            ok = False
            # walk the variance branch and the normalisation to the final Div/Mul
            seen = set(nodes)
            while frontier:
                i = frontier.pop()
                for t in self.node(i).outputs:
                    for u in self.users(t):
                        if u in seen or u in self.owner:
                            continue
                        op = self.node(u).op
                        if op in ("Pow", "Mul", "ReduceMean", "Add", "Sqrt", "Div", "Reciprocal"):
                            seen.add(u)
                            nodes.append(u)
                            if op == "Div" or (
                                op == "Mul"
                                and s in [self.producer.get(t2) for t2 in self.node(u).inputs]
                                and self.node(u).inputs[0] != self.node(u).inputs[1]
                            ):
                                ok = True
                                continue
                            frontier.append(u)
            if not ok or not any(self.node(i).op == "ReduceMean" for i in nodes[2:]):
                continue
            last = max(nodes)
            for _ in range(2):  # affine γ, β
                nxt = self.sole_user(last)
                if (
                    self.free(nxt)
                    and self.node(nxt).op in ("Mul", "Add")
                    and len(self.data_inputs(self.node(nxt))) == 1
                    and nxt not in nodes
                ):
                    nodes.append(nxt)
                    last = nxt
            self.claim(_Group("layernorm", sorted(nodes), r))

    def swish(self) -> None:
        for s, n in enumerate(self.g.nodes):
            if n.op != "Sigmoid" or s in self.owner:
                continue
            u = self.sole_user(s)
            if self.free(u) and self.node(u).op == "Mul" and n.inputs[0] in self.node(u).inputs:
                self.claim(_Group("elementwise", [s, u], s, {"fn": "swish"}))

    # -- singles and epilogues -------------------------------------------------------
    def single_class(self, i: int) -> str | None:
        n = self.node(i)
        if n.op == "Conv":
            return "dwconv" if self.is_dw(i) else "conv"
        if n.op == "MatMul":
            return "matmul" if len(self.data_inputs(n)) == 2 else "linear"
        if n.op in ("ReduceMean", "ReduceMax"):
            shp = self.g.shapes.get(n.inputs[0], ())
            axes = n.attrs.get("axes")
            if axes is None and len(n.inputs) > 1:
                axes = None
            if len(shp) == 4 and axes is not None and sorted(a % 4 for a in axes) == [2, 3]:
                return "globalpool"
        if n.op in SINGLE_OP_CLASS:
            return SINGLE_OP_CLASS[n.op]
        if n.op in ELEMENTWISE:
            return "gelu" if n.op == "Gelu" else "elementwise"
        return None

    def epilogue_kind(self, i: int) -> str | None:
        n = self.node(i)
        grp = self.owner.get(i)
        if grp is not None and len(grp.nodes) == 1 and grp.op not in ANCHORS and grp.op != "gelu":
            grp = None
        if grp is not None:
            return (
                "gelu"
                if grp.op == "gelu" and grp.anchor == i
                else ("act" if grp.extra.get("fn") == "swish" and grp.anchor == i else None)
            )
        nd = len(self.data_inputs(n))
        if n.op == "BatchNormalization":
            return "bn"
        if n.op in ACT_OPS:
            return "act"
        if n.op == "Add":
            return "bias" if nd == 1 else "residual"
        if n.op == "Mul" and nd == 1:
            return "scale"
        return None

    def epilogues(self) -> None:
        allowed = set(self.rules.epilogues)
        for grp in {id(g): g for g in self.owner.values()}.values():
            if grp.op not in ANCHORS:
                continue
            last = max(grp.nodes)
            while True:
                nxt = self.sole_user(last)
                if nxt is None:
                    break
                kind = self.epilogue_kind(nxt)
                if kind is None or kind not in allowed:
                    break
                other = self.owner.get(nxt)
                if (
                    other is not None and len(other.nodes) > 1 or (other is not None and other.op == "gelu")
                ):  # a whole pattern (gelu / swish) folds in
                    if other is grp:
                        break
                    for j in other.nodes:
                        self.owner[j] = grp
                    grp.nodes.extend(other.nodes)
                    last = max(other.nodes)
                else:
                    grp.nodes.append(nxt)
                    self.owner[nxt] = grp
                    if other is not None:
                        other.nodes.remove(nxt)
                    last = nxt
                grp.extra.setdefault("epilogues", []).append(kind)

    def run(self) -> tuple[list[_Group], list[str]]:
        if self.rules.layernorm_pattern:
            self.layernorm()
        if self.rules.gelu_pattern:
            self.gelu()
        self.quadconv()
        self.swish()
        unknown: list[str] = []
        for i in range(len(self.g.nodes)):
            if i in self.owner:
                continue
            cls = self.single_class(i)
            if cls is None:
                unknown.append(self.node(i).op)
                cls = "unknown"
            self.claim(_Group(cls, [i], i))
        self.epilogues()
        groups = sorted(
            {id(g): g for g in self.owner.values() if g.nodes}.values(), key=lambda g: min(g.nodes)
        )
        return groups, unknown


def _conv_geometry(g: Graph, n: Node) -> tuple[tuple[int, ...], tuple[int, ...], int]:
    w = g.shapes[n.inputs[1]]
    ks = tuple(n.attrs.get("kernel_shape", w[2:]))
    st = tuple(n.attrs.get("strides", [1] * len(ks)))
    return ks, st, int(n.attrs.get("group", 1))


def _conv_flops(g: Graph, n: Node) -> float:
    w = g.shapes[n.inputs[1]]
    if n.op == "ConvTranspose":
        return float(flop_count.conv_transpose(g.shapes[n.inputs[0]], w))
    return float(flop_count.conv(g.shapes[n.outputs[0]], w))


def _kernel(g: Graph, grp: _Group, elem_bytes: float) -> Kernel:
    nodes = [g.nodes[i] for i in grp.nodes]
    inside_out = {t for n in nodes for t in n.outputs if t}
    ext_in: list[str] = []
    for n in nodes:
        for t in n.inputs:
            if t and t not in inside_out and t not in ext_in:
                ext_in.append(t)
    ext_out = []
    member = set(grp.nodes)
    for n in nodes:
        for t in n.outputs:
            if t and (t in g.outputs or any(u not in member for u in g.consumers.get(t, []))):
                ext_out.append(t)
    data_in = [t for t in ext_in if t in g.data]
    weights = [t for t in ext_in if t not in g.data and t in g.shapes]
    anchor = g.nodes[grp.anchor]
    ks = st = None
    groups = 1
    flops = 0.0
    op = grp.op
    if op in ("conv", "dwconv"):
        ks, st, groups = _conv_geometry(g, anchor)
        flops = _conv_flops(g, anchor)
    elif op == "quadconv":
        convs = [g.nodes[i] for i in grp.extra["convs"]]
        ks, st, groups = _conv_geometry(g, convs[0])
        flops = sum(_conv_flops(g, c) for c in convs)
        data_in = [anchor.inputs[0]]
    elif op in ("linear", "matmul"):
        a = g.shapes[anchor.inputs[0]]
        k = a[-1] if anchor.op == "MatMul" or not anchor.attrs.get("transA") else a[0]
        flops = float(flop_count.matmul(g.shapes[anchor.outputs[0]], k))
    elif op in FLOPS_PER_ELEM:
        flops = FLOPS_PER_ELEM[op] * g.numel(anchor.inputs[0])
    elif op == "pool":
        ks = tuple(anchor.attrs.get("kernel_shape", ()))
        st = tuple(anchor.attrs.get("strides", [1] * len(ks)))
        flops = float(g.numel(anchor.outputs[0]) * math.prod(ks))
    elif op in ("globalpool", "reduce"):
        flops = float(g.numel(anchor.inputs[0]))
    elif op == "elementwise":
        flops = float(sum(g.numel(n.outputs[0]) for n in nodes))
    if op in ("conv", "dwconv", "linear", "matmul", "quadconv"):
        flops += sum(
            g.numel(n.outputs[0])
            for n in nodes
            if n is not anchor and n.op not in VIEW_OPS and n.op != "Conv"
        )
    if op in ("reshape", "identity"):
        read = write = 0.0
    else:
        read = float(sum(g.numel(t) for t in data_in + weights)) * elem_bytes
        write = float(sum(g.numel(t) for t in ext_out)) * elem_bytes
    wbytes = float(sum(g.numel(t) for t in weights)) * elem_bytes
    extra = {k: v for k, v in grp.extra.items() if k != "convs"}
    return Kernel(
        op=op,
        name=anchor.name,
        nodes=[n.op for n in nodes],
        input_shapes=[g.shapes.get(t, ()) for t in data_in],
        output_shapes=[g.shapes.get(t, ()) for t in ext_out],
        flops=flops,
        bytes_read=read,
        bytes_written=write,
        weight_bytes=wbytes,
        kernel_size=ks,
        stride=st,
        groups=groups,
        extra=extra,
    )


def fuse(
    g: Graph, rules: FusionRules | None = None, elem_bytes: float = 4.0
) -> tuple[list[Kernel], list[str]]:
    """Kernels of `g` in execution order, and the op types that have no kernel class."""
    groups, unknown = _Fuser(g, rules or FusionRules()).run()
    return [_kernel(g, grp, elem_bytes) for grp in groups], sorted(set(unknown))
