"""Export-time mapping of edgedet's detection ops to the ONNX operators made for them.

Inside `patched()` (through the one seam `edgedet.ops.export_forms`, so every caller of
the ops is covered):
* `edgedet.ops.nms.fixed_size_nms` (as used by ASAG's static anchor generator and its
  optional detection NMS, and Plain-DETR's optional distinct queries) becomes ONNX
  `NonMaxSuppression` (one class, `max_output_boxes_per_class = K`, IoU strictly above the
  threshold suppresses — the same rule), scattered back into the fixed (B,K) indices + kept
  mask; padding slots hold index 0 (the eager op puts a dropped box there; both are masked);
* `edgedet.ops.roi_align.roi_align_batched` becomes ONNX `RoiAlign` (mode avg,
  `output_half_pixel` / `half_pixel` for aligned False / True, fixed sampling ratio);
* `torch.sort(..., stable=True)` exports as `TopK` over the whole axis (ONNX TopK puts the
  lower index first among equal values, i.e. a stable sort), `torch.exp2` as `Pow(2, x)`.
Eager values are unchanged: each Function's forward calls the original op.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import Tensor

from edgedet.ops.export_forms import export_forms
from edgedet.ops.nms import fixed_size_nms_eager as _nms_eager
from edgedet.ops.roi_align import roi_align_batched_eager as _roi_align_eager

_SORT_REGISTERED = False


def _register_sort(opset: int) -> None:
    global _SORT_REGISTERED
    if _SORT_REGISTERED:
        return
    from torch.onnx import register_custom_op_symbolic
    from torch.onnx._internal.torchscript_exporter import symbolic_helper as sh

    def sort(g, self, *args):
        # aten::sort(self, dim, descending) or aten::sort.stable(self, stable, dim, descending)
        dim, descending = (args[1], args[2]) if len(args) >= 3 else (args[0], args[1])
        dim = sh._maybe_get_const(dim, "i")
        descending = sh._maybe_get_const(descending, "b")
        shape = g.op("Shape", self)
        k = g.op("Gather", shape, g.op("Constant", value_t=torch.tensor([dim], dtype=torch.int64)), axis_i=0)
        return g.op("TopK", self, k, axis_i=dim, largest_i=int(bool(descending)), sorted_i=1, outputs=2)

    def exp2(g, self):
        two = g.op("Constant", value_t=torch.tensor(2.0, dtype=torch.float32))
        return g.op("Pow", g.op("CastLike", two, self), self)

    for v in range(11, max(opset, 17) + 1):
        register_custom_op_symbolic("aten::sort", sort, v)
        register_custom_op_symbolic("aten::exp2", exp2, v)
    _SORT_REGISTERED = True


class _NMS(torch.autograd.Function):
    @staticmethod
    def forward(ctx, boxes, scores, valid, iou_threshold: float, max_output: int):  # noqa: D401
        return _nms_eager(boxes, scores, valid, iou_threshold, max_output)

    @staticmethod
    def symbolic(g, boxes, scores, valid, iou_threshold: float, max_output: int):
        def const(v, dtype):
            return g.op("Constant", value_t=torch.tensor(v, dtype=dtype))

        low = torch.finfo(torch.float32).min
        masked = g.op("Where", valid, scores, const(low, torch.float32))
        sel = g.op(
            "NonMaxSuppression",
            boxes,
            g.op("Unsqueeze", masked, const([1], torch.int64)),
            const([max_output], torch.int64),
            const([iou_threshold], torch.float32),
            const([low / 2], torch.float32),
            center_point_box_i=0,
        )  # (S,3): batch, class, box
        b_idx = g.op("Gather", sel, const(0, torch.int64), axis_i=1)  # (S,)
        box_idx = g.op("Gather", sel, const(2, torch.int64), axis_i=1)
        bsz = g.op("Gather", g.op("Shape", scores), const(0, torch.int64), axis_i=0)
        batches = g.op("Range", const(0, torch.int64), bsz, const(1, torch.int64))
        onehot = g.op(
            "Cast", g.op("Equal", g.op("Unsqueeze", b_idx, const([1], torch.int64)), batches), to_i=7
        )  # (S,B) int64
        rank = g.op("Sub", g.op("CumSum", onehot, const(0, torch.int64)), const(1, torch.int64))
        pos = g.op(
            "Squeeze",
            g.op("GatherElements", rank, g.op("Unsqueeze", b_idx, const([1], torch.int64)), axis_i=1),
            const([1], torch.int64),
        )
        where = g.op(
            "Concat",
            g.op("Unsqueeze", b_idx, const([1], torch.int64)),
            g.op("Unsqueeze", pos, const([1], torch.int64)),
            axis_i=1,
        )  # (S,2)
        shape = g.op(
            "Concat",
            g.op("Unsqueeze", bsz, const([0], torch.int64)),
            const([max_output], torch.int64),
            axis_i=0,
        )
        zeros = g.op("ConstantOfShape", shape, value_t=torch.tensor([0], dtype=torch.int64))
        idx = g.op("ScatterND", zeros, where, box_idx)
        ones = g.op(
            "Cast", g.op("Add", g.op("Mul", box_idx, const(0, torch.int64)), const(1, torch.int64)), to_i=9
        )  # (S,) True
        kept = g.op("ScatterND", g.op("Cast", zeros, to_i=9), where, ones)
        return idx, kept


def fixed_size_nms_onnx(
    boxes: Tensor, scores: Tensor, valid: Tensor, iou_threshold: float, max_output: int
) -> tuple[Tensor, Tensor]:
    return _NMS.apply(boxes, scores, valid, float(iou_threshold), int(max_output))


class _RoIAlign(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx, features, boxes, ph: int, pw: int, spatial_scale: float, sampling_ratio: int, aligned: bool
    ):  # noqa: D401
        return _roi_align_eager(features, boxes, (ph, pw), spatial_scale, sampling_ratio, aligned)

    @staticmethod
    def symbolic(
        g, features, boxes, ph: int, pw: int, spatial_scale: float, sampling_ratio: int, aligned: bool
    ):
        def const(v):
            return g.op("Constant", value_t=torch.tensor(v, dtype=torch.int64))

        shape = g.op("Shape", boxes)
        bsz = g.op("Gather", shape, const(0), axis_i=0)
        nq = g.op("Gather", shape, const(1), axis_i=0)
        rois = g.op("Reshape", boxes, const([-1, 4]))
        batch = g.op("Unsqueeze", g.op("Range", const(0), bsz, const(1)), const([1]))  # (B,1)
        bq = g.op("Concat", g.op("Unsqueeze", bsz, const([0])), g.op("Unsqueeze", nq, const([0])), axis_i=0)
        batch_idx = g.op("Reshape", g.op("Expand", batch, bq), const([-1]))
        pooled = g.op(
            "RoiAlign",
            features,
            rois,
            batch_idx,
            mode_s="avg",
            output_height_i=ph,
            output_width_i=pw,
            sampling_ratio_i=sampling_ratio,
            spatial_scale_f=spatial_scale,
            coordinate_transformation_mode_s="half_pixel" if aligned else "output_half_pixel",
        )
        out_shape = g.op("Concat", bq, const([-1, ph, pw]), axis_i=0)
        return g.op("Reshape", pooled, out_shape)


def roi_align_batched_onnx(
    features: Tensor,
    boxes: Tensor,
    output_size,
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
    method: str = "auto",  # how eager torch computes it; the graph holds RoiAlign either way
) -> Tensor:
    ph, pw = (output_size, output_size) if isinstance(output_size, int) else output_size
    if sampling_ratio <= 0:
        raise ValueError("export needs a fixed RoIAlign sampling_ratio (> 0)")
    return _RoIAlign.apply(
        features, boxes, int(ph), int(pw), float(spatial_scale), int(sampling_ratio), bool(aligned)
    )


@contextmanager
def patched(opset: int = 17, onnx_nms: bool = True):
    """Swap the detection ops for their ONNX-mapped forms while exporting.

    `onnx_nms=False` keeps edgedet's static NMS as traced standard ops (TopK and a fixed
    greedy recurrence; every shape static) for importers that cannot follow
    NonMaxSuppression's data-dependent output (TVM Relax)."""
    _register_sort(opset)
    forms = {"roi_align_batched": roi_align_batched_onnx}
    if onnx_nms:
        forms["fixed_size_nms"] = fixed_size_nms_onnx
    # nn.MultiheadAttention's inference fast path is one fused aten op with no ONNX form
    fast = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with export_forms(**forms):
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)
