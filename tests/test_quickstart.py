"""The quickstart's parts that run in seconds: step records (resume by sha256), budgets that
bind, and its bad-input errors. The whole quickstart is measured by `make quickstart`."""

from __future__ import annotations

from edgedet.cli.quickstart.budgets import binding_budget
from edgedet.cli.quickstart.record import run_step, sha256_of
from edgedet.nas.latency import load_profile


def test_step_reruns_only_when_its_files_change(tmp_path):
    src, out = tmp_path / "in.txt", tmp_path / "out" / "o.txt"
    src.write_text("a")
    calls = []

    def work():
        calls.append(1)
        out.parent.mkdir(exist_ok=True)
        out.write_text(src.read_text() * 2)

    def step(params=None):
        return run_step(tmp_path, "s", params or {"n": 1}, [src], [out.parent], work, lambda m: None)

    assert step() and not step() and len(calls) == 1
    src.write_text("b")  # input changed
    assert step() and out.read_text() == "bb"
    out.write_text("tampered")  # output changed
    assert step() and out.read_text() == "bb"
    assert step({"n": 2})  # parameters changed
    assert not step({"n": 2}) and len(calls) == 4
    assert sha256_of(tmp_path / "missing") is None


def test_step_that_fails_leaves_no_record(tmp_path):
    def boom():
        raise RuntimeError("x")

    try:
        run_step(tmp_path, "s", {}, [], [], boom, print)
    except RuntimeError:
        pass
    assert not (tmp_path / ".quickstart" / "s.json").exists()


def test_budgets_bind():
    for dev in ("cortex-a76", "myriad-vpu"):
        b = binding_budget(load_profile(dev))
        assert b["min_ms"] < b["budget_ms"] < b["max_ms"]


def test_quickstart_bad_budget(cli, tmp_path):
    cli("quickstart", "--budget-ms", "abc", "--out", tmp_path).assert_one_line_error("--budget-ms")
    cli("quickstart", "--budget-ms", "1,2,3", "--out", tmp_path).assert_one_line_error("--budget-ms")
    cli("quickstart", "--threads", "0", "--out", tmp_path).assert_one_line_error("--threads")
