"""TVM through bench: a Relax library in an artifact folder, run locally and on a loopback TVM
RPC server (a real `python -m tvm.exec.rpc_server` subprocess, bounded and killed at the end)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager

import pytest
from test_bench import QUICK, conv_relu

tvm = pytest.importorskip("tvm", reason="TVM is an optional extra (edgedet[tvm])")


@pytest.fixture(scope="module")
def tvm_artifact(tmp_path_factory):
    """A host-built Relax library + manifest.json, the folder layout `edgedet export` writes."""
    import onnx
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx

    folder = tmp_path_factory.mktemp("tvm_art")
    onnx_path = conv_relu(folder / "model.onnx", batch=1, size=16)
    mod = from_onnx(onnx.load(onnx_path), keep_params_in_input=False)
    relax.build(mod, target="llvm").export_library(str(folder / "model.so"))
    manifest = {"format": "tvm", "inputs": [{"name": "x", "shape": [1, 3, 16, 16], "dtype": "float32"}]}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return str(folder)


def test_tvm_local_artifact(tvm_artifact, tmp_path, cli):
    out = tmp_path / "r.json"
    code, text, err = cli(*["bench", tvm_artifact, "--runtime", "tvm", *QUICK, "--json", str(out)])
    assert code == 0, err
    r = json.loads(out.read_text())
    assert r["runtime"]["effective"]["TVM_NUM_THREADS"] == "1"
    assert r["results"][0]["inputs"] == {"x": [1, 3, 16, 16]} and r["results"][0]["iterations"] >= 5
    assert r["results"][0]["roofline"]["gflops"] > 0  # counted on the model.onnx in the folder


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    """Kill a process we started and its group (the RPC server forks a worker per session)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)


@pytest.fixture
def rpc_server(tmp_path):
    port = _free_port()
    log = open(tmp_path / "rpc.log", "w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tvm.exec.rpc_server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--port-end",
            str(port + 1),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None:
                pytest.fail(f"rpc_server exited: {(tmp_path / 'rpc.log').read_text()}")
            time.sleep(0.2)
        else:
            pytest.fail("rpc_server did not start within 60 s")
        yield f"rpc://127.0.0.1:{port}"
    finally:
        _stop(proc)
        log.close()


def test_tvm_rpc_loopback(tvm_artifact, rpc_server, tmp_path, cli):
    out = tmp_path / "r.json"
    code, text, err = cli("bench", tvm_artifact, "--runtime", "tvm", "--device", rpc_server, *QUICK,
                          "--json", out)
    assert code == 0, err
    r = json.loads(out.read_text())
    res = r["results"][0]
    assert r["device"]["remote"] == rpc_server and "time_evaluator" in r["settings"]["timing"]
    assert res["peak_memory_mib"] is None and res["iterations"] >= 5
    assert 0 < res["latency_ms"]["min"] <= res["latency_ms"]["median"]
    assert "roofline" not in res  # the host's peaks say nothing about a remote board


def test_rpc_unreachable_is_one_line(tvm_artifact, cli):
    code, _, err = cli("bench", tvm_artifact, "--runtime", "tvm", "--device", f"rpc://127.0.0.1:{_free_port()}",
                       *QUICK)
    assert code == 2 and err.count("\n") == 1 and "cannot reach the TVM RPC server" in err


def test_rpc_bad_address(tvm_artifact, cli):
    code, _, err = cli(*["bench", tvm_artifact, "--runtime", "tvm", "--device", "rpc://nohost", *QUICK])
    assert code == 2 and "rpc://HOST:PORT" in err


def _wait_port(port: int, proc, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        if proc.poll() is not None:
            pytest.fail("a TVM RPC process exited during start-up")
        time.sleep(0.2)
    pytest.fail(f"nothing listened on port {port} within {timeout:.0f} s")


def _spawn(module: str, port: int, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", module, "--host", "127.0.0.1", "--port", str(port), "--port-end", str(port + 1)]
    return subprocess.Popen([*cmd, *extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


@contextmanager
def loopback_tracker(key: str = "edgedet-test"):
    """A real `tvm.exec.rpc_tracker` and one `tvm.exec.rpc_server` registered under `key`, both on
    127.0.0.1; yields "127.0.0.1:PORT/KEY" (the tracker); both process groups killed at the end."""
    tport, sport = _free_port(), _free_port()
    procs = []
    try:
        procs.append(_spawn("tvm.exec.rpc_tracker", tport))
        _wait_port(tport, procs[0])
        procs.append(_spawn("tvm.exec.rpc_server", sport, "--tracker", f"127.0.0.1:{tport}", "--key", key))
        _wait_port(sport, procs[1])
        time.sleep(2)  # let the server register its key with the tracker
        yield f"127.0.0.1:{tport}/{key}"
    finally:
        for p in procs:
            _stop(p)


@pytest.mark.slow
def test_tvm_rpc_through_tracker(tvm_artifact, tmp_path, cli):
    """rpc://HOST:PORT/KEY: a tracker and a server registered under a key (loopback)."""
    with loopback_tracker() as tracker:
        out = tmp_path / "r.json"
        code, _, err = cli("bench", tvm_artifact, "--runtime", "tvm", "--device", f"rpc://{tracker}", *QUICK,
                           "--json", str(out))
        assert code == 0, err
        assert json.loads(out.read_text())["results"][0]["iterations"] >= 5
