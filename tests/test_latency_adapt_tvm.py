"""Profiles over TVM RPC: a real loopback `tvm.exec.rpc_server` (127.0.0.1 only). Few-shot
adaptation compiles each network with the TVM exporter; a measured profile compiles each
single kernel; the server's time_evaluator times both."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("tvm", reason="TVM is an optional extra (edgedet[tvm])")
from test_bench_tvm import rpc_server  # noqa: E402,F401  (fixture: a loopback RPC server)


@pytest.mark.slow
def test_adapt_over_loopback_rpc(rpc_server, tmp_path):  # noqa: F811
    from edgedet.cli.main import main

    out = tmp_path / "board.json"
    addr = rpc_server.removeprefix("rpc://")
    assert main(["profile", "--adapt", "cortex-a76", "--measure", "3", "--runtime", "tvm", "--target", "host",
                 "--rpc", addr, "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["runtime"]["name"] == "tvm" and doc["runtime"]["device"] == rpc_server
    assert doc["adapted_from"]["id"] == "cortex-a76" and doc["calibration"]["n"] == 3
    assert all(r["measured_ms"] > 0 for r in doc["calibration"]["set"])


def test_tvm_profile_errors_are_one_line(capsys):
    from edgedet.cli.main import main

    for args, msg in (
        (["profile", "--runtime", "tvm", "--target", "cortex-a76", "--out", "x.json"], "another CPU"),
        (["profile", "--adapt", "cortex-a76", "--runtime", "onnxruntime", "--rpc", "h:1", "--out", "x.json"],
         "--rpc needs --runtime tvm"),
        (["profile", "--adapt", "cortex-a76", "--runtime", "tvm", "--rpc", "nohost", "--out", "x.json"],
         "rpc://HOST:PORT"),
    ):
        assert main(args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and msg in err[0], err


def test_measured_profile_over_loopback_rpc(rpc_server):  # noqa: F811
    """Kernels compiled here, uploaded and timed on the server: every sample positive, a
    convolution's time growing with its work, and the document saying where it was measured."""
    from edgedet.bench.board_timer import TvmRunner
    from edgedet.nas.sampled_nets import random_space_net
    from edgedet.profiles import from_document
    from edgedet.profiles.kernel_models import build, cfg
    from edgedet.profiles.measure import build_measured_profile
    from edgedet.profiles.predict import predict_onnx

    runner = TvmRunner("host", rpc_server.removeprefix("rpc://"), 1)
    small = build(cfg("conv", cin=16, cout=16, h=14, k=3, s=1, act=0))
    big = build(cfg("conv", cin=64, cout=64, h=28, k=3, s=1, act=1))
    t_small, t_big = runner.time(small, min_s=0.05).best_ms, runner.time(big, min_s=0.05).best_ms
    assert 0 < t_small < t_big  # 64× the MACs

    doc = build_measured_profile("tvm", 1, 20.0, random_space_net, quick=True, runner=runner, context_share=0.0,
                                 kinds=["conv", "dwconv", "linear", "add", "relu"], per_kind=2, progress=False)
    assert doc["kind"] == "measured" and doc["runtime"]["name"] == "tvm"
    assert doc["runtime"]["device"] == rpc_server and doc["runtime"]["timing_basis"] == "time-evaluator median"
    assert "residual" in doc["fusion"]["epilogues"]  # TVM folds elementwise tails into the conv
    timings = doc["calibration"]["timings"]
    assert len(timings) >= 10 and all(t["us"] > 0 for t in timings)
    assert {t["class"].split(":")[0] for t in timings} >= {"conv", "dwconv", "linear", "elementwise"}
    pred = predict_onnx(big, from_document(doc, "<tvm profile>"))
    assert pred.latency_ms > 0 and not pred.unknown_ops


@pytest.mark.slow
def test_profile_cli_over_loopback_rpc(rpc_server, tmp_path):  # noqa: F811
    from edgedet.cli.main import main

    out = tmp_path / "board.json"
    addr = rpc_server.removeprefix("rpc://")
    assert main(["profile", "--runtime", "tvm", "--target", "host", "--rpc", addr, "--quick",
                 "--time-budget-s", "60", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["id"].startswith("127.0.0.1-") and doc["runtime"]["device"] == rpc_server
    assert doc["calibration"]["samples"] >= 20


def _tvm_profile(path, rpc: str | None = None) -> None:
    """A small measured TVM profile (host, or the board behind `rpc`) written to `path`. 120 s:
    at 60 s under a loaded machine one run got no plain `conv` class fitted."""
    from edgedet.bench.board_timer import TvmRunner
    from edgedet.nas.sampled_nets import random_space_net
    from edgedet.profiles.measure import build_measured_profile

    doc = build_measured_profile("tvm", 1, 120.0, random_space_net, quick=True, runner=TvmRunner("host", rpc, 1),
                                 context_share=0.0, progress=False)
    path.write_text(json.dumps(doc))


@pytest.mark.slow
def test_reproduce_predictor_on_tvm_host(tmp_path):
    """(b) with --runtime tvm: a TVM-measured profile against models compiled by the exporter and
    timed by time_evaluator in a fresh process."""
    from edgedet.cli.main import main

    prof, out = tmp_path / "tvm.json", tmp_path / "p.json"
    _tvm_profile(prof)
    assert main(["reproduce", "predictor", "--runtime", "tvm", "--profile", str(prof), "--include", "arch",
                 "--archs", "1", "--adapt-measure", "", "--png", str(tmp_path / "s.png"), "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["runtime"]["name"] == "tvm" and "adaptation" not in doc
    (row,) = doc["models"]
    assert row["basis"] == "time-evaluator" and row["measured_ms"] > 0 and row["predicted_ms"] > 0


def test_reproduce_predictor_tvm_needs_a_tvm_profile(tmp_path, capsys):
    from edgedet.cli.main import main

    args = ["reproduce", "predictor", "--runtime", "tvm", "--json", str(tmp_path / "p.json")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--profile" in err[0]
    assert not (tmp_path / "p.json").exists()
