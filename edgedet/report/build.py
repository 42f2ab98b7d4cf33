"""Build RUN_DIR's report: load its outputs, make the sections, write report/<section>.json
and the page (each file written atomically, the page last)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgedet.io.atomic import atomic_output, write_json_atomic
from edgedet.report import html
from edgedet.report.plots import section_images
from edgedet.report.sections import build_sections
from edgedet.report.sources import load_run


@dataclass
class ReportResult:
    html_path: Path
    json_paths: list[Path]
    images: int
    missing: list[str]  # names of the sections without data


def build_report(run_dir: str | Path, out: str | Path | None = None) -> ReportResult:
    """report.html (default RUN_DIR/report.html) and RUN_DIR/report/<section>.json."""
    run = load_run(run_dir)
    root = Path(run_dir)
    out_path = Path(out) if out is not None else root / "report.html"
    sections = build_sections(run)
    drawn = [(s, section_images(s)) for s in sections]
    json_paths = []
    for s in sections:
        p = root / "report" / f"{s.name}.json"
        p.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(p, s.to_json())
        json_paths.append(p)
    header = [f"Run directory: {root.resolve()}",
              "Every latency is labelled measured (device, runtime, threads, batch, precision) or predicted "
              "(profile, its calibration error). Each section's numbers are in report/<section>.json beside "
              "this page."]
    text = html.page("edgedet report", header, drawn)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(out_path) as tmp:
        tmp.write_text(text)
    return ReportResult(out_path, json_paths, sum(len(i) for _, i in drawn),
                        [s.name for s in sections if s.missing])
