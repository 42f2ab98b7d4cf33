"""`edgedet search` end to end: budget errors (fast), SIGKILL + --resume and torchrun (slow)."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

TINY = ["--skeleton", "c16-d16", "--epochs", "4", "--warmup-epochs", "1",
        "--synthetic-images", "256", "--batch-size", "16", "--train-size", "32", "--no-plots",
        "--threads", "1"]


def test_unattainable_budget_names_smallest_latency(tmp_path, cli):
    cli("search", "--device", "myriad-vpu", "--budget-ms", "3", "--out", tmp_path).assert_one_line_error(
        "unattainable", "smallest architecture")
    assert not (tmp_path / "arch.json").exists()


def test_budget_above_fixed_skeleton_says_so(tmp_path, cli):
    r = cli("search", "--device", "myriad-vpu", "--budget-ms", "5000", "--skeleton", "c16-d16", "--out", tmp_path)
    r.assert_one_line_error("above the largest architecture of skeleton c16-d16", "wider or deeper")


def test_unknown_device_and_loss(tmp_path, cli):
    cli("search", "--device", "no-such-device", "--budget-ms", "30", "--out", tmp_path).assert_one_line_error(
        "unknown device profile")
    cli("search", "--device", "myriad-vpu", "--budget-ms", "30", "--loss", "exp",
        "--out", tmp_path).assert_one_line_error("unknown loss form")


def _frozen_profile(tmp_path) -> list[str]:
    """A private copy of the myriad-vpu profile, so an edit of the shipped one mid-test
    cannot change the LUT between the runs being compared."""
    from edgedet.profiles import load_profile

    dst = tmp_path / "myriad-vpu.json"
    dst.write_text(Path(load_profile("myriad-vpu").path).read_text())
    return ["--device", str(dst)]


@pytest.mark.slow
def test_sigkill_then_resume_gives_the_same_arch(tmp_path, edgedet_process):
    dev = _frozen_profile(tmp_path)
    t0 = time.time()
    ref = edgedet_process("search", *dev, *TINY, "--budget-ms", "20", "--out", str(tmp_path / "ref"), popen=True)
    out, _ = ref.communicate()
    assert ref.returncode == 0, out
    duration = time.time() - t0

    kill_at = random.Random().uniform(0.1, 0.8) * duration
    run = edgedet_process("search", *dev, *TINY, "--budget-ms", "20", "--out", str(tmp_path / "run"), popen=True)
    try:
        run.wait(timeout=kill_at)
    except subprocess.TimeoutExpired:
        run.send_signal(signal.SIGKILL)
        run.wait()
    ckpt_existed = (tmp_path / "run" / "search.ckpt").exists()
    res = edgedet_process("search", *dev, *TINY, "--budget-ms", "20", "--out", str(tmp_path / "run"), "--resume",
                          popen=True)
    out, _ = res.communicate()
    assert res.returncode == 0, out
    a = (tmp_path / "ref" / "arch.json").read_text()
    b = (tmp_path / "run" / "arch.json").read_text()
    assert a == b, f"killed at {kill_at:.1f}s of {duration:.1f}s"
    print(f"killed at {kill_at:.1f}s of {duration:.1f}s; checkpoint existed: {ckpt_existed}")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("torchrun") is None
                    and not Path(sys.executable).with_name("torchrun").exists(),
                    reason="torchrun not installed")
def test_torchrun_two_processes_on_cpu(tmp_path):
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    dev = _frozen_profile(tmp_path)
    cmd = [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "edgedet", "search", *dev, *TINY,
           "--budget-ms", "20", "--out", str(tmp_path / "out")]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    arch = json.loads((tmp_path / "out" / "arch.json").read_text())
    hist = json.loads((tmp_path / "out" / "search.json").read_text())
    assert hist["world_size"] == 2
    assert 0.85 * 20 <= arch["predicted_latency_ms"] <= 20
