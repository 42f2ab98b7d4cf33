"""pareto.json: the searched net(s) next to the uniform QuadraNets of the same skeleton (every
layer the same kernel/expansion, at full and at half depth), each priced by the search's
profile (whole-network prediction) and counted in GFLOPs at the deployment size."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgedet.arch import Arch, load_arch, uniform_arch
from edgedet.io.atomic import write_json_atomic
from edgedet.models.complexity import count_flops
from edgedet.models.quadranet import build_from_arch
from edgedet.profiles import load_profile, predict_module
from edgedet.report.labels import predicted_label

KERNELS, EXPANSIONS = (3, 5, 7), (2, 4)


def _point(name: str, kind: str, arch: Arch, profile, val_acc: float | None) -> dict[str, Any]:
    net = build_from_arch(arch).eval()
    size = arch.input_size
    pred = predict_module(net, (1, 3, size, size), profile, allow_unknown=True)
    return {"name": name, "kind": kind, "profile": pred.profile.get("id"), "latency_ms": pred.latency_ms,
            "gflops": count_flops(net, size) / 1e9, "val_acc": val_acc,
            "latency_label": predicted_label(pred.profile)}


def write_pareto(path: Path, searched: list[tuple[str, Path, float | None]], profile_ref: str) -> None:
    """`searched`: (name, arch.json, trained val accuracy or None); all priced on `profile_ref`."""
    profile = load_profile(profile_ref)
    points = []
    first = load_arch(searched[0][1])
    widths, depths = first.widths, [len(s.layers) for s in first.stages]
    for name, arch_path, acc in searched:
        points.append(_point(name, "searched", load_arch(arch_path), profile, acc))
    for k in KERNELS:
        for e in EXPANSIONS:
            for frac, tag in ((1.0, ""), (0.5, "-half")):
                d = [max(1, round(x * frac)) for x in depths]
                a = uniform_arch(widths, d, kernel=k, expansion=e, input_size=first.input_size,
                                 num_classes=first.num_classes)
                points.append(_point(f"k{k}e{e}{tag}", "uniform", a, profile, None))
    write_json_atomic(path, {"schema_version": 1, "kind": "pareto", "points": points,
                             "note": f"Uniform QuadraNets of widths {widths} (depths {depths} and half); "
                                     "latency predicted by one profile for all, GFLOPs at the deployment size; "
                                     "val_acc only for the nets the quickstart trained."})
