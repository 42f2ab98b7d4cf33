"""The time box plans epochs from measured step costs (pure planning; no timing asserts)."""

import pytest

from edgedet.nas.timebox import RESERVE, epoch_seconds, plan_epochs


def _plan(box, step=0.4, arch=0.8, spent=10.0):
    return plan_epochs(box, spent, step, arch, eval_s=1.0, steps_per_epoch=50, arch_every=2, warmup_share=0.5)


def test_plan_fits_the_box_and_scales_with_it():
    small, big = _plan(120.0), _plan(900.0)
    for p in (small, big):
        assert p.estimate_s <= p.box_s * (1 - RESERVE)
        assert 1 <= p.warmup_epochs < p.epochs
        assert p.warmup_epochs == round(0.5 * p.epochs) or p.warmup_epochs in (1, p.epochs - 1)
    assert big.epochs > small.epochs
    assert big.epochs < 60  # not at the cap
    slow = _plan(900.0, step=1.6, arch=3.2)  # a 4× slower machine gets about 4× fewer epochs
    assert slow.epochs == pytest.approx(big.epochs / 4, rel=0.25)
    d = big.to_json()
    assert epoch_seconds(d, True) == pytest.approx(50 * 0.4 + 1.0)
    assert epoch_seconds(d, False) == pytest.approx(50 * 0.4 + 25 * 0.8 + 1.0)


def test_plan_keeps_two_epochs_when_nothing_fits():
    p = _plan(20.0, spent=30.0)
    assert (p.epochs, p.warmup_epochs) == (2, 1) and p.estimate_s > p.box_s


def test_replan_shrinks_on_a_slower_machine_and_keeps_a_search_epoch():
    from edgedet.nas.timebox import replan

    p = _plan(900.0).to_json()
    warm_s = epoch_seconds(p, True)
    same = replan(p, 10.0 + warm_s, 1, warm_s, True)  # on schedule: unchanged
    assert (same["epochs"], same["warmup_epochs"]) == (p["epochs"], p["warmup_epochs"])
    slow = replan(p, 10.0 + 3 * warm_s, 1, 3 * warm_s, True)  # 3× slower than measured
    assert slow["epochs"] < p["epochs"] and 1 <= slow["warmup_epochs"] < slow["epochs"]
    assert slow["estimate_s"] <= p["box_s"] * (1 - RESERVE)
    late = replan(p, 2000.0, p["warmup_epochs"], warm_s, True)  # box already spent after the warm-up
    assert late["epochs"] == p["warmup_epochs"] + 1
