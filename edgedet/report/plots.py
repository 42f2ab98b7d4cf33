"""The report's PNGs, drawn only from a Section's rows/series (so each image shows exactly
the numbers in report/<section>.json), returned as bytes for inlining as base64."""

from __future__ import annotations

import io
from typing import Any

from edgedet.report.sections import Section

KERNEL_COLOURS = {3: "#9ecae1", 5: "#4292c6", 7: "#08519c"}


def _figure(ncols: int = 1, width: float = 6.4, height: float = 3.6):
    # matplotlib is imported here: a heavy optional stack, needed only when drawing
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=(width, height), squeeze=False)
    return plt, fig, list(axes[0])


def _png(plt, fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def plot_search(sec: Section) -> bytes:
    """α entropy, expected/argmax latency against the budget, and val accuracy per epoch."""
    plt, fig, (a0, a1, a2) = _figure(3, 12, 3.6)
    for s in sec.series.values():
        h = s["history"]
        ep = [r["epoch"] for r in h]
        tag = f"{s['device']} @ {s['budget_ms']:g} ms"
        a0.plot(ep, [r["alpha_entropy"] for r in h], marker="o", label=tag)
        line = a1.plot(ep, [r["expected_latency_ms"] for r in h], marker="o", label=f"E[lat] {tag}")[0]
        a1.plot(ep, [r["argmax_latency_ms"] for r in h], ls="--", color=line.get_color(), label="argmax")
        a1.axhline(s["budget_ms"], color=line.get_color(), lw=0.8, ls=":")
        a2.plot(ep, [r["val_acc"] for r in h], marker="o", label=tag)
    a0.set(title="α entropy (1 = uniform)", xlabel="epoch", ylim=(0, 1.05))
    a1.set(title="predicted latency vs budget (dotted)", xlabel="epoch", ylabel="ms (predicted)")
    a2.set(title="proxy val accuracy", xlabel="epoch")
    for a in (a0, a1, a2):
        a.legend(fontsize=7)
    return _png(plt, fig)


def plot_architecture(series: dict[str, Any]) -> bytes:
    """One row per stage, one cell per layer: colour = kernel, text = kernel/expansion or skip."""
    stages = series["stages"]
    width = max(len(s["layers"]) for s in stages)
    plt, fig, (ax,) = _figure(1, max(4.0, 0.9 * width + 2), 0.7 * len(stages) + 1.2)
    for i, st in enumerate(stages):
        y = len(stages) - 1 - i
        for j, lab in enumerate(st["layers"]):
            if lab == "skip":
                ax.add_patch(plt.Rectangle((j, y), 0.92, 0.8, fc="#eeeeee", ec="#999999", ls="--"))
                ax.text(j + 0.46, y + 0.4, "skip", ha="center", va="center", fontsize=8, color="#777777")
                continue
            k = int(lab[1:lab.index("e")])
            ax.add_patch(plt.Rectangle((j, y), 0.92, 0.8, fc=KERNEL_COLOURS.get(k, "#6baed6"), ec="black"))
            ax.text(j + 0.46, y + 0.4, lab, ha="center", va="center", fontsize=8,
                    color="white" if k >= 5 else "black")
        ax.text(-0.2, y + 0.4, f"stage {i + 1}: C={st['width']} s{st['stride']}", ha="right", va="center",
                fontsize=8)
    ax.set_xlim(-3.2, width + 0.1)
    ax.set_ylim(-0.2, len(stages))
    ax.axis("off")
    budget = series.get("budget_ms")
    ax.set_title(f"{series.get('device') or 'no device'}" + (f", budget {budget:g} ms" if budget else ""),
                 fontsize=9)
    return _png(plt, fig)


def _short(row: dict[str, Any]) -> str:
    return f"{row['runtime']}\n{row.get('format') or ''} b{row['batch']}"


def plot_latency(sec: Section) -> bytes:
    """Median measured latency per artifact/runtime with min–p99 whiskers."""
    rows = sec.rows
    plt, fig, (ax,) = _figure(1, max(5.0, 1.3 * len(rows) + 2))
    med = [r["median_ms"] for r in rows]
    lo = [r["median_ms"] - r["min_ms"] for r in rows]
    hi = [r["p99_ms"] - r["median_ms"] for r in rows]
    ax.bar(range(len(rows)), med, yerr=[lo, hi], capsize=4, color="#4292c6")
    ax.set_xticks(range(len(rows)), [_short(r) for r in rows], fontsize=8)
    ax.set(ylabel="ms (measured)", title="measured latency: median, whiskers min–p99")
    return _png(plt, fig)


def plot_predictions(sec: Section) -> bytes:
    """Predicted latency per (model, profile), error bars ± the profile's calibration MAPE."""
    rows = sec.rows
    plt, fig, (ax,) = _figure(1, max(5.0, 1.2 * len(rows) + 2))
    vals = [r["latency_ms"] for r in rows]
    err = [r["latency_ms"] * (r["mape"] or 0.0) for r in rows]
    ax.bar(range(len(rows)), vals, yerr=err, capsize=4, color="#fd8d3c")
    ax.set_xticks(range(len(rows)), [f"{r['profile']}\nb{r['batch']} {r['input_size']}px" for r in rows],
                  fontsize=8)
    ax.set_yscale("log")
    ax.set(ylabel="ms (predicted, log)", title="predicted latency, ± calibration MAPE")
    return _png(plt, fig)


def plot_predicted_vs_measured(sec: Section) -> bytes:
    rows = sec.rows
    plt, fig, (ax,) = _figure(1, 5.0, 4.2)
    x = [r["measured_median_ms"] for r in rows]
    y = [r["predicted_ms"] for r in rows]
    ax.scatter(x, y, zorder=3)
    for r in rows:
        ax.annotate(f"{r['runtime']} {100 * r['error']:+.0f}%", (r["measured_median_ms"], r["predicted_ms"]),
                    fontsize=8, xytext=(4, 4), textcoords="offset points")
    top = max(x + y) * 1.15
    ax.plot([0, top], [0, top], color="grey", ls="--", lw=0.8, label="predicted = measured")
    ax.set(xlim=(0, top), ylim=(0, top), xlabel="measured median ms", ylabel="predicted ms",
           title="predicted vs measured (this machine)")
    ax.legend(fontsize=8)
    return _png(plt, fig)


def plot_pareto(sec: Section) -> bytes:
    """Predicted latency (x) vs GFLOPs (y); searched nets marked apart from the uniform family."""
    plt, fig, (ax,) = _figure(1, 6.0, 4.2)
    for kind, marker, colour in (("uniform", "o", "#999999"), ("searched", "*", "#d62728")):
        pts = [r for r in sec.rows if r["kind"] == kind]
        ax.scatter([r["latency_ms"] for r in pts], [r["gflops"] for r in pts], marker=marker, c=colour,
                   s=120 if kind == "searched" else 40, label=kind, zorder=3)
        for r in pts:
            ax.annotate(r["name"], (r["latency_ms"], r["gflops"]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
    profiles = sorted({r["profile"] for r in sec.rows})
    ax.set(xlabel=f"predicted ms ({', '.join(profiles)})", ylabel="GFLOPs", title="searched vs uniform QuadraNets")
    ax.legend(fontsize=8)
    return _png(plt, fig)


def section_images(sec: Section) -> list[tuple[str, bytes]]:
    """(caption, PNG bytes) for a section with data; none for a missing one."""
    if sec.missing:
        return []
    if sec.name == "search":
        return [("search curves", plot_search(sec))]
    if sec.name == "architecture":
        return [(f"architecture {name}", plot_architecture(s)) for name, s in sec.series.items()]
    draw = {"latency": plot_latency, "predictions": plot_predictions,
            "predicted_vs_measured": plot_predicted_vs_measured, "pareto": plot_pareto}.get(sec.name)
    return [(sec.title, draw(sec))] if draw else []
