"""PNG plots of a search: expected latency vs epoch (with the budget), accuracy, the α
probabilities per layer as a heat-map, and a diagram of the derived architecture."""

from __future__ import annotations

from pathlib import Path

from edgedet.arch import Arch
from edgedet.io.atomic import atomic_output
from edgedet.nas.lut import LatencyTable
from edgedet.nas.search import SearchResult
from edgedet.nas.space import SearchSpace


def _save(fig, path: Path) -> Path:
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    return path


def plot_search(out: Path, space: SearchSpace, result: SearchResult, lut: LatencyTable,
                arch: Arch) -> list[Path]:
    """The four PNGs of a search in `out`: latency.png, accuracy.png, alpha_heatmap.png,
    architecture.png; returns their paths."""
    import matplotlib  # lazy: heavy optional plotting stack

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    prof = (arch.profile or {}).get("id", arch.device)
    draw = {"latency.png": lambda: _latency_fig(plt, space, result, arch, prof),
            "accuracy.png": lambda: _accuracy_fig(plt, result),
            "alpha_heatmap.png": lambda: _alpha_fig(plt, space, result),
            "architecture.png": lambda: _architecture_fig(plt, space, arch, prof)}
    paths = []
    for name, make in draw.items():  # one figure open at a time, written as soon as drawn
        fig = make()
        paths.append(_save(fig, out / name))
        plt.close(fig)
    return paths


def _latency_fig(plt, space: SearchSpace, result: SearchResult, arch: Arch, prof: str):
    """Expected and argmax latency per epoch against the budget and the derived latency."""
    h = result.history
    ep = [r["epoch"] for r in h]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(ep, [r["expected_latency_ms"] for r in h], "o-", label="E[latency] (softmax α)")
    ax.plot(ep, [r["argmax_latency_ms"] for r in h], "s--", label="argmax architecture")
    ax.axhline(arch.budget_ms, color="r", label=f"budget {arch.budget_ms:g} ms")
    ax.axhline(arch.predicted_latency_ms, color="g", ls=":",
               label=f"derived {arch.predicted_latency_ms:.3g} ms")
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"predicted latency (ms), {prof} @ {space.input_size}px")
    ax.legend(fontsize=8)
    return fig


def _accuracy_fig(plt, result: SearchResult):
    """Train accuracy per epoch, and the validation accuracies where the epoch measured them."""
    h = result.history
    ep = [r["epoch"] for r in h]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(ep, [r["train_acc"] for r in h], "o-", label="train (sampled paths)")
    for key, mark, label in (("val_acc_sampled", "^-", "val (random sub-networks, warm-up)"),
                             ("val_acc_argmax", "s-", "val (argmax sub-network)")):
        pts = [(e, r.get(key)) for e, r in zip(ep, h, strict=True) if r.get(key) is not None]
        if pts:
            ax.plot([e for e, _ in pts], [v for _, v in pts], mark, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("proxy top-1 accuracy")
    ax.legend(fontsize=8)
    return fig


def _alpha_fig(plt, space: SearchSpace, result: SearchResult):
    """Heat-map (layers, choices) of the final softmax(α), the derived choice boxed in red."""
    import numpy as np

    choices = space.all_choices()
    width = max(len(c) for c in choices)
    mat = np.full((len(choices), width), np.nan)
    for l, p in enumerate(result.probs):
        mat[l, : len(p)] = p
    labels = ["skip" if c is None else f"k{c.kernel}e{c.expansion}" for c in max(choices, key=len)]
    fig, ax = plt.subplots(figsize=(5, 0.3 * len(choices) + 1.5))
    im = ax.imshow(mat, aspect="auto", cmap="viridis", vmin=0)
    for l, i in enumerate(result.indices):
        ax.add_patch(plt.Rectangle((i - 0.5, l - 0.5), 1, 1, fill=False, ec="r", lw=1.5))
    ax.set_xticks(range(width), labels, rotation=45)
    ax.set_yticks(range(len(choices)), [f"s{s}.{i}" for s, i in space.layers()])
    ax.set_title("final softmax(α) per layer (red: derived)")
    fig.colorbar(im, ax=ax)
    return fig


def _architecture_fig(plt, space: SearchSpace, arch: Arch, prof: str):
    """One box per layer: colour = kernel, height = expansion, grey bar = skip; stage widths above."""
    fig, ax = plt.subplots(figsize=(max(6, 0.55 * len(space.all_choices()) + 2), 2.6))
    x = 0.0
    colours = {3: "#8ecae6", 5: "#219ebc", 7: "#023047"}
    for s, stage in enumerate(arch.stages):
        for layer in stage.layers:
            if layer is None:
                ax.add_patch(plt.Rectangle((x, 0.45), 0.8, 0.1, color="#cccccc"))
            else:
                hgt = 0.35 * layer.expansion / max(space.expansions)
                colour = colours.get(layer.kernel, "#555")
                ax.add_patch(plt.Rectangle((x, 0.5 - hgt), 0.8, 2 * hgt, color=colour))
                ax.text(x + 0.4, 0.5, f"{layer.kernel}\n×{layer.expansion}", ha="center", va="center",
                        fontsize=6, color="w")
            x += 1
        ax.text(x - len(stage.layers) / 2 - 0.1, 0.97, f"stage {s + 1}: {stage.width} ch",
                ha="center", fontsize=7)
        x += 0.6
    ax.set_xlim(-0.3, x)
    ax.set_ylim(0, 1.05)
    ax.axis("off")
    ax.set_title(f"derived architecture: {arch.predicted_latency_ms:.3g} ms predicted ({prof}), "
                 f"budget {arch.budget_ms:g} ms; box = kernel (colour) × expansion (height), grey = skip",
                 fontsize=8)
    return fig
