"""Data-parallel detector training: two processes (gloo) shard every batch, agree on when
the time budget stops them, and only rank 0 writes files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from edgedet.distributed import spawn
from edgedet.training.config import TrainConfig

OPTIONS = {"plain-detr-quadranet25-xxs": {"preset": "cpu", "dec_layers": 1, "num_queries": 10,
                                          "num_queries_one2many": 20},
           "asag-quadranet25-xxs": {"preset": "cpu", "num_aux_decoders": 1}}


def _rank(out: str, minutes: float | None, epochs: int, model: str = "plain-detr-quadranet25-xxs") -> None:
    from edgedet.training import detection

    seen: list[int] = []
    original = detection.collate

    def spy(batch):
        seen.extend(int(t["image_id"]) for _, t in batch)
        return original(batch)

    detection.collate = spy
    cfg = TrainConfig(model=model, data="synthetic-det", out=out, epochs=epochs,
                      batch_size=2, img_size=128, lr=1e-4, threads=1, train_size=12, val_size=2)
    run = detection.train(cfg, max_minutes=minutes, model_options=OPTIONS[model])
    rank = os.environ.get("RANK", "0")
    Path(out, f"rank{rank}.json").write_text(json.dumps({"steps": run.epochs[-1]["step"], "seen": seen}))


@pytest.mark.parametrize("model", list(OPTIONS))
def test_two_processes_shard_batches_and_write_once(tmp_path, monkeypatch, model) -> None:
    monkeypatch.setenv("EDGEDET_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    spawn(_rank, 2, (str(out), None, 1, model))
    r0, r1 = (json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["steps"] == r1["steps"] == 3  # 12 images, 2 per process per step
    assert not set(r0["seen"]) & set(r1["seen"]) and len(r0["seen"] + r1["seen"]) == 12
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["processes"] == 2 and "AP50" in metrics["final"]
    assert (out / "checkpoint.pt").exists()


def test_two_processes_stop_together_on_the_time_budget(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("EDGEDET_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    spawn(_rank, 2, (str(out), 0.002, 50))  # 0.12 s: over after the first step
    r0, r1 = (json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["steps"] == r1["steps"] < 3 * 50
    assert json.loads((out / "metrics.json").read_text())["epochs"][-1]["step"] == r0["steps"]


def _fail() -> None:
    from edgedet.errors import EdgedetError

    if os.environ["RANK"] == "1":
        raise EdgedetError("rank one cannot go on")


def test_a_failing_process_is_one_error_line() -> None:
    from edgedet.errors import EdgedetError

    with pytest.raises(EdgedetError, match="process 1 of 2 failed: .*rank one cannot go on"):
        spawn(_fail, 2)
