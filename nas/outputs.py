"""What a search leaves in its output folder: arch.json (the contract), search.json (the
history) and the PNG plots. Only rank 0 calls these."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgedet.arch import SCHEMA_VERSION, Arch
from edgedet.io.atomic import write_json_atomic
from edgedet.nas.lut import LatencyTable
from edgedet.nas.plots import plot_search  # matplotlib itself is imported only when plotting
from edgedet.nas.search import SearchResult
from edgedet.nas.space import SearchSpace


def result_arch(space: SearchSpace, result: SearchResult, lut: LatencyTable, device: str,
                budget_ms: float, profile: dict[str, Any], proxy_input_size: int,
                whole_net_ms: float | None = None) -> Arch:
    """The derived architecture as arch.json; its predicted latency is the LUT sum (and the
    whole-network prediction is recorded next to it when it was made)."""
    search = {
        "proxy_input_size": proxy_input_size,
        "seed": result.config.get("seed"),
        "loss": result.config.get("loss"),
        "epochs": result.config.get("epochs"),
        "argmax_latency_ms": result.argmax_latency_ms,
        "repair_moves": len(result.repair),
        "argmax_in_band": argmax_in_band(result, budget_ms),
        "lut_fixed_ms": lut.fixed_ms,
    }
    if whole_net_ms is not None:
        search["whole_network_predicted_ms"] = whole_net_ms
    return space.arch_from_indices(
        result.indices, device=device, budget_ms=budget_ms, predicted_latency_ms=result.latency_ms,
        profile=profile, extra={"skeleton": space.describe(), "search": search},
    )


def search_json(space: SearchSpace, result: SearchResult, lut: LatencyTable, arch: Arch,
                extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "device": arch.device,
        "budget_ms": arch.budget_ms,
        "predicted_latency_ms": arch.predicted_latency_ms,
        "argmax_latency_ms": result.argmax_latency_ms,
        "argmax_indices": result.argmax_indices,
        "indices": result.indices,
        "repair": result.repair,
        "fit_moves": len(result.repair),
        "argmax_in_band": argmax_in_band(result, arch.budget_ms),
        "skeleton": space.describe(),
        "choices": [[_label(c) for c in row] for row in space.all_choices()],
        "lut": lut.to_json(),
        "config": result.config,
        "final_probs": result.probs,
        "history": result.history,
        **(extra or {}),
    }


def argmax_in_band(result: SearchResult, budget_ms: float) -> bool:
    """Whether the search itself (argmax, before any fitting) landed in [fit_low·B, B]."""
    low = result.config.get("fit_low", 0.85)
    return bool(low * budget_ms <= result.argmax_latency_ms <= budget_ms)


def _label(c) -> str:
    return "skip" if c is None else f"k{c.kernel}e{c.expansion}"


def write_outputs(out_dir: str | Path, space: SearchSpace, result: SearchResult, lut: LatencyTable,
                  arch: Arch, extra: dict[str, Any] | None = None, plots: bool = True) -> list[Path]:
    out = Path(out_dir)
    arch.save(out / "arch.json")
    write_json_atomic(out / "search.json", search_json(space, result, lut, arch, extra))
    written = [out / "arch.json", out / "search.json"]
    if plots:
        written += plot_search(out, space, result, lut, arch)
    return written
