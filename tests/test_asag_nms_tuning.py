"""`edgedet reproduce asag-nms-tuning`: the grid of inference NMS settings on a tuning split."""

import json

import pytest
import torch

from edgedet.io.checkpoint import save_checkpoint
from edgedet.models import create

OPTIONS = {"preset": "cpu", "dim": 32, "ffn_dim": 64, "patch": 5, "anchor_nms_iou": 0.5,
           "anchor_nms_at_inference": False, "nms_iou": 0.5}


def _asag_checkpoint(path):
    torch.manual_seed(0)
    model = create("asag-quadranet25-xxs", num_classes=4, **OPTIONS)
    save_checkpoint(path, {"task": "detection", "model_name": "asag-quadranet25-xxs", "model_options": OPTIONS,
                           "num_classes": 4, "model": model.state_dict(),
                           "config": {"img_size": 128, "seed": 0}})


@pytest.fixture
def tuning(tmp_path, edgedet_process):
    """`edgedet reproduce asag-nms-tuning ARGS` with the data cache in tmp_path."""
    return lambda *args: edgedet_process("reproduce", "asag-nms-tuning", *args,
                                         env={"EDGEDET_CACHE": str(tmp_path / "cache")})


def test_grid_covers_both_anchor_modes_and_every_detection_iou(tmp_path, tuning) -> None:
    ckpt = tmp_path / "asag.pt"
    _asag_checkpoint(ckpt)
    out = tmp_path / "tuning.json"
    p = tuning("-c", ckpt, "--images", "4", "--json", out)
    assert p.returncode == 0, p.stderr
    result = json.loads(out.read_text())
    assert result["schema_version"] == 1 and result["seed"] == 101 and result["images"] == 4
    (c,) = result["checkpoints"]
    assert c["trained_with"] == {"anchor_nms_iou": 0.5, "anchor_nms_at_inference": False, "nms_iou": 0.5}
    pairs = {(r["anchor_nms_at_inference"], r["nms_iou"]) for r in c["rows"]}
    assert pairs == {(a, i) for a in (True, False) for i in (None, 0.4, 0.5, 0.6, 0.7)}
    assert all(-1.0 <= r["AP50"] <= 1.0 for r in c["rows"])
    assert c["best"]["AP50"] == max(r["AP50"] for r in c["rows"])
    # the tuning images are another seed's validation split, generated once into the cache
    assert any((tmp_path / "cache").glob("synthetic-det-*seed101/annotations/val.json"))


def test_the_training_seed_is_refused(tmp_path, tuning) -> None:
    ckpt = tmp_path / "asag.pt"
    _asag_checkpoint(ckpt)
    p = tuning("-c", ckpt, "--seed", "0", "--images", "4")
    assert p.returncode == 2 and "trained with" in p.stderr, p.stderr
    p = tuning("-c", tmp_path / "missing.pt")
    assert p.returncode == 2 and "does not exist" in p.stderr, p.stderr


def test_typed_result_writes_the_schema_1_document_key_for_key() -> None:
    from edgedet.bench.reproduce.asag_nms_tuning import CheckpointGrid, GridRow, TuningResult

    rows = [GridRow(True, None, {"AP": 0.1, "AP50": 0.3, "AP_small": 0.0}),
            GridRow(False, 0.5, {"AP": 0.2, "AP50": 0.4, "AP_small": 0.05}),
            GridRow(False, 0.7, {"AP": 0.2, "AP50": 0.4, "AP_small": 0.01})]  # a tie: the first wins
    trained = {"anchor_nms_iou": 0.5, "anchor_nms_at_inference": False, "nms_iou": 0.5}
    res = TuningResult(images=4, seed=101, checkpoints=[CheckpointGrid("a.pt", "asag-x", trained, rows)])
    expected = {"schema_version": 1, "suite": "asag-nms-tuning", "images": 4, "seed": 101, "checkpoints": [
        {"checkpoint": "a.pt", "model": "asag-x", "trained_with": trained,
         "rows": [{"anchor_nms_at_inference": True, "nms_iou": None, "AP": 0.1, "AP50": 0.3, "AP_small": 0.0},
                  {"anchor_nms_at_inference": False, "nms_iou": 0.5, "AP": 0.2, "AP50": 0.4, "AP_small": 0.05},
                  {"anchor_nms_at_inference": False, "nms_iou": 0.7, "AP": 0.2, "AP50": 0.4, "AP_small": 0.01}],
         "best": {"anchor_nms_at_inference": False, "nms_iou": 0.5, "AP50": 0.4}}]}
    assert json.dumps(res.to_json()) == json.dumps(expected)  # same keys, values and order
