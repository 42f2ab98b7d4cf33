"""`edgedet reproduce det-train`: the typed result writes the schema-3 document unchanged."""

import json

from edgedet.bench.reproduce.det_train import DetectorRun, DetTrainResult


def _run(nms_iou, without=None, ap50=0.55) -> DetectorRun:
    return DetectorRun(detector="asag", model="asag-quadranet25-xxs", recipe={"lr": 1e-4}, budget_minutes=28.0,
                       processes=2, threads=1, wall_minutes=27.5, steps=900, images_per_step=16,
                       final={"AP": 0.3, "AP50": ap50, "AP75": 0.2, "AP_small": 0.1, "AP_medium": 0.4,
                              "AP_large": None},
                       curve=[{"epoch": 0, "step": 10, "minutes": 1.5, "AP50": 0.1}], checkpoint="run/c.pt",
                       nms_iou=nms_iou, final_without_nms=without)


def _expected_row(run: DetectorRun, passed: bool) -> dict:
    row = {"detector": "asag", "model": "asag-quadranet25-xxs", "recipe": {"lr": 1e-4}, "budget_minutes": 28.0,
           "processes": 2, "threads": 1, "wall_minutes": 27.5, "steps": 900, "images_per_step": 16,
           "final": run.final, "target_ap50": 0.5, "passed": passed,
           "curve": [{"epoch": 0, "step": 10, "minutes": 1.5, "AP50": 0.1}], "checkpoint": "run/c.pt",
           "nms_iou": run.nms_iou}
    if run.nms_iou is not None:
        row["final_without_nms"] = run.final_without_nms
    return row


def test_typed_result_writes_the_schema_3_document_key_for_key() -> None:
    with_nms = _run(0.5, {"AP": 0.2, "AP50": 0.5, "AP75": 0.1, "AP_small": 0.0, "AP_medium": 0.3, "AP_large": 0.4})
    plain = _run(None, ap50=0.45)
    res = DetTrainResult(load_average_1m=1.25, detectors=[with_nms, plain])
    expected = {"schema_version": 3, "suite": "det-train", "load_average_1m": 1.25, "data": "synthetic-det",
                "detectors": [_expected_row(with_nms, True), _expected_row(plain, False)]}
    assert json.dumps(res.to_json()) == json.dumps(expected)  # same keys, values and order
    assert "final_without_nms" not in res.to_json()["detectors"][1]
    assert not _run(None, ap50=None).passed
