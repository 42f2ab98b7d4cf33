"""TVM (Relax) import of static-shape graphs: shape arithmetic folded to constants, ASAG's
static anchor generator built and run against PyTorch (both modes), and the whole ASAG
detector × TVM host / Cortex-A76 (slow)."""

from __future__ import annotations

import collections

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgedet.exporters import tvm as tx
from edgedet.exporters.onnx import export_onnx, run_onnxruntime
from edgedet.exporters.onnx_fold import fold_static
from edgedet.models.asag_anchor import AnchorConfig, AnchorGenerator

torch.set_num_threads(1)
pytest.importorskip("tvm")


class ShapeChain(nn.Module):
    """Pad to at least 15×15 with amounts computed from the tensor's own shape, then
    flatten through a shape-derived Reshape: the TorchScript exporter writes Shape→Gather→
    Sub→Concat→Pad/Reshape chains for both, as in ASAG's `_compress_one`."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        y = F.pad(y, (0, max(15 - y.shape[-1], 0), 0, max(15 - y.shape[-2], 0)))
        return y.reshape(y.shape[0], y.shape[1], -1).transpose(1, 2) * 2


def _ops(model) -> collections.Counter:
    return collections.Counter(n.op_type for n in model.graph.node)


def test_fold_static_turns_shape_chains_into_constants(tmp_path):
    torch.manual_seed(0)
    net = ShapeChain().eval()
    x = torch.randn(1, 3, 9, 12)
    ex = export_onnx(net, (x,), ["x"], ["y"], decompose=True)
    before = _ops(ex.model)
    assert before["Shape"] >= 2 and before["Pad"] == 1  # the exporter wrote shape arithmetic
    folded = onnx.ModelProto()
    folded.CopyFrom(ex.model)
    counts = fold_static(folded)
    after = _ops(folded)
    assert counts["shape_nodes"] >= 2 and after["Shape"] == 0 and after["Gather"] == 0
    assert after["Conv"] == 1 and after["Pad"] == 1  # data ops stay; only their shape inputs are constants
    pads = {i.name for i in folded.graph.initializer}
    assert all(n.input[1] in pads for n in folded.graph.node if n.op_type in ("Pad", "Reshape"))
    onnx.checker.check_model(folded, full_check=True)
    with torch.no_grad():
        ref = net(x).numpy()
    assert ref.shape == (1, 15 * 15, 4)
    for m in (ex.model, folded):
        np.testing.assert_allclose(run_onnxruntime(m.SerializeToString(), {"x": x.numpy()})[0], ref, atol=1e-6)
    lib = tmp_path / "chain.so"
    tx.build_library(ex.model, tx.TARGETS["host"], lib)
    np.testing.assert_allclose(tx.run_library(lib, [x.numpy()])[0], ref, atol=1e-5)


def test_fold_static_keeps_symbolic_batch_dims():
    """With a dynamic batch, Shape of the input stays a node; a Gather of its static dims folds."""
    net = ShapeChain().eval()
    ex = export_onnx(net, (torch.randn(2, 3, 9, 12),), ["x"], ["y"], dynamic_batch=True, decompose=True)
    folded = onnx.ModelProto()
    folded.CopyFrom(ex.model)
    fold_static(folded)
    x = torch.randn(3, 3, 9, 12)
    with torch.no_grad():
        ref = net(x).numpy()
    got = run_onnxruntime(folded.SerializeToString(), {"x": x.numpy()})[0]
    np.testing.assert_allclose(got, ref, atol=1e-6)
    assert _ops(folded)["Shape"] < _ops(ex.model)["Shape"]


class StaticAnchors(nn.Module):
    """ASAG's anchor generator in static mode: FPN maps + image sizes → fixed-size anchors."""

    def __init__(self, ag: AnchorGenerator) -> None:
        super().__init__()
        self.ag = ag

    def forward(self, p3, p4, p5, image_wh):
        out = self.ag([p3, p4, p5], image_wh, "static")
        return out.anchors, out.scores, out.valid


def _probing_generator(seed: int = 2, dim: int = 16) -> AnchorGenerator:
    """A small random generator (fewer anchors and patch slots than the paper's, so that the
    unrolled static NMS stays small and the build fast) biased towards small, uncertain
    anchors so that P4 and P3 get probed."""
    torch.manual_seed(seed)
    cfg = AnchorConfig(compress_dim=4, coarse_anchors=10, fine_anchors=5, max_patches=(4, 4))
    ag = AnchorGenerator(dim=dim, cfg=cfg).eval()
    with torch.no_grad():
        for head in (ag.coarse_head, ag.fine_head):
            last = head.layers[-1]
            last.weight.mul_(3.0)
            b = last.bias.view(-1, 5)
            b[:, 2:4] = -2.0
            b[:, 4] = -0.4
    return ag


def test_asag_static_anchor_generator_builds_and_runs_on_tvm(tmp_path):
    """The graph that stopped TVM 0.27's Relax importer (shape-derived Reshape/Pad in the
    static anchor generator): built for the host, equal to PyTorch's static and dynamic
    modes on images with padding and probed patches on both finer levels."""
    ag = _probing_generator()
    wh = torch.tensor([[320.0, 256.0], [250.0, 200.0]])
    g = torch.Generator().manual_seed(0)
    feats = [torch.randn(2, 16, 256 // s, 320 // s, generator=g) for s in (8, 16, 32)]
    with torch.no_grad():
        sta = ag(feats, wh, "static")
        dyn = ag(feats, wh, "dynamic")
    for level in sta.stages[1:]:  # P4 and P3 probed in both images, within the 4 static slots
        assert level.patch_valid.sum(1).min() > 0 and level.patch_valid.sum(1).max() < 4
    ex = export_onnx(
        StaticAnchors(ag), (*feats, wh), ["p3", "p4", "p5", "image_wh"], ["anchors", "scores", "valid"],
        decompose=True, onnx_nms=False,
    )
    lib = tmp_path / "anchors.so"
    tx.build_library(ex.model, tx.TARGETS["host"], lib)
    anchors, scores, valid = tx.run_library(lib, [f.numpy() for f in feats] + [wh.numpy()])
    np.testing.assert_array_equal(valid, sta.valid.numpy())
    np.testing.assert_allclose(anchors, sta.anchors.numpy(), atol=1e-4, rtol=1e-5)
    np.testing.assert_allclose(scores, sta.scores.numpy(), atol=1e-5)
    for b in range(2):  # the dynamic (eager, paper) anchors are the first valid slots
        k = int(dyn.valid[b].sum())
        assert valid[b].sum() == k and valid[b, :k].all()
        np.testing.assert_allclose(anchors[b, :k], dyn.anchors[b, :k].numpy(), atol=1e-4, rtol=1e-5)
        np.testing.assert_allclose(scores[b, :k], dyn.scores[b, :k].numpy(), atol=1e-5)


SMALL_ASAG = {"mode": "static", "dim": 32, "ffn_dim": 64, "num_aux_decoders": 0, "num_classes": 5}


@pytest.mark.slow
def test_asag_tvm_host_artifact_and_loopback_rpc(tmp_path):
    from edgedet.exporters.artifact import load_manifest
    from edgedet.exporters.pipeline import ExportRequest, build_model, export_artifact
    from edgedet.exporters.prepare import prepare

    req = ExportRequest(
        model="asag-quadranet25-xxs", format="tvm", out=tmp_path / "asag", input_size=128,
        model_overrides=SMALL_ASAG,
    )
    res = export_artifact(req)
    assert res.parity.passed and res.parity.max_abs_err <= 1e-4
    m = load_manifest(tmp_path / "asag")
    assert m.format == "tvm" and m.target == "host" and [o["shape"][1] for o in m.outputs] == [100, 100, 100]
    form = prepare(build_model(req)[0], 128)
    x = form.example(1, seed=7)[0]
    with torch.no_grad():
        labels, boxes, scores = (o.numpy() for o in form.reference(x))
    lib = tmp_path / "asag" / "model.so"
    with tx.loopback_rpc_server() as session:
        remote = tx.run_remote(session, lib, [x.numpy()])
    for a, b in zip(remote, tx.run_library(lib, [x.numpy()]), strict=True):
        np.testing.assert_array_equal(a, b)  # the same library over RPC and in process
    real = scores > 0  # padding queries tie at score 0: their order (and labels) is runtime-defined
    assert real.sum() >= 25
    np.testing.assert_array_equal(remote[0][real], labels[real])
    np.testing.assert_allclose(remote[1], boxes, atol=1e-4)
    np.testing.assert_allclose(remote[2], scores, atol=1e-4)


@pytest.mark.slow
def test_asag_tvm_cortex_a76_library(tmp_path):
    from edgedet.exporters.artifact import load_manifest
    from edgedet.exporters.pipeline import ExportRequest, export_artifact

    res = export_artifact(
        ExportRequest(
            model="asag-quadranet25-xxs", format="tvm", target="cortex-a76", out=tmp_path / "a76",
            input_size=128, model_overrides=SMALL_ASAG,
        )
    )
    assert res.parity.passed
    assert tx.elf_info(tmp_path / "a76" / "model.so") == {
        "elf": True, "class": 64, "shared_object": True, "machine": "aarch64"
    }
    assert sorted(load_manifest(tmp_path / "a76").files) == ["model.so"]
