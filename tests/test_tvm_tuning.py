"""MetaSchedule tuning of a TVM export: record cache keyed by target, bad options refused in one
line, and (slow) a tiny model tuned, its database shipped in the artifact and reused."""

from __future__ import annotations

import json

import pytest

from edgedet.errors import EdgedetError
from edgedet.exporters import tvm_target
from edgedet.exporters.pipeline import ExportRequest

tvm = pytest.importorskip("tvm", reason="TVM is an optional extra (edgedet[tvm])")


def test_cache_is_keyed_by_target_not_threads(tmp_path, monkeypatch):
    from edgedet.exporters import tvm_tuning

    monkeypatch.setenv("EDGEDET_TVM_CACHE", str(tmp_path))
    one, four = tvm_target.get_target("host", 1), tvm_target.get_target("host", 4)
    assert tvm_tuning.cache_dir(one) == tvm_tuning.cache_dir(four)
    assert tvm_tuning.cache_dir(one) != tvm_tuning.cache_dir(tvm_target.get_target("cortex-a76"))
    assert tvm_tuning.cache_dir(one).parent == tmp_path


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"format": "onnx", "tune_trials": 4}, "apply to --format tvm only"),
        ({"format": "tvm", "tune_trials": 0}, "at least 1"),
        ({"format": "tvm", "tune_trials": 4, "tune_budget_s": 0.0}, "must be positive"),
        ({"format": "tvm", "tune_trials": 4, "target": "cortex-a76"}, "this CPU only"),
    ],
)
def test_bad_tuning_options_are_refused(kwargs, message, tmp_path):
    req = ExportRequest(model="resnet-bn", out=tmp_path / "a", **kwargs)
    with pytest.raises(EdgedetError, match=message):
        req.validate()


@pytest.mark.slow
def test_tuned_export_ships_and_reuses_its_database(tmp_path, monkeypatch, cli):
    monkeypatch.setenv("EDGEDET_TVM_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "art"
    args = ["export", "resnet-bn", "-f", "tvm", "--input-size", "32", "-o", str(out)]
    code, text, err = cli(*args, "--tune-trials", "2", "--tune-budget-s", "1")
    assert code == 0, err
    m = json.loads((out / "manifest.json").read_text())
    rt = m["runtime"]
    assert rt["tuning"] == "tuned" and rt["schedules"]["tuned"] >= 1
    assert {"tuning_workload.json", "tuning_records.json"} <= set(m["files"])
    assert rt["tuning_run"]["tasks"][0]["trials_run"] == 2 and rt["tuning_run"]["skipped_for_budget"]
    assert m["parity"]["passed"]
    code, text, err = cli(*args)  # a rebuild into the same folder reuses the database
    assert code == 0, err
    rt2 = json.loads((out / "manifest.json").read_text())["runtime"]
    assert rt2["tuning"] == "tuned" and rt2["tuning_run"]["reused_records"] >= 1
