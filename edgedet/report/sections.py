"""The report's sections as plain data: each is what one part of the page shows, drawn from
the run's JSON and written beside the page as report/<name>.json; the HTML and the plots
read only these dictionaries, so every number on the page is in those files."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgedet.report.labels import measured_label, predicted_label, profile_error
from edgedet.report.sources import RunInputs


@dataclass
class Section:
    """`rows`: table rows (dicts, same keys); `series`: what the plot draws; `missing`: why
    the section is empty (None when it has data); `sources`: run-relative input paths."""

    name: str
    title: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    series: dict[str, Any] = field(default_factory=dict)
    missing: str | None = None
    sources: list[str] = field(default_factory=list)
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"schema_version": 1, "name": self.name, "title": self.title, "missing": self.missing,
                "note": self.note, "sources": self.sources, "rows": self.rows, "series": self.series}


def _layer_label(layer: Any) -> str:
    return "skip" if layer == "skip" or layer is None else f"k{layer['kernel']}e{layer['expansion']}"


def search_section(run: RunInputs) -> Section:
    """α entropy, expected / argmax latency vs the budget, and accuracy per epoch."""
    sec = Section("search", "Search curves")
    if not run.searches:
        sec.missing = "no search.json in the run directory (run `edgedet search … --out RUN_DIR/…`)"
        return sec
    for s in run.searches:
        d = s.doc
        prof = (d.get("lut", {}).get("source") or {})
        hist = [{"epoch": h.get("epoch"), "phase": h.get("phase"), "alpha_entropy": h.get("alpha_entropy"),
                 "expected_latency_ms": h.get("expected_latency_ms"),
                 "argmax_latency_ms": h.get("argmax_latency_ms"), "train_acc": h.get("train_acc"),
                 "val_acc": h.get("val_acc_argmax") if h.get("val_acc_argmax") is not None
                 else h.get("val_acc_sampled")} for h in d.get("history", [])]
        sec.series[s.path] = {"device": d.get("device"), "budget_ms": d.get("budget_ms"), "history": hist,
                              "label": predicted_label(prof)}
        last = hist[-1] if hist else {}
        sec.rows.append({"search": s.path, "device": d.get("device"), "budget_ms": d.get("budget_ms"),
                         "skeleton": (d.get("skeleton") or {}).get("name"), "epochs": len(hist),
                         "predicted_latency_ms": d.get("predicted_latency_ms"),
                         "argmax_latency_ms": d.get("argmax_latency_ms"), "fit_moves": d.get("fit_moves"),
                         "final_alpha_entropy": last.get("alpha_entropy"), "final_val_acc": last.get("val_acc"),
                         "latency_label": predicted_label(prof)})
        sec.sources.append(s.path)
    sec.note = ("Latencies here are predicted by the search's profile (the LUT); α entropy is normalised "
                "(1 = uniform); val acc is the proxy task's (argmax net in the search phase, random paths "
                "in warm-up).")
    return sec


def architecture_section(run: RunInputs) -> Section:
    """Every arch.json drawn per stage: width, stride and each layer's kernel/expansion or skip."""
    sec = Section("architecture", "Architectures (per stage: kernel k, expansion e, skip)")
    if not run.archs:
        sec.missing = "no arch.json in the run directory"
        return sec
    for a in run.archs:
        d = a.doc
        stages = [{"width": st["width"], "stride": st["stride"],
                   "layers": [_layer_label(x) for x in st["layers"]]} for st in d.get("stages", [])]
        prof = d.get("profile") or {}
        sec.series[a.path] = {"stages": stages, "device": d.get("device"), "budget_ms": d.get("budget_ms")}
        sec.rows.append({"arch": a.path, "device": d.get("device"), "budget_ms": d.get("budget_ms"),
                         "predicted_latency_ms": d.get("predicted_latency_ms"),
                         "latency_label": predicted_label(prof) if prof else "",
                         "stages": " | ".join(" ".join(st["layers"]) for st in stages)})
        sec.sources.append(a.path)
    return sec


def _bench_rows(run: RunInputs) -> list[dict[str, Any]]:
    rows = []
    for b in run.benches:
        d = b.doc
        man = (d.get("settings", {}).get("model") or {}).get("manifest") or {}
        for r in d.get("results", []):
            lat = r.get("latency_ms") or {}
            rows.append({"bench": b.path, "runtime": d["runtime"].get("name"),
                         "format": man.get("format"), "target": man.get("target"),
                         "model": man.get("source_model") or d["settings"].get("target"),
                         "model_sha256": (d["settings"].get("model") or {}).get("sha256"),
                         "batch": r.get("batch"), "threads": d["settings"].get("threads"),
                         "precision": d["settings"].get("precision"),
                         "input_size": d["settings"].get("input_size") or _input_side(r),
                         **{f"{k}_ms": lat.get(k) for k in ("min", "median", "p90", "p95", "p99", "max")},
                         "throughput_items_per_s": r.get("throughput_items_per_s"),
                         "peak_memory_mib": r.get("peak_memory_mib"), "iterations": r.get("iterations"),
                         "latency_label": measured_label(d, r)})
    return rows


def _input_side(result: dict[str, Any]) -> int | None:
    """The square H=W of the first 4-d input the bench bound (what a static model was run at)."""
    for shape in (result.get("inputs") or {}).values():
        if isinstance(shape, list) and len(shape) == 4 and shape[2] == shape[3]:
            return shape[2]
    return None


def latency_section(run: RunInputs) -> Section:
    """Measured latency per runtime (median; whiskers min and p99), throughput, peak memory."""
    sec = Section("latency", "Measured latency per runtime")
    if not run.benches:
        sec.missing = "no bench result JSON (run `edgedet bench ARTIFACT --runtime … --json RUN_DIR/…`)"
        return sec
    sec.rows = _bench_rows(run)
    sec.sources = [b.path for b in run.benches]
    sec.note = "Bars: median; whiskers: min and p99 of the measured inferences."
    return sec


def exports_section(run: RunInputs) -> Section:
    """Each artifact: format, target, precision, parity verdict and worst error, custom ops."""
    sec = Section("exports", "Exported artifacts (parity vs PyTorch)")
    if not run.manifests:
        sec.missing = "no export manifest.json (run `edgedet export … --out RUN_DIR/…`)"
        return sec
    for m in run.manifests:
        d = m.doc
        par = d.get("parity") or {}
        size = sum(int(f.get("bytes", 0)) for f in (d.get("files") or {}).values())
        sec.rows.append({"artifact": str(Path(m.path).parent), "format": d.get("format"),
                         "target": d.get("target"), "precision": d.get("precision"),
                         "model": (d.get("source") or {}).get("model"),
                         "input_size": (d.get("source") or {}).get("input_size"),
                         "parity_runtime": par.get("runtime"), "parity_passed": par.get("passed"),
                         "max_abs_err": par.get("max_abs_err"), "atol": par.get("atol"), "rtol": par.get("rtol"),
                         "custom_ops": _custom_ops(d),
                         "size_mib": size / 2**20})
        sec.sources.append(m.path)
    return sec


def _custom_ops(manifest: dict) -> str:
    """How each custom op reached the runtime ("edgedet.QuadraConv: OpenVINO CPU extension (…)"),
    or "none": a fused kernel is not listed in `custom_ops` (that names ops left in the graph)."""
    converted = manifest.get("custom_ops_converted") or {}
    ops = list(dict.fromkeys([*(manifest.get("custom_ops") or []), *converted]))
    return "; ".join(f"{op}: {converted[op]}" if op in converted else op for op in ops) or "none"


def _prediction_rows(run: RunInputs) -> list[dict[str, Any]]:
    rows = []
    for p in run.predictions:
        d = p.doc
        prof = d.get("profile") or {}
        mape, _ = profile_error(prof)
        shape = d.get("input_shape") or []
        rows.append({"prediction": p.path, "model": d.get("model"), "profile": prof.get("id"),
                     "profile_kind": prof.get("kind"), "batch": d.get("batch", shape[0] if shape else None),
                     "input_size": d.get("input_size", shape[2] if len(shape) == 4 else None),
                     "latency_ms": d.get("latency_ms"), "mape": mape,
                     "unknown_ops_priced_0ms": ", ".join(d.get("unknown_ops") or []) or "none",
                     "runtime": (prof.get("runtime") or {}).get("name")
                     if isinstance(prof.get("runtime"), dict) else prof.get("runtime"),
                     "latency_label": predicted_label(prof)})
    return rows


def predictions_section(run: RunInputs) -> Section:
    """Every prediction with its profile and that profile's calibration error (error bars ± MAPE)."""
    sec = Section("predictions", "Predicted latency per device profile")
    if not run.predictions:
        sec.missing = "no predict JSON (run `edgedet predict … --device PROFILE --json RUN_DIR/…`)"
        return sec
    sec.rows = _prediction_rows(run)
    sec.sources = [p.path for p in run.predictions]
    sec.note = "Error bars: ± the profile's calibration MAPE (none where the profile does not state one)."
    return sec


def _same_model(pred: dict[str, Any], bench: dict[str, Any]) -> bool:
    return (pred["model"] is not None and pred["model"] == bench["model"]
            and pred["batch"] == bench["batch"] and pred["input_size"] == bench["input_size"])


def predicted_vs_measured_section(run: RunInputs) -> Section:
    """Pairs of (prediction on a profile measured on some machine, a bench of the same model on
    the same runtime family, batch and input size); error = predicted / measured − 1."""
    sec = Section("predicted_vs_measured", "Predicted vs measured on this machine")
    preds = [p for p in _prediction_rows(run) if p["profile_kind"] != "predicted"]
    benches = _bench_rows(run)
    for p in preds:
        for b in benches:
            rt_match = (p["runtime"] or "").lower().startswith((b["runtime"] or "?").lower())
            if rt_match and _same_model(p, b):
                err = p["latency_ms"] / b["median_ms"] - 1 if b["median_ms"] else None
                sec.rows.append({"model": p["model"], "runtime": b["runtime"], "batch": b["batch"],
                                 "predicted_ms": p["latency_ms"], "measured_median_ms": b["median_ms"],
                                 "error": err, "profile": p["profile"], "profile_mape": p["mape"],
                                 "predicted_label": p["latency_label"], "measured_label": b["latency_label"],
                                 "prediction": p["prediction"], "bench": b["bench"]})
                sec.sources += [p["prediction"], b["bench"]]
    sec.sources = sorted(set(sec.sources))
    if not sec.rows:
        sec.missing = ("no prediction on a measured profile of this machine matches a bench of the same model, "
                       "runtime, batch and input size (run `edgedet profile`, then `edgedet predict --device "
                       "THAT_PROFILE.json --json …` for a benched model)")
    return sec


def pareto_section(run: RunInputs) -> Section:
    """Searched net(s) against the uniform QuadraNets: predicted latency vs GFLOPs (and accuracy
    where trained), from pareto.json."""
    sec = Section("pareto", "Pareto view: searched vs uniform QuadraNets")
    if not run.paretos:
        sec.missing = "no pareto.json (written by `edgedet quickstart`)"
        return sec
    for p in run.paretos:
        for pt in p.doc["points"]:
            sec.rows.append({**pt, "pareto": p.path})
        sec.sources.append(p.path)
    sec.note = run.paretos[0].doc.get("note", "")
    return sec


def training_section(run: RunInputs) -> Section:
    sec = Section("training", "Training on the synthetic data (accuracy vs chance)")
    if not run.trainings:
        sec.missing = "no training metrics.json"
        return sec
    for t in run.trainings:
        d = t.doc
        sec.rows.append({"metrics": t.path, "model": d.get("model"), "epochs": d.get("epochs_done"),
                         "final_val_acc": d.get("final_val_acc"), "chance_acc": d.get("chance_acc"),
                         "times_chance": (d["final_val_acc"] / d["chance_acc"]) if d.get("chance_acc") else None,
                         "wall_time_s": d.get("wall_time_s"), "threads": d.get("threads")})
        sec.sources.append(t.path)
    return sec


BUILDERS = (search_section, architecture_section, training_section, exports_section, latency_section,
            predictions_section, predicted_vs_measured_section, pareto_section)


def build_sections(run: RunInputs) -> list[Section]:
    return [b(run) for b in BUILDERS]

