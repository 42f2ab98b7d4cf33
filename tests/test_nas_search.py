"""The search loop on a tiny case: outputs, determinism, and resume after a crash."""

import json

import pytest
import torch

from edgedet.arch import load_arch
from edgedet.data import make_classification_data
from edgedet.errors import EdgedetError
from edgedet.io.checkpoint import load_checkpoint
from edgedet.nas.lut import build_lut
from edgedet.nas.outputs import result_arch, write_outputs
from edgedet.nas.search import CHECKPOINT_NAME, Reporter, SearchConfig, run_search
from edgedet.nas.space import SearchSpace

torch.set_num_threads(1)


def _flops_cost(module, shape):
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as c:
        module(torch.zeros(shape))
    return c.get_total_flops() / 1e9 * 100 + 0.1  # an explicit 10 GFLOP/s + 0.1 ms cost model


@pytest.fixture(scope="module")
def setup():
    sp = SearchSpace(widths=(8, 16, 32, 64), max_layers=(1, 2, 2, 1), input_size=224, num_classes=10)
    lut = build_lut(sp, _flops_cost, {"id": "flops-model"})
    data = make_classification_data("synthetic", 32, seed=0, train_size=200, val_size=40)
    budget = (lut.min_ms * lut.max_ms) ** 0.5
    return sp, lut, data, budget


def _cfg(budget, **kw):
    args = dict(epochs=3, warmup_epochs=1, batch_size=16, arch_every=2, arch_lr=0.05) | kw
    return SearchConfig(budget_ms=budget, **args)


class Crash(Exception):
    pass


class CrashAt(Reporter):
    def __init__(self, at):
        self.at, self.n = at, 0

    def step(self, info):
        self.n += 1
        if self.n == self.at:
            raise Crash


def test_search_outputs_and_resume_equality(setup, tmp_path):
    sp, lut, data, budget = setup
    ref = run_search(sp, lut, data.train, data.val, 10, _cfg(budget), tmp_path / "a")
    assert 0.85 * budget <= ref.latency_ms <= budget
    assert [h["phase"] for h in ref.history] == ["warmup", "search", "search"]
    # α moved during the search epochs only
    assert ref.history[0]["alpha_entropy"] > ref.history[-1]["alpha_entropy"]

    # crash in the middle of epoch 3 (after the epoch-2 checkpoint), then resume
    steps = 10  # 200 images, 20% held out for α → 160 / 16
    with pytest.raises(Crash):
        run_search(sp, lut, data.train, data.val, 10, _cfg(budget), tmp_path / "b",
                   reporter=CrashAt(2 * steps + 4))
    st = load_checkpoint(tmp_path / "b" / CHECKPOINT_NAME)
    assert st["epoch"] == 2 and st["warmup_done"]
    with pytest.raises(EdgedetError, match="unfinished search"):
        run_search(sp, lut, data.train, data.val, 10, _cfg(budget), tmp_path / "b")
    res = run_search(sp, lut, data.train, data.val, 10, _cfg(budget), tmp_path / "b", resume=True)
    assert res.indices == ref.indices and res.probs == ref.probs
    assert [h["train_loss"] for h in res.history] == [h["train_loss"] for h in ref.history]

    with pytest.raises(EdgedetError, match="different search"):
        run_search(sp, lut, data.train, data.val, 10, _cfg(budget, seed=1), tmp_path / "b", resume=True)

    arch = result_arch(sp, res, lut, "flops-model", budget, {"id": "flops-model", "kind": "predicted"}, 32)
    files = write_outputs(tmp_path / "b", sp, res, lut, arch)
    assert {f.name for f in files} >= {"arch.json", "search.json", "latency.png", "alpha_heatmap.png"}
    a = load_arch(tmp_path / "b" / "arch.json")
    assert a.budget_ms == budget and a.predicted_latency_ms <= budget
    assert a.extra["skeleton"]["name"] == sp.name
    hist = json.loads((tmp_path / "b" / "search.json").read_text())
    assert hist["schema_version"] == 1 and len(hist["history"]) == 3
    assert hist["fit_moves"] == len(res.repair) == a.extra["search"]["repair_moves"]
    in_band = 0.85 * budget <= res.argmax_latency_ms <= budget
    assert hist["argmax_in_band"] is in_band and a.extra["search"]["argmax_in_band"] is in_band


def test_other_seed_other_search(setup, tmp_path):
    sp, lut, data, budget = setup
    a = run_search(sp, lut, data.train, data.val, 10, _cfg(budget, epochs=2), tmp_path / "x")
    b = run_search(sp, lut, data.train, data.val, 10, _cfg(budget, epochs=2, seed=3), tmp_path / "y")
    assert a.probs != b.probs


def test_proxy_images_scale_with_skeleton_cost():
    """Default searches cost about the same on every skeleton: 2000 images on light ones,
    proportionally fewer on heavy ones, never fewer than the floor (priced at the skeleton's
    own widths: proxy width 0)."""
    from edgedet.nas.budget import DEFAULT_PROXY_IMAGES, MIN_PROXY_IMAGES, proxy_images, training_cost
    from edgedet.nas.space import SKELETONS, skeleton

    spaces = sorted((skeleton(n) for n in SKELETONS), key=training_cost)
    counts = [proxy_images(s, 0) for s in spaces]
    from edgedet.nas.budget import REFERENCE_SKELETON

    assert counts[0] == DEFAULT_PROXY_IMAGES == proxy_images(skeleton(REFERENCE_SKELETON), 0)
    assert all(a >= b for a, b in zip(counts, counts[1:], strict=False))  # heavier skeleton, no more images
    assert min(counts) == MIN_PROXY_IMAGES and all(c % 64 == 0 or c == DEFAULT_PROXY_IMAGES for c in counts)
    heavy = skeleton("c96-d36")
    cost_ratio = training_cost(heavy) / training_cost(skeleton(REFERENCE_SKELETON))
    assert proxy_images(heavy, 0) * cost_ratio == pytest.approx(DEFAULT_PROXY_IMAGES, rel=0.1)


def test_proxy_images_price_the_supernet_that_is_trained():
    """At proxy width 16 every skeleton trains at base width 16: only depth costs, so a wide
    skeleton gets the images of its depth (c128-d48 was starved to 512 when priced at 128)."""
    from edgedet.nas.budget import DEFAULT_PROXY_IMAGES, proxy_images
    from edgedet.nas.space import skeleton

    assert proxy_images(skeleton("c128-d36")) == DEFAULT_PROXY_IMAGES
    assert proxy_images(skeleton("c128-d48")) == proxy_images(skeleton("c16-d48")) > 1000
