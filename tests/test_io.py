"""edgedet.io: one checkpoint format, one RNG-state format, old files still load, bad files
are one clear error; the one file sha256."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from edgedet.errors import EdgedetError
from edgedet.io.checkpoint import load_checkpoint, load_model_weights, rng_state, save_checkpoint, set_rng_state


def test_rng_state_round_trips_torch_python_numpy(tmp_path):
    save_checkpoint(tmp_path / "c.pt", {"rng": rng_state()})
    want = (torch.rand(3), random.random(), np.random.rand(3))
    set_rng_state(load_checkpoint(tmp_path / "c.pt")["rng"])
    got = (torch.rand(3), random.random(), np.random.rand(3))
    assert torch.equal(want[0], got[0]) and want[1] == got[1] and np.array_equal(want[2], got[2])


def test_checkpoints_of_the_old_writers_still_load(tmp_path):
    # training wrote checkpoint_version 1 with a torch-only RNG state; search wrote format_version 1
    torch.save({"checkpoint_version": 1, "epoch": 2, "rng": {"torch": torch.get_rng_state()}}, tmp_path / "t.pt")
    torch.save({"format_version": 1, "epoch": 3}, tmp_path / "s.ckpt")
    old = load_checkpoint(tmp_path / "t.pt")
    set_rng_state(old["rng"])
    assert old["epoch"] == 2 and load_checkpoint(tmp_path / "s.ckpt")["epoch"] == 3


def test_resaving_keeps_one_version_key(tmp_path):
    save_checkpoint(tmp_path / "a.pt", {"format_version": 1, "x": 1})
    raw = torch.load(tmp_path / "a.pt", weights_only=True)
    assert raw == {"checkpoint_version": 1, "x": 1}


@pytest.mark.parametrize("content, match", [
    (b"garbage", "cannot read checkpoint .*not a torch.save file"),
    (None, "is not an edgedet checkpoint"),
])
def test_bad_or_foreign_files_are_one_error(tmp_path, content, match):
    p = tmp_path / "x.pt"
    if content is None:
        torch.save({"weights": torch.zeros(1)}, p)  # a torch file, not ours
    else:
        p.write_bytes(content)
    with pytest.raises(EdgedetError, match=match):
        load_checkpoint(p)


def test_pickled_objects_are_refused_in_words(tmp_path):
    torch.save({"model": {"w": torch.zeros(1)}, "obj": random.Random(0)}, tmp_path / "p.pt")
    with pytest.raises(EdgedetError, match="pickled Python objects"):
        load_model_weights(tmp_path / "p.pt")


def test_model_weights_from_a_checkpoint_or_a_plain_state_dict(tmp_path):
    sd = {"module.w": torch.ones(2)}
    save_checkpoint(tmp_path / "c.pt", {"task": "detection", "model": sd, "num_classes": 3,
                                        "model_options": {"preset": "cpu"}})
    torch.save(sd, tmp_path / "sd.pt")
    w, opts = load_model_weights(tmp_path / "c.pt")
    assert list(w) == ["w"] and opts == {"preset": "cpu", "num_classes": 3}
    assert list(load_model_weights(tmp_path / "sd.pt")[0]) == ["w"]


def test_sha256_file_streams_past_one_block_and_matches_hashlib(tmp_path):
    import hashlib

    from edgedet.io.digest import sha256_file, update_from_file

    data = np.random.default_rng(0).bytes(3 * (1 << 20) + 17)  # three blocks and a tail
    (tmp_path / "f.bin").write_bytes(data)
    assert sha256_file(tmp_path / "f.bin") == hashlib.sha256(data).hexdigest()
    h = hashlib.sha256(b"prefix")
    update_from_file(h, str(tmp_path / "f.bin"))
    assert h.hexdigest() == hashlib.sha256(b"prefix" + data).hexdigest()
