"""Detection training resumed from its checkpoint ends with the weights of an uninterrupted
run (the checkpoint's one RNG state carries torch's and Python's generators)."""

from __future__ import annotations

import pytest
import torch

from edgedet.io.checkpoint import load_checkpoint
from edgedet.training import detection
from edgedet.training.config import TrainConfig

OPTIONS = {"preset": "cpu", "dec_layers": 1, "num_queries": 10, "num_queries_one2many": 20}


def _cfg(out) -> TrainConfig:
    return TrainConfig(model="plain-detr-quadranet25-xxs", data="synthetic-det", out=str(out), epochs=2,
                       batch_size=2, img_size=128, lr=1e-4, threads=1, train_size=8, val_size=2)


def test_resume_after_an_interruption_gives_the_same_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEDET_CACHE", str(tmp_path / "cache"))
    ref = detection.train(_cfg(tmp_path / "ref"), model_options=OPTIONS)

    calls = {"n": 0}
    original = detection.collate

    def crash_in_epoch_two(batch):
        calls["n"] += 1
        if calls["n"] == 6:  # 4 steps per epoch: the second step of epoch 2
            raise KeyboardInterrupt
        return original(batch)

    monkeypatch.setattr(detection, "collate", crash_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        detection.train(_cfg(tmp_path / "run"), model_options=OPTIONS)
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["epoch"] == 1
    monkeypatch.setattr(detection, "collate", original)
    run = detection.train(_cfg(tmp_path / "run"), resume=True, model_options=OPTIONS)

    a = load_checkpoint(tmp_path / "ref" / "checkpoint.pt")["model"]
    b = load_checkpoint(tmp_path / "run" / "checkpoint.pt")["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [r["loss"] for r in run.epochs] == [r["loss"] for r in ref.epochs]
