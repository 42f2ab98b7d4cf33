"""`edgedet reproduce tvm`: JSON of a tiny run (every variant measured, labelled, parity kept)
and one-line errors for bad options."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("tvm", reason="TVM is an optional extra (edgedet[tvm])")


@pytest.mark.slow  # five builds / sessions of QuadraNet25-xxs: minutes on a loaded 2-core machine
def test_reproduce_tvm_quick_json(tmp_path, cli):
    out = tmp_path / "tvm.json"
    code, text, err = cli("reproduce", "tvm", "--quick", "--models", "quadranet25-xxs", "--input-size", "32",
                          "--rounds", "1", "--inner", "1", "--json", str(out))
    assert code == 0, err
    doc = json.loads(out.read_text())
    rows = {r["variant"]: r for r in doc["rows"]}
    assert set(rows) == {"tvm-generic", "tvm-fused", "tvm-decomposed", "onnxruntime", "openvino"}
    for r in rows.values():
        assert r["measured"] and r["batch"] == 1 and r["precision"] == "fp32" and r["threads"] == 1
        assert r["latency_ms"] > 0 and r["parity_ok"] and r["parity"] <= 1e-4
    assert all(rows[v]["build_s"] > 0 for v in ("tvm-generic", "tvm-fused", "tvm-decomposed"))
    assert rows["tvm-generic"]["target"] == "host-generic" and rows["tvm-fused"]["target"] == "host"
    s = doc["summary"]["quadranet25-xxs"]
    assert s["fused_speedup_over_decomposed"] == pytest.approx(
        rows["tvm-decomposed"]["latency_ms"] / rows["tvm-fused"]["latency_ms"], rel=1e-2)
    assert doc["device"]["cpu"] and "untuned" in doc["tuning"]


@pytest.mark.slow  # the quick run plus a tuned row (a few tasks within a 5 s budget)
def test_reproduce_tvm_tuned_row(tmp_path, cli, monkeypatch):
    monkeypatch.setenv("EDGEDET_TVM_CACHE", str(tmp_path / "untouched"))
    out = tmp_path / "tvm.json"
    code, text, err = cli("reproduce", "tvm", "--quick", "--models", "resnet-bn", "--input-size", "32",
                          "--rounds", "1", "--inner", "1", "--tune-budgets", "5", "--tune-trials", "2",
                          "--json", str(out))
    assert code == 0, err
    doc = json.loads(out.read_text())
    rows = {r["variant"]: r for r in doc["rows"]}
    assert {"tvm-fused", "onnxruntime", "tvm-tuned-5"} <= set(rows)
    t = rows["tvm-tuned-5"]
    assert t["parity_ok"] and t["parity"] <= 1e-4 and t["latency_ms"] > 0 and t["tune_budget_s"] == 5
    assert t["tune_s"] > 0 and t["tasks_tuned"] >= 1 and 0 <= t["tuned_records_used"] <= t["tasks_tuned"]
    assert t["tuning"] == ("tuned" if t["tuned_records_used"] else "untuned")
    assert rows["tvm-fused"]["tune_s"] is None and "tvm-tuned-<S>" in doc["tuning"]
    s = doc["summary"]["resnet-bn"]
    assert s["tvm_tuned_5_over_onnxruntime"] == pytest.approx(t["latency_ms"] / rows["onnxruntime"]["latency_ms"],
                                                               rel=1e-2)
    assert not (tmp_path / "untouched").exists()  # tuned from scratch, not from the user's cache


@pytest.mark.parametrize("args,needle", [(["--models", "nosuchnet"], "nosuchnet"), (["--threads", "0"], "--threads"),
                                         (["--tune-budgets", "10,x"], "--tune-budgets"),
                                         (["--tune-budgets", "0"], "--tune-budgets")])
def test_reproduce_tvm_bad_options_are_one_line(cli, args, needle):
    code, _, err = cli("reproduce", "tvm", *args)
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert code != 0 and len(lines) == 1 and needle in lines[0]
