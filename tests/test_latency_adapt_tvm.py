"""Few-shot adaptation over TVM RPC: a real loopback `tvm.exec.rpc_server` (127.0.0.1 only),
each network compiled with the TVM exporter and timed by the server's time_evaluator."""

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
        (["profile", "--runtime", "tvm", "--out", "x.json"], "not implemented"),
        (["profile", "--adapt", "cortex-a76", "--runtime", "onnxruntime", "--rpc", "h:1", "--out", "x.json"],
         "--rpc needs --runtime tvm"),
        (["profile", "--adapt", "cortex-a76", "--runtime", "tvm", "--rpc", "nohost", "--out", "x.json"],
         "rpc://HOST:PORT"),
    ):
        assert main(args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and msg in err[0], err
