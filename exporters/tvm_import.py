"""ONNX → Relax with edgedet's quadratic conv kept as one fused TVM kernel.

TVM's ONNX importer runs standard ops only and has no hook for custom ops. Here every local
function but `edgedet.QuadraConv` is inlined to standard ops (`onnx.inliner`), and each
`edgedet::QuadraConv` node becomes a `call_tir` of the fused compute of
`edgedet.kernels.tvm_quadconv` (three accumulators, one read of each input element per tap),
through a subclass of the frontend's `ONNXGraphImporter` that converts that one op. The
function is marked opaque (never fused with neighbours) and scheduled for the target later, by
the default-schedule pass. `fused=False` (export `--decompose`), or a graph with a dynamic
dimension (the kernel is built for static shapes), inlines the QuadraConv function too: three
depthwise convs + Mul + Add, as before.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgedet.exporters.onnx import constants_as_tensors
from edgedet.exporters.quadraconv_onnx import DOMAIN, OP_TYPE
from edgedet.kernels.tvm_quadconv import QuadConvSpec, quadconv_func

FUSED_OP = f"{DOMAIN}.{OP_TYPE}"


@dataclass
class ImportReport:
    """What reached Relax as a fused edgedet kernel (`fused`: op → count) and why not, if not."""

    fused: dict[str, int] = field(default_factory=dict)
    decomposed: dict[str, str] = field(default_factory=dict)  # op → why it was inlined


def _has_dynamic_dims(model) -> bool:
    for v in model.graph.input:
        for d in v.type.tensor_type.shape.dim:
            if d.HasField("dim_param") or not d.HasField("dim_value"):
                return True
    return False


def inline_for_tvm(model, fused: bool, report: ImportReport):
    """The model with every local function inlined but (when `fused` and shapes are static)
    edgedet.QuadraConv; its opset import for the edgedet domain kept only while nodes use it."""
    import onnx.inliner

    has_qc = any(n.domain == DOMAIN and n.op_type == OP_TYPE for n in model.graph.node)
    keep = fused and has_qc and not _has_dynamic_dims(model)
    if has_qc and not keep:
        report.decomposed[FUSED_OP] = ("--decompose" if not fused else
                                       "dynamic input shape: the fused kernel is built for static shapes")
    if not len(model.functions):
        return model
    out = onnx.inliner.inline_selected_functions(model, [(DOMAIN, OP_TYPE)], exclude=keep)
    del out.functions[:]
    if not keep:
        ops = [o for o in out.opset_import if o.domain != DOMAIN]
        del out.opset_import[:]
        out.opset_import.extend(ops)
    constants_as_tensors(out.graph)
    return out


def _importer_class():
    from tvm import relax
    from tvm.relax.frontend.onnx import onnx_frontend as fe

    class EdgedetImporter(fe.ONNXGraphImporter):
        """The frontend's importer, plus `edgedet::QuadraConv` → call_tir(fused quadconv)."""

        report: ImportReport

        def _check_for_unsupported_ops(self, graph):
            others = [n for n in graph.node if n.op_type != OP_TYPE]
            del_graph = type(graph)()
            del_graph.node.extend(others)
            super()._check_for_unsupported_ops(del_graph)

        def _convert_operator(self, op_name, inputs, attrs, opset):
            if op_name != OP_TYPE:
                return super()._convert_operator(op_name, inputs, attrs, opset)
            return self._quadraconv(inputs, attrs)

        def _quadraconv(self, inputs, attrs):
            x, wa = inputs[0], inputs[1]
            n, c, h, w = (int(v) for v in x.ty.shape)
            k = int(wa.ty.shape[-1])
            strides, pads = attrs.get("strides", (1, 1)), attrs.get("pads", (0,) * 4)
            dil = attrs.get("dilations", (1, 1))
            if any(len(set(v)) != 1 for v in (strides, pads, dil)) or attrs.get("group", c) != c:
                raise ValueError(f"edgedet::QuadraConv with unequal strides/pads/dilations {strides}/{pads}/{dil}")
            spec = QuadConvSpec(n, c, h, w, k, int(strides[0]), int(pads[0]), int(dil[0]))
            name = f"edgedet_quadconv_c{c}_h{h}_k{k}"
            gv = self.bb.add_func(quadconv_func(spec).with_attr("global_symbol", name), name)
            self.report.fused[FUSED_OP] = self.report.fused.get(FUSED_OP, 0) + 1
            out = relax.TensorType(spec.out_shape, "float32")
            return relax.call_tir(gv, list(inputs[:5]), out)

    return EdgedetImporter


def from_onnx(model, report: ImportReport):
    """`tvm.relax.frontend.onnx.from_onnx` (weights as constants) with QuadraConv converted."""
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
    importer = _importer_class()(None, "float32", keep_params_in_input=False, sanitize=True)
    importer.report = report
    return importer.from_onnx(model.graph, opset)
