"""The classification loop: metrics, checkpoints readable with weights_only, exact resume."""

import json

import pytest
import torch
from rich.console import Console

from edgedet.arch import uniform_arch
from edgedet.errors import EdgedetError
from edgedet.io.checkpoint import CHECKPOINT_NAME, load_checkpoint
from edgedet.training.classify import EpochPermutation, train
from edgedet.training.config import TrainConfig
from edgedet.training.schedule import warmup_cosine

torch.set_num_threads(1)
QUIET = Console(quiet=True)


@pytest.fixture(scope="module")
def tiny_arch(tmp_path_factory):
    path = tmp_path_factory.mktemp("arch") / "tiny.json"
    uniform_arch([8, 16, 16, 16], [1, 1, 1, 1], kernel=3, expansion=2, num_classes=10).save(path)
    return f"quadranet-arch:{path}"


def _cfg(model, out, **kw):
    base = dict(model=model, out=str(out), epochs=3, batch_size=16, img_size=32, lr=3e-3, train_size=48,
                val_size=20, warmup_epochs=1.0, label_smoothing=0.1, threads=1)
    base.update(kw)
    return TrainConfig(**base)


def test_two_epochs_write_metrics_curve_and_checkpoint(tiny_arch, tmp_path):
    m = train(_cfg(tiny_arch, tmp_path, epochs=2), console=QUIET)
    d = json.loads((tmp_path / "metrics.json").read_text())
    assert d["schema_version"] == 1 and d["epochs_done"] == 2 and len(d["epochs"]) == 2
    assert d["final_val_acc"] == m.final_val_acc and 0.0 <= d["final_val_acc"] <= 1.0
    assert d["params"] > 0 and d["gflops"] > 0 and d["gflops_224"] > d["gflops"] and d["threads"] == 1
    assert d["chance_acc"] == pytest.approx(0.1) and d["wall_time_s"] > 0
    assert all(e["train_loss"] > 0 for e in d["epochs"])
    assert (tmp_path / "training_curve.png").read_bytes()[:4] == b"\x89PNG"
    state = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)
    assert state["epoch"] == 2 and state["config"]["model"] == tiny_arch
    assert set(state) >= {"model", "optimizer", "schedule", "rng", "history"}
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temp files


def test_resume_is_bit_exact(tiny_arch, tmp_path):
    full = train(_cfg(tiny_arch, tmp_path / "full"), console=QUIET)
    part = train(_cfg(tiny_arch, tmp_path / "part"), stop_after=1, console=QUIET)
    assert load_checkpoint(tmp_path / "part" / CHECKPOINT_NAME)["epoch"] == 1
    resumed = train(_cfg(tiny_arch, tmp_path / "part"), resume=True, console=QUIET)
    assert len(resumed.epochs) == 3
    for k, v in full.model_state.items():
        assert torch.equal(v, resumed.model_state[k]), k
    # an interrupted run really is different before resuming
    assert any(not torch.equal(v, part.model_state[k]) for k, v in full.model_state.items())
    assert [e.val_acc for e in resumed.epochs] == [e.val_acc for e in full.epochs]


def test_resume_errors(tiny_arch, tmp_path):
    with pytest.raises(EdgedetError, match="no checkpoint"):
        train(_cfg(tiny_arch, tmp_path), resume=True, console=QUIET)
    train(_cfg(tiny_arch, tmp_path, epochs=1), console=QUIET)
    with pytest.raises(EdgedetError, match="--lr was"):
        train(_cfg(tiny_arch, tmp_path, epochs=1, lr=0.1), resume=True, console=QUIET)
    (tmp_path / CHECKPOINT_NAME).write_bytes(b"garbage")
    with pytest.raises(EdgedetError, match="cannot read checkpoint"):
        train(_cfg(tiny_arch, tmp_path, epochs=1), resume=True, console=QUIET)


@pytest.mark.parametrize("field,value", [("epochs", 0), ("batch_size", -1), ("img_size", 0), ("lr", 0.0),
                                         ("lr", float("nan")), ("label_smoothing", 1.0)])
def test_bad_numbers(tiny_arch, tmp_path, field, value):
    with pytest.raises(EdgedetError, match=field.replace("_", "-")):
        train(_cfg(tiny_arch, tmp_path, **{field: value}), console=QUIET)


def test_schedule_and_sampler():
    f = [warmup_cosine(s, 100, 10) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0) and f[10] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[10:], f[11:], strict=False)) and f[-1] < 0.01
    s = EpochPermutation(10, seed=3)
    s.set_epoch(1)
    a = list(s)
    s.set_epoch(2)
    assert sorted(a) == list(range(10)) and a != list(s)
    s.set_epoch(1)
    assert list(s) == a
