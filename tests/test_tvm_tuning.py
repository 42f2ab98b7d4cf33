"""MetaSchedule tuning of a TVM export: record cache keyed by target, bad options refused in one
line, and (slow) a tiny model tuned, its database shipped in the artifact and reused."""

from __future__ import annotations

import json
import shutil

import pytest

from edgedet.errors import EdgedetError
from edgedet.exporters import onnx as onnx_export
from edgedet.exporters import tvm as tx
from edgedet.exporters import tvm_measure, tvm_target, tvm_tuning
from edgedet.exporters.pipeline import ExportRequest
from edgedet.exporters.prepare import prepare
from edgedet.exporters.tvm_measure import Comparison
from edgedet.exporters.tvm_sandbox import CandidateTimeout, Sandbox
from edgedet.models import create

tvm = pytest.importorskip("tvm", reason="TVM is an optional extra (edgedet[tvm])")


def test_cache_is_keyed_by_target_not_threads(tmp_path, monkeypatch):
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
        ({"format": "tvm", "tune_trials": 4, "target": "cortex-a76"}, "--rpc HOST:PORT/KEY"),
        ({"format": "tvm", "tune_trials": 4, "target": "host-generic"}, "host or cortex-a76"),
        ({"format": "tvm", "tune_trials": 4, "rpc": "127.0.0.1:9190"}, "HOST:PORT/KEY"),
        ({"format": "tvm", "rpc": "nohost"}, r"HOST:PORT\[/KEY\]"),
        ({"format": "tvm", "rpc": "127.0.0.1:99999/k"}, "expected HOST:PORT"),
    ],
)
def test_bad_tuning_options_are_refused(kwargs, message, tmp_path):
    req = ExportRequest(model="resnet-bn", out=tmp_path / "a", **kwargs)
    with pytest.raises(EdgedetError, match=message):
        req.validate()


def test_bad_rpc_for_tuning_is_one_line_and_writes_nothing(tmp_path, cli):
    out = tmp_path / "art"
    code, _, err = cli("export", "resnet-bn", "-f", "tvm", "--input-size", "32", "-o", str(out),
                       "--tune-trials", "2", "--rpc", "127.0.0.1:9190")
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert code != 0 and len(lines) == 1 and "HOST:PORT/KEY" in lines[0] and not out.exists()


def test_the_faster_of_default_and_tuned_wins():
    assert Comparison("tiled_matmul", 2.0, 1.0).winner == "tuned"
    assert Comparison("tiled_matmul", 1.0, 2.0).winner == "default"
    assert Comparison("tiled_matmul", 1.0, 1.0).winner == "default"  # a tie keeps the rule-based schedule
    assert Comparison("tiled_matmul", 1.0, None).winner == "default"  # the record failed to build or run
    assert Comparison("none (no rule matches)", None, 1.0).winner == "tuned"


def _first_task(target_name: str):
    form = prepare(create("resnet-bn").eval(), 32)
    ex = onnx_export.export_onnx(form.module, form.example(1, 0), form.input_names, form.output_names)
    tgt = tvm_target.get_target(target_name)
    return tgt, tvm_tuning.extract(tx.import_onnx(ex.model), tgt)[0]


def test_cross_builder_makes_aarch64_candidates(tmp_path):
    """A board's candidates are linked by the cross compiler: an aarch64 ELF, built in the sandbox."""
    from tvm.s_tir.meta_schedule.builder import BuilderInput

    if shutil.which(tvm_target.CROSS_GCC) is None:
        pytest.skip(f"{tvm_target.CROSS_GCC} is not installed (make sysdeps)")
    a76, task = _first_task("cortex-a76")
    box = Sandbox()
    try:
        built = tvm_measure.builder(a76, box).build([BuilderInput(task.dispatched[0], tvm.target.Target(a76.target))])
    finally:
        box.close()
    assert built[0].error_msg is None
    assert tx.elf_info(built[0].artifact_path) == {"elf": True, "class": 64, "shared_object": True,
                                                   "machine": "aarch64"}


def test_sandbox_kills_a_candidate_past_its_limit():
    """A build past its limit raises CandidateTimeout and kills the child; the next call gets a
    fresh child and works; a candidate that fails reports its error and leaves the child alive."""
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    host, task = _first_task("host")
    mod, target = tvm.ir.save_json(task.dispatched[0]), tvm.target.Target(host.target).export()
    box = Sandbox()
    try:
        box.call("ready", timeout_s=180)
        first = box._proc.pid
        with pytest.raises(CandidateTimeout):
            box.call("build", mod, target, None, timeout_s=0.001)
        assert box._proc is None  # killed
        path = box.call("build", mod, target, None, timeout_s=120)
        assert box._proc.pid != first
        args = [a.as_json() for a in ArgInfo.from_prim_func(task.dispatched[0]["main"])]
        secs = box.call("run", path, args, tvm_measure.EVALUATOR, timeout_s=60)
        assert len(secs) == 1 and 0 < secs[0] < 1
        with pytest.raises(RuntimeError):
            box.call("run", path + ".missing", args, tvm_measure.EVALUATOR, timeout_s=60)
        assert box._proc is not None and box._proc.poll() is None
    finally:
        box.close()


def _check_tuning_run(rt: dict, folder) -> None:
    """Every tuned task timed against its default schedule; exactly the winners' records shipped."""
    run = rt["tuning_run"]
    for t in run["tasks"]:
        assert t["default_ms"] > 0 and t["default_rule"]
        faster = t["tuned_ms"] is not None and t["tuned_ms"] < t["default_ms"]
        assert t["winner"] == ("tuned" if faster else "default"), t
    won = sum(t["winner"] == "tuned" for t in run["tasks"])
    assert run["winners"] == {"tuned": won, "default": len(run["tasks"]) - won}
    db = tvm_tuning.load_database(folder)
    assert len(db.get_all_tuning_records()) == won
    assert rt["tuning"] == ("tuned" if won else "untuned") and (rt["schedules"]["tuned"] >= 1) == (won > 0)


@pytest.mark.slow
def test_tuned_export_ships_and_reuses_its_database(tmp_path, monkeypatch, cli):
    monkeypatch.setenv("EDGEDET_TVM_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "art"
    args = ["export", "resnet-bn", "-f", "tvm", "--input-size", "32", "-o", str(out)]
    code, text, err = cli(*args, "--tune-trials", "2", "--tune-budget-s", "1")
    assert code == 0, err
    m = json.loads((out / "manifest.json").read_text())
    rt = m["runtime"]
    assert {"tuning_workload.json", "tuning_records.json"} <= set(m["files"])
    assert rt["tuning_run"]["tasks"][0]["trials_run"] == 2 and rt["tuning_run"]["skipped_for_budget"]
    _check_tuning_run(rt, out)
    assert m["parity"]["passed"]
    code, text, err = cli(*args)  # a rebuild into the same folder reuses the database (only the winners)
    assert code == 0, err
    rt2 = json.loads((out / "manifest.json").read_text())["runtime"]
    assert rt2["tuning"] == rt["tuning"] and rt2["schedules"]["tuned"] == rt["schedules"]["tuned"]


@pytest.mark.slow
def test_tuning_over_a_loopback_tracker_then_bench_over_rpc(tmp_path, monkeypatch, cli):
    """--rpc HOST:PORT/KEY: candidates timed by a real tracker + rpc_server on 127.0.0.1; the
    artifact records the RPC runner, passes parity and benches over the same tracker."""
    from test_bench import QUICK
    from test_bench_tvm import loopback_tracker

    monkeypatch.setenv("EDGEDET_TVM_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "art"
    with loopback_tracker("edgedet-tune") as tracker:
        code, _, err = cli("export", "resnet-bn", "-f", "tvm", "--input-size", "32", "-o", str(out),
                           "--tune-trials", "2", "--tune-budget-s", "1", "--rpc", tracker)
        assert code == 0, err
        m = json.loads((out / "manifest.json").read_text())
        rt = m["runtime"]
        assert rt["tuning_run"]["runner"] == f"rpc tracker {tracker.replace('/', ' key ')}"
        assert rt["tuning_run"]["tasks"][0]["trials_run"] == 2
        assert all(t["tuned_ms"] > 0 and t["best_ms"] < 1e3 for t in rt["tuning_run"]["tasks"])  # ran on the board
        _check_tuning_run(rt, out)
        outs = [o for c in m["parity"]["cases"] for o in c["outputs"]]
        assert m["parity"]["passed"] and all(o["max_abs_err"] <= 1e-4 * max(1.0, o["max_abs_ref"]) for o in outs)
        res = tmp_path / "r.json"
        code, _, err = cli("bench", str(out), "--runtime", "tvm", "--device", f"rpc://{tracker}", *QUICK,
                           "--json", str(res))
        assert code == 0, err
        r = json.loads(res.read_text())
        assert r["device"]["remote"] == f"rpc://{tracker}" and r["results"][0]["iterations"] >= 5
