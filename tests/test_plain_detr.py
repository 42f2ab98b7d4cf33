"""Plain-DETR: shapes, hybrid-branch isolation, box reparameterisation, look-forward-twice,
post-processing, export tracing and the official-checkpoint key mapping."""

import re

import pytest
import torch

from edgedet.errors import EdgedetError
from edgedet.models import create
from edgedet.models.plain_detr import apply_deltas, build_plain_detr, postprocess
from edgedet.models.plain_detr_convert import convert_official, load_converted, map_key

SMALL = dict(num_classes=3, hidden_dim=32, nheads=4, enc_layers=1, dec_layers=2, dim_feedforward=64,
             num_queries=10, num_queries_one2many=20, k_one2many=2, rpe_hidden_dim=16,
             proposal_strides=(8, 16, 32), proposal_min_size=16.0)
TINY_BACKBONE = {"width": 16, "depths": (1, 1, 1, 1)}


def _model(**kw):
    torch.manual_seed(0)
    return build_plain_detr("convnet", backbone_options=TINY_BACKBONE, **{**SMALL, **kw})


def _batch():
    torch.manual_seed(1)
    x = torch.randn(2, 3, 64, 96)
    masks = torch.zeros(2, 64, 96, dtype=torch.bool)
    masks[1, :, 64:] = True
    targets = [{"labels": torch.tensor([0, 2]),
                "boxes": torch.tensor([[0.3, 0.3, 0.2, 0.3], [0.7, 0.6, 0.3, 0.2]])},
               {"labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.5, 0.4, 0.4]])}]
    return x, masks, targets


@pytest.mark.parametrize("opts", [{}, {"reparam": False, "norm_type": "post_norm"}, {"rpe_type": "abs_log8"},
                                  {"stride16_lateral": True}, {"stride16_lateral": True, "memory_stride": 8},
                                  {"distinct_queries_iou": 0.6}])
def test_train_and_eval_forward(opts):
    m = _model(**opts)
    x, masks, targets = _batch()
    m.train()
    out = m(x, masks)
    assert out["pred_logits"].shape == (2, 10, 3) and out["pred_boxes"].shape == (2, 10, 4)
    assert len(out["aux_outputs"]) == 1 and out["one2many"]["pred_logits"].shape == (2, 20, 3)
    losses = m.loss(out, targets)
    assert torch.isfinite(losses["loss"]) and "loss_ce_enc" in losses and "loss_giou_o2m" in losses
    losses["loss"].backward()
    assert m.backbone.stem[0].weight.grad.abs().sum() > 0
    assert m.decoder[0].cross_attn.rpb_x[0].weight.grad.abs().sum() > 0
    stride = opts.get("memory_stride", 16)
    assert m.decoder[0].cross_attn.feature_stride == stride
    if opts.get("stride16_lateral"):  # the backbone's map at the memory stride feeds the memory directly
        assert m.lateral.weight.grad.abs().sum() > 0
        with torch.no_grad():  # sizes that are not multiples of 32 still line up
            assert m.eval()(torch.randn(1, 3, 72, 104))["pred_boxes"].shape == (1, 10, 4)
        m.train()
    else:
        assert m.lateral is None
    m.eval()
    with torch.no_grad():
        ev = m(x, masks)
    assert set(ev) == {"pred_logits", "pred_boxes"} and ev["pred_boxes"].shape == (2, 10, 4)


def test_one_to_many_queries_do_not_change_one_to_one_outputs():
    m = _model()
    x, masks, _ = _batch()
    with torch.no_grad():
        tr = m.train()(x, masks)
        ev = m.eval()(x, masks)
    assert torch.allclose(tr["pred_logits"], ev["pred_logits"], atol=1e-5)
    assert torch.allclose(tr["pred_boxes"], ev["pred_boxes"], atol=1e-5)


def test_distinct_queries_are_the_nms_survivors():
    """The one-to-one queries start from the best proposals that survive a class-agnostic NMS
    (eager `nms` over the candidate pool as the reference); the one-to-many ones from the
    plain top-k; and in the model no two one-to-one reference boxes overlap beyond the IoU."""
    from edgedet.ops.boxes import box_cxcywh_to_xyxy, box_iou
    from edgedet.ops.nms import nms

    m = _model(distinct_queries_iou=0.5)
    g = torch.Generator().manual_seed(0)
    n = 80
    scores = torch.randn(2, n, generator=g)
    boxes = torch.cat([torch.rand(2, n, 2, generator=g), 0.1 + 0.4 * torch.rand(2, n, 2, generator=g)], -1)
    ok = torch.ones(2, n, dtype=torch.bool)
    ok[1, :10] = False
    top = m._distinct_top(scores, boxes, ok, 30)
    assert top.shape == (2, 30)
    for b in range(2):
        pool = torch.topk(scores[b], 40).indices
        alive = pool[ok[b, pool]]
        keep = alive[nms(box_cxcywh_to_xyxy(boxes[b, alive]), scores[b, alive], 0.5)][:10]
        assert len(keep) == 10 and torch.equal(top[b, :10], keep)
        assert torch.equal(top[b, 10:], pool[:20])

    x, masks, _ = _batch()
    seen = {}
    m.decoder[0].register_forward_pre_hook(lambda mod, args: seen.update(ref=args[2]))
    with torch.no_grad():
        m.eval()(x[:1])
    ref = box_cxcywh_to_xyxy(seen["ref"][0])  # fractions of the padded map: IoU is unchanged
    iou = box_iou(ref, ref) - torch.eye(len(ref))
    assert float(iou.max()) <= 0.5 + 1e-6
    with pytest.raises(EdgedetError, match="distinct_queries_iou"):
        _model(distinct_queries_iou=1.5)


def test_reparameterised_deltas():
    ref = torch.tensor([[[50.0, 40.0, 20.0, 10.0]]])
    delta = torch.tensor([[[0.5, -1.0, 0.0, 0.6931472]]])
    out = apply_deltas(ref, delta, None)
    assert torch.allclose(out, torch.tensor([[[60.0, 30.0, 20.0, 20.0]]]), atol=1e-4)
    clipped = apply_deltas(ref, torch.tensor([[[5.0, 0.0, 0.0, 0.0]]]), torch.tensor([[[64.0, 128.0]]]))
    assert clipped[0, 0, 0] + clipped[0, 0, 2] / 2 <= 128.0 + 1e-4


@pytest.mark.parametrize("lft", [True, False])
def test_look_forward_twice_gradient_path(lft):
    m = _model(look_forward_twice=lft, num_queries_one2many=0)
    x, masks, _ = _batch()
    m.train()(x, masks)["pred_boxes"].sum().backward()
    g = m.bbox_embed[0].layers[-1].weight.grad  # the previous layer's box head
    assert (g is not None and g.abs().sum() > 0) == lft


def test_postprocess_fixed_size_and_scaling():
    logits = torch.full((1, 4, 2), -5.0)
    logits[0, 2, 1] = 5.0
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.2]] * 2 + [[0.25, 0.5, 0.5, 1.0]] + [[0.5, 0.5, 0.1, 0.1]]])
    r = postprocess({"pred_logits": logits, "pred_boxes": boxes}, torch.tensor([[100, 200]]), top_k=5)
    assert r["scores"].shape == (1, 5) and r["labels"][0, 0] == 1
    assert torch.allclose(r["boxes"][0, 0], torch.tensor([0.0, 0.0, 100.0, 100.0]))


def test_eval_mode_traces():
    m = _model().eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        traced = torch.jit.trace(m, (x,), strict=False, check_trace=False)
        x2 = torch.randn(1, 3, 64, 64)
        assert torch.allclose(traced(x2)["pred_boxes"], m(x2)["pred_boxes"], atol=1e-5)


def test_registry_names_and_errors():
    m = create("plain-detr-quadranet25-xxs", preset="cpu", num_classes=4)
    assert m.cfg.num_queries == 50 and m.backbone.feature_channels[-1] == 128
    with pytest.raises(EdgedetError, match="no option"):
        create("plain-detr-quadranet25-xxs", bogus=1)
    with pytest.raises(EdgedetError, match="proposals"):
        _model(num_queries=500).eval()(torch.randn(1, 3, 64, 64))
    with pytest.raises(EdgedetError, match="memory_stride"):
        create("plain-detr-quadranet25-xxs", preset="cpu", memory_stride=12)


# ---- official checkpoint mapping -------------------------------------------------------------
def _to_official(sd):
    """edgedet names → the official implementation's names (written from its module layout)."""
    out = {}
    for k, v in sd.items():
        if k.startswith("backbone."):
            out["backbone.0.net.body." + k[len("backbone."):]] = v
            continue
        o = k
        o = re.sub(r"^upsample\.", "backbone.0.upsample.", o)
        o = re.sub(r"^input_proj\.", "input_proj.0.", o)
        o = re.sub(r"^level_embed$", "transformer.level_embed", o)
        ln = "ln." if v.dim() == 1 else ""  # the official LayerNorm2D wraps an nn.LayerNorm as .ln
        o = re.sub(r"^enc_output_proj\.(\d+)\.(\d+)\.(weight|bias)$", rf"enc_output_proj.\1.\2.{ln}\3", o)
        o = re.sub(r"^(enc_output|enc_output_norm|pos_trans|pos_trans_norm|enc_output_proj)\.",
                   r"transformer.\1.", o)
        o = re.sub(r"\.rpb_x\.", ".cpb_mlp1.", o)
        o = re.sub(r"\.rpb_y\.", ".cpb_mlp2.", o)
        o = re.sub(r"^decoder\.(\d+)\.", r"transformer.decoder.layers.\1.", o)
        o = re.sub(r"^decoder_norm\.", "transformer.decoder.final_layer_norm.", o)
        out[o] = v.clone()
        if k.startswith(("class_embed.", "bbox_embed.")):
            out["transformer.decoder." + k] = v.clone()
    return out


@pytest.mark.parametrize("norm", ["pre_norm", "post_norm"])
def test_official_checkpoint_roundtrip(norm):
    opts = dict(SMALL, enc_layers=0, norm_type=norm, proposal_strides=(8, 16, 32, 64))
    src = _model(**opts)
    official = {"model": _to_official(src.state_dict()), "epoch": 11}
    assert "transformer.decoder.layers.1.cross_attn.cpb_mlp2.2.weight" in official["model"]
    assert "transformer.enc_output_proj.3.1.ln.weight" in official["model"]
    conv = convert_official(official, num_queries=10)
    assert conv.config["dec_layers"] == 2 and conv.config["norm_type"] == norm
    assert conv.config["num_queries_one2many"] == 20 and conv.config["rpe_hidden_dim"] == 16
    assert all(k.startswith("backbone.0.net.") for k in conv.skipped)
    torch.manual_seed(5)
    dst = build_plain_detr("convnet", backbone_options=TINY_BACKBONE,
                           **{**opts, **{k: v for k, v in conv.config.items() if k != "proposal_strides"}})
    dst.backbone.load_state_dict(src.backbone.state_dict())  # "same backbone features"
    assert load_converted(dst, conv) == []
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a, b = src.eval()(x), dst.eval()(x)
    assert torch.allclose(a["pred_logits"], b["pred_logits"], atol=1e-4)
    assert torch.allclose(a["pred_boxes"], b["pred_boxes"], atol=1e-4)


def test_official_mapping_rejects_unsupported():
    assert map_key("transformer.decoder.class_embed.0.weight") is None  # alias of class_embed.0
    assert map_key("transformer.decoder.layers.3.cross_attn.cpb_mlp1.0.weight") == \
        "decoder.3.cross_attn.rpb_x.0.weight"
    assert map_key("transformer.decoder.layers.0.self_attn.in_proj_weight") == \
        "decoder.0.self_attn.in_proj_weight"
    sd = _to_official(_model(enc_layers=0).state_dict())
    with pytest.raises(EdgedetError, match="single-stage"):
        convert_official({**sd, "transformer.reference_points.weight": torch.zeros(2, 32)})
    with pytest.raises(EdgedetError, match="proposal strides"):
        convert_official(sd, proposal_strides=(16, 32))
    with pytest.raises(EdgedetError, match="BoxRPB"):
        convert_official({k: v for k, v in sd.items() if "cpb_mlp" not in k})


# ---- CLI: train → eval → detect, convert-checkpoint -------------------------------------------
def test_cli_train_eval_detect(tmp_path, monkeypatch, cli):
    import json

    from PIL import Image

    monkeypatch.setenv("EDGEDET_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "run"
    rc = cli("train", "plain-detr-quadranet25-xxs", "--data", "synthetic-det", "--epochs", "1",
               "--batch-size", "2", "--img-size", "128", "--train-size", "4", "--val-size", "2",
               "--threads", "1", "--lr", "1e-4", "--out", str(run)).code
    assert rc == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["schema_version"] == 1 and "AP50" in metrics["final"]
    assert (run / "training_curve.png").exists()
    assert cli("eval", "plain-detr-quadranet25-xxs", "--checkpoint", str(run / "checkpoint.pt"),
                 "--json", str(tmp_path / "ev.json")).code == 0
    ev = json.loads((tmp_path / "ev.json").read_text())
    assert ev["images"] == 2 and 0.0 <= ev["AP50"] <= 1.0
    # the export rebuilds the model with the options training recorded (cpu preset, 4 classes)
    assert cli("export", "plain-detr-quadranet25-xxs", "-f", "onnx", "-c", str(run / "checkpoint.pt"),
                 "-o", str(tmp_path / "onnx"), "--input-size", "128", "--threads", "1").code == 0
    manifest = json.loads((tmp_path / "onnx" / "manifest.json").read_text())
    assert manifest["source"]["weights"]["source"] != "seeded-init"
    img = next((tmp_path / "cache").rglob("val/000000.png"))
    out = tmp_path / "det.png"
    assert cli("detect", "plain-detr-quadranet25-xxs", "--checkpoint", str(run / "checkpoint.pt"),
                 "--image", str(img), "--out", str(out), "--threshold", "0.0", "--json",
                 str(tmp_path / "det.json")).code == 0
    drawn, orig = Image.open(out).convert("RGB"), Image.open(img).convert("RGB")
    assert drawn.size == orig.size and drawn.tobytes() != orig.tobytes()  # boxes were drawn
    assert len(json.loads((tmp_path / "det.json").read_text())["detections"]) > 0
    assert cli("eval", "plain-detr-convnet", "--checkpoint", str(run / "checkpoint.pt")).code == 2
    r = cli("detect", "plain-detr-quadranet25-xxs", "--image", str(tmp_path / "nope.png"), "--out", str(out))
    assert r.code == 2 and "does not exist" in r.err


def test_cli_convert_checkpoint(tmp_path, cli):
    import argparse

    from edgedet.io.checkpoint import load_checkpoint

    opts = dict(SMALL, enc_layers=0, proposal_strides=(8, 16, 32, 64))
    src = build_plain_detr("quadranet25-xxs", **opts)
    args = argparse.Namespace(decoder_type="global_rpe_decomp", two_stage=True, mixed_selection=True,
                              with_box_refine=True, reparam=True, decoder_rpe_type="linear", nheads=4,
                              num_queries_one2one=10, proposal_tgt_strides=[8, 16, 32, 64],
                              proposal_feature_levels=4, look_forward_twice=True, k_one2many=2)
    path = tmp_path / "official.pth"
    torch.save({"model": _to_official(src.state_dict()), "args": args, "epoch": 12}, path)
    out = tmp_path / "edgedet.pt"
    assert cli("convert-checkpoint", "--from", "plain-detr", str(path), str(out),
                 "--backbone", "quadranet25-xxs").code == 0
    state = load_checkpoint(out)
    assert state["model_name"] == "plain-detr-quadranet25-xxs"
    assert state["converted_from"]["shape_mismatch"] == []
    dst = build_plain_detr("quadranet25-xxs", **{k: v for k, v in state["model_options"].items()
                                                  if k not in ("preset",)})
    dst.load_state_dict(state["model"])
    for k, v in src.state_dict().items():
        if not k.startswith("backbone."):
            assert torch.equal(dst.state_dict()[k], v), k
    assert cli("convert-checkpoint", "--from", "yolo", str(path), str(out)).code == 2
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    assert cli("convert-checkpoint", "--from", "plain-detr", str(tmp_path / "bad.pth"), str(out)).code == 2


@pytest.mark.slow
def test_acceptance_synthetic_ap50(tmp_path, monkeypatch):
    """Plain-DETR on QuadraNet25-xxs reaches AP50 ≥ 0.5 on the synthetic set within 30 minutes
    on two CPU cores: the recipe of `edgedet reproduce det-train` (28-minute budget that the
    cosine schedule is fitted into, final evaluation included)."""
    from edgedet.bench.reproduce.det_train import run_one

    monkeypatch.setenv("EDGEDET_CACHE", str(tmp_path / "cache"))
    row = run_one("plain-detr", None, tmp_path / "run")
    print({k: row.final[k] for k in ("AP", "AP50", "AP_small")}, f"{row.wall_minutes:.1f} min")
    assert row.wall_minutes <= 30.0
    assert row.final["AP50"] >= 0.5
