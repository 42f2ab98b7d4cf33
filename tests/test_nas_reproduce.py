"""`reproduce nas` statistics and plot (the suite itself is a benchmark, not a test)."""

import random

import pytest
from scipy import stats

from edgedet.bench.reproduce.nas import kendall, pareto_plot, spearman


@pytest.mark.parametrize("seed", [0, 1])
def test_rank_correlations_match_scipy(seed):
    r = random.Random(seed)
    a = [r.choice([0.1, 0.2, 0.3, r.random()]) for _ in range(30)]  # with ties
    b = [x + r.gauss(0, 0.2) for x in a]
    assert spearman(a, b) == pytest.approx(stats.spearmanr(a, b).statistic, abs=1e-9)
    assert kendall(a, b) == pytest.approx(stats.kendalltau(a, b).statistic, abs=1e-9)


def test_pareto_plot_writes_png(tmp_path):
    rows = [{"device": "d", "budget_ms": 10.0, "method": m, "predicted_latency_ms": lat,
             "accuracy": {"mean": acc}} for m, lat, acc in
            (("random-in-band", 9.0, 0.2), ("searched-supernet", 9.5, 0.3), ("uniform-quadranet", 8.0, 0.25))]
    p = pareto_plot({"rows": rows, "summary": {"d": {}}}, tmp_path / "pareto.png")
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
