"""Model files for the bench suites: a registered model exported to ONNX (TorchScript
exporter, standard ops, optional dynamic batch) and converted to OpenVINO IR in FP32. The
suites build their own files so they do not depend on an export having been run."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

from edgedet.models import create
from edgedet.models.complexity import count_flops, count_params


@dataclass(frozen=True)
class ModelFiles:
    name: str
    onnx: str
    xml: str
    params: int
    gflops: float  # at batch 1 and the export input size (conv/matmul, 1 MAC = 2 FLOPs)
    overrides: dict


def build(
    name: str,
    folder: str,
    input_size: int = 224,
    dynamic_batch: bool = True,
    tag: str | None = None,
    **overrides,
) -> ModelFiles:
    """Export `name` (with `overrides`) into `folder` as <tag>.onnx and <tag>.xml/.bin (FP32 weights)."""
    import openvino as ov
    import torch

    tag = tag or name
    os.makedirs(folder, exist_ok=True)
    model = create(name, **overrides).eval()
    params, gflops = count_params(model), count_flops(model, input_size) / 1e9
    onnx_path, xml_path = os.path.join(folder, f"{tag}.onnx"), os.path.join(folder, f"{tag}.xml")
    x = torch.randn(1, 3, input_size, input_size)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shape checks become constants: intended
        torch.onnx.export(
            model,
            (x,),
            onnx_path,
            dynamo=False,
            input_names=["input"],
            output_names=["logits"],
            opset_version=17,
            dynamic_axes={"input": {0: "batch"}} if dynamic_batch else None,
        )
    ov.save_model(ov.convert_model(onnx_path), xml_path, compress_to_fp16=False)
    return ModelFiles(
        name=name, onnx=onnx_path, xml=xml_path, params=params, gflops=gflops, overrides=overrides
    )
