"""`edgedet reproduce asag-speed`: ASAG's claim that one decoder layer (with adaptive
sparse anchors and training-time parallel auxiliary decoders) is nearly as accurate as the
same detector with six cascaded decoder layers, and faster.

Both variants (QuadraNet25-xxs backbone, CPU preset) are trained for the same wall-clock
budget on the synthetic detection set with the same data order, evaluated with COCO mAP
(pycocotools) on its validation split, then timed side by side (interleaved rounds, eager
PyTorch, batch 1, dynamic mode) on this CPU. The machine may be shared with other jobs:
latencies are medians of interleaved rounds and the JSON records the load average.
"""

from __future__ import annotations

import math
import os
import random
import statistics
import time
from dataclasses import asdict, dataclass

from edgedet.data.coco import collate
from edgedet.errors import EdgedetError
from edgedet.models import create
from edgedet.training.coco_eval import evaluate
from edgedet.training.config import TrainConfig
from edgedet.training.detection import load_datasets, param_groups

SCHEMA_VERSION = 1


@dataclass
class VariantResult:
    decoder_layers: int
    aux_decoders: int
    params_m: float
    train_minutes: float
    train_steps: int
    images_seen: int
    AP: float | None = None
    AP50: float | None = None
    AP_small: float | None = None
    latency_ms_median: float | None = None
    latency_ms_p90: float | None = None
    anchors_per_image: float | None = None


def build(num_classes: int, layers: int, backbone: str = "quadranet25-xxs", preset: str = "cpu"):
    aux = 3 if layers == 1 else 0  # the six-layer cascade supervises its own intermediate layers
    return create(
        f"asag-{backbone}",
        num_classes=num_classes,
        preset=preset,
        num_decoder_layers=layers,
        num_aux_decoders=aux,
    )


def datasets(img_size: int, train_size: int, val_size: int, seed: int = 0):
    cfg = TrainConfig(
        model="asag",
        data="synthetic-det",
        img_size=img_size,
        train_size=train_size,
        val_size=val_size,
        seed=seed,
    )
    return load_datasets(cfg)


def train_for(
    model, train_ds, minutes: float, batch_size: int = 8, lr: float = 2e-4, seed: int = 0, log=print
) -> tuple[int, int]:
    """Train `model` for a wall-clock budget (cosine LR over the budget); forward gets the
    targets (ASAG adds ground-truth patches on the probed levels while training).
    Returns (steps, images seen)."""
    import torch

    random.seed(seed)
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(param_groups(model, 1e-4), lr=lr)
    t0 = time.perf_counter()
    budget = 60.0 * minutes
    step, seen, epoch = 0, 0, 0
    model.train()
    while True:
        order = torch.randperm(
            len(train_ds), generator=torch.Generator().manual_seed(seed * 1000 + epoch)
        ).tolist()
        for b in range(len(order) // batch_size):
            frac = (time.perf_counter() - t0) / budget
            if frac >= 1.0:
                return step, seen
            warm = min(1.0, (step + 1) / 50)
            for g in opt.param_groups:
                g["lr"] = lr * warm * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * frac)))
            images, masks, targets = collate(
                [train_ds[i] for i in order[b * batch_size : (b + 1) * batch_size]]
            )
            losses = model.loss(model(images, masks, targets), targets)
            loss = losses["loss"]
            if not math.isfinite(loss.item()):
                raise EdgedetError(f"ASAG loss became {loss.item()} at step {step}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            seen += len(targets)
            if step % 20 == 0:
                log(f"  step {step} epoch {epoch} loss {loss.item():.3f} [{time.perf_counter() - t0:.0f} s]")
        epoch += 1


def latency_side_by_side(models: dict[int, object], img_size: int, rounds: int = 7, reps: int = 5) -> dict:
    """Median / p90 latency (ms) per model, batch 1, eval, dynamic mode; rounds interleave the
    models so load changes hit all of them alike."""
    import torch

    x = torch.randn(1, 3, img_size, img_size)
    times: dict[int, list[float]] = {k: [] for k in models}
    with torch.no_grad():
        for m in models.values():
            m.eval()
            m(x)  # warm-up
        for _ in range(rounds):
            for k, m in models.items():
                for _ in range(reps):
                    t = time.perf_counter()
                    m(x)
                    times[k].append(1000 * (time.perf_counter() - t))
    out = {}
    for k, ts in times.items():
        ts = sorted(ts)
        out[k] = {"median": statistics.median(ts), "p90": ts[min(len(ts) - 1, int(0.9 * len(ts)))]}
    return out


def anchors_per_image(model, val_ds, n: int = 32) -> float:
    import torch

    model.eval()
    total = 0
    with torch.no_grad():
        for start in range(0, min(n, len(val_ds)), 8):
            images, masks, _ = collate([val_ds[i] for i in range(start, min(n, start + 8))])
            total += int(model(images, masks)["valid"].sum())
    return total / min(n, len(val_ds))


def run(
    minutes: float,
    threads: int,
    img_size: int,
    layers: list[int],
    batch_size: int,
    train_size: int,
    val_size: int,
    latency_only: bool = False,
    log=print,
) -> dict:
    import torch

    torch.set_num_threads(threads)
    train_ds, val_ds = datasets(img_size, train_size, val_size)
    models, rows = {}, {}
    for n in layers:
        torch.manual_seed(0)
        model = build(train_ds.num_classes, n)
        steps = seen = 0
        if not latency_only:
            log(f"training ASAG with {n} decoder layer(s) for {minutes} min on {threads} thread(s)")
            steps, seen = train_for(model, train_ds, minutes, batch_size, log=log)
        row = VariantResult(
            n,
            len(model.aux_decoders),
            sum(p.numel() for p in model.parameters()) / 1e6,
            minutes if not latency_only else 0.0,
            steps,
            seen,
        )
        if not latency_only:
            m = evaluate(model, val_ds, batch_size=8)
            row.AP, row.AP50, row.AP_small = m["AP"], m["AP50"], m["AP_small"]
            row.anchors_per_image = anchors_per_image(model, val_ds)
            log(f"  AP {row.AP:.3f}  AP50 {row.AP50:.3f}  AP_small {row.AP_small:.3f}")
        models[n], rows[n] = model, row
    lat = latency_side_by_side(models, img_size)
    for n, v in lat.items():
        rows[n].latency_ms_median, rows[n].latency_ms_p90 = v["median"], v["p90"]
    return {
        "schema_version": SCHEMA_VERSION,
        "suite": "asag-speed",
        "latency": {
            "kind": "measured",
            "device": "this CPU",
            "runtime": "PyTorch eager (dynamic mode)",
            "threads": threads,
            "batch": 1,
            "image": [img_size, img_size],
            "load_average_1m": os.getloadavg()[0],
        },
        "data": {"set": "synthetic-det", "img_size": img_size, "train": len(train_ds), "val": len(val_ds)},
        "variants": [asdict(r) for r in rows.values()],
    }


def print_table(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="ASAG: one decoder layer vs six (measured on this CPU, eager, batch 1)")
    for c in (
        "decoder layers",
        "aux",
        "params (M)",
        "train min",
        "steps",
        "AP",
        "AP50",
        "AP_small",
        "anchors/img",
        "latency median (ms)",
        "p90 (ms)",
    ):
        t.add_column(c, justify="right")

    def f(v, p=3):
        return "-" if v is None else f"{v:.{p}f}"

    for r in result["variants"]:
        t.add_row(
            str(r["decoder_layers"]),
            str(r["aux_decoders"]),
            f(r["params_m"], 2),
            f(r["train_minutes"], 1),
            str(r["train_steps"]),
            f(r["AP"]),
            f(r["AP50"]),
            f(r["AP_small"]),
            f(r["anchors_per_image"], 1),
            f(r["latency_ms_median"], 1),
            f(r["latency_ms_p90"], 1),
        )
    Console().print(t)
    v = {r["decoder_layers"]: r for r in result["variants"]}
    if 1 in v and 6 in v and v[1]["latency_ms_median"] and v[6]["latency_ms_median"]:
        print(
            f"six layers / one layer latency: {v[6]['latency_ms_median'] / v[1]['latency_ms_median']:.2f}x "
            f"(threads {result['latency']['threads']}, "
            f"load average {result['latency']['load_average_1m']:.1f})"
        )
