"""`edgedet reproduce memory`: the QuadraNet paper's activation-memory table.

For each block kind (skip, conv, swin, hor, quadra with plain autograd, quadra with the
memory-saving autograd Function) a stack — stem (4×4 stride-4 conv + LN) then N blocks of
width W — runs one training step (forward + backward of mean(y²)) in a FRESH child
process, which reports
  (a) the bytes autograd saves for backward over that forward: every tensor packed through
      `torch.autograd.graph.saved_tensors_hooks`, de-duplicated by storage, parameters
      (and views of them) excluded; and
  (b) the peak RSS of the step: `ru_maxrss` at the end minus the process's RSS just before
      the model was built (so torch's own import footprint is not counted; parameters,
      gradients, the input and the allocator's scratch are).
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict, dataclass, field

from edgedet.errors import EdgedetError
from edgedet.models.baselines import make_block
from edgedet.models.layers import LayerNorm2d

SCHEMA_VERSION = 1
KINDS = ("skip", "conv", "swin", "hor", "quadra", "quadra-saving")


@dataclass
class SavedStats:
    """What one forward pass saved for backward (parameters excluded)."""

    saved_bytes: int  # unique storages, whole stack (stem and input included)
    saved_tensors: int  # unique saved activation tensors, whole stack
    tensors_per_block: float  # mean over blocks of the tensors first saved inside a block
    bytes_per_block: float  # mean over blocks of the storage bytes first saved inside a block
    per_block_tensors: list[int] = field(default_factory=list)


def build_stack(kind: str, width: int, blocks: int, in_chans: int = 3):
    """Stem (4×4 stride-4 conv + LayerNorm) followed by `blocks` blocks of one kind."""
    from torch import nn

    stem = nn.Sequential(nn.Conv2d(in_chans, width, 4, stride=4), LayerNorm2d(width, eps=1e-6))
    return nn.Sequential(stem, *[make_block(kind, width, i) for i in range(blocks)])


def count_saved(model, x) -> SavedStats:
    """Run model(x) once under saved-tensor hooks and count what autograd keeps."""
    import torch

    param_storages = {p.untyped_storage().data_ptr() for p in model.parameters()}
    current = [-1]  # index of the block running now; -1 = stem / outside blocks
    hooks = []
    for i, block in enumerate(list(model.children())[1:]):
        hooks.append(block.register_forward_pre_hook(lambda _m, _a, i=i: current.__setitem__(0, i)))
    storages: dict[int, tuple[int, int]] = {}  # storage ptr → (bytes, block that first saved it)
    tensors: dict[tuple, int] = {}  # (ptr, offset, shape, stride) → block

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        ptr = s.data_ptr()
        if ptr in param_storages:
            return t
        storages.setdefault(ptr, (s.nbytes(), current[0]))
        tensors.setdefault((ptr, t.storage_offset(), tuple(t.shape), t.stride()), current[0])
        return t

    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            y = model(x)
    finally:
        for h in hooks:
            h.remove()
    del y
    n_blocks = len(list(model.children())) - 1
    per_block = [0] * n_blocks
    for blk in tensors.values():
        if blk >= 0:
            per_block[blk] += 1
    block_bytes = sum(b for b, blk in storages.values() if blk >= 0)
    return SavedStats(
        saved_bytes=sum(b for b, _ in storages.values()),
        saved_tensors=len(tensors),
        tensors_per_block=sum(per_block) / max(n_blocks, 1),
        bytes_per_block=block_bytes / max(n_blocks, 1),
        per_block_tensors=per_block,
    )


def _child(args: dict) -> dict:
    """One fresh process: baseline RSS, build, count saved tensors, one training step, peak."""
    import resource

    import psutil
    import torch

    torch.set_num_threads(args["threads"])
    baseline = psutil.Process().memory_info().rss
    torch.manual_seed(0)
    model = build_stack(args["kind"], args["width"], args["blocks"])
    x = torch.randn(args["batch"], 3, args["resolution"], args["resolution"])
    stats = count_saved(model, x)  # its own forward; the graph is freed again
    loss = model(x).pow(2).mean()
    loss.backward()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    return {**asdict(stats), "baseline_rss_bytes": baseline, "child_maxrss_bytes": peak,
            "peak_rss_bytes": max(0, peak - baseline)}


def measure(kind: str, width: int, resolution: int, batch: int, blocks: int, threads: int) -> dict:
    """One row of the table, measured in a fresh child process."""
    args = {"kind": kind, "width": width, "resolution": resolution, "batch": batch, "blocks": blocks,
            "threads": threads}
    proc = subprocess.run([sys.executable, "-m", "edgedet.bench.reproduce.memory", json.dumps(args)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        why = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
        if proc.returncode < 0:
            why = f"killed by signal {-proc.returncode} (out of memory?)"
        raise EdgedetError(f"memory run for {kind} at width {width} failed: {why}")
    child = json.loads(proc.stdout.strip().splitlines()[-1])
    child.pop("per_block_tensors", None)
    return {"schema_version": SCHEMA_VERSION, "block": kind, "width": width, "resolution": resolution,
            "map_size": resolution // 4, "batch": batch, "blocks": blocks, "threads": threads,
            "saved_bytes": child.pop("saved_bytes"), "peak_rss_bytes": child.pop("peak_rss_bytes"), **child}


def _parse_widths(text: str) -> list[int]:
    try:
        widths = [int(w) for w in text.split(",") if w.strip()]
    except ValueError:
        raise EdgedetError(f"--widths must be comma-separated integers, got {text!r}") from None
    if not widths or any(w <= 0 or w % 4 for w in widths):
        raise EdgedetError(f"--widths must be positive multiples of 4 (HorBlock splits C into C/4, C/2, C), "
                           f"got {text!r}")
    return widths


def run(resolution: int, batch: int, blocks: int, widths: list[int], threads: int, kinds=KINDS) -> list[dict]:
    from rich.progress import Progress

    rows = []
    with Progress(transient=True) as progress:
        task = progress.add_task("memory table", total=len(widths) * len(kinds))
        for w in widths:
            for kind in kinds:
                progress.update(task, description=f"{kind} @ width {w}")
                rows.append(measure(kind, w, resolution, batch, blocks, threads))
                progress.advance(task)
    return rows


def print_table(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    mib = 2.0**20
    for w in sorted({r["width"] for r in rows}):
        sub = {r["block"]: r for r in rows if r["width"] == w}
        r0 = next(iter(sub.values()))
        t = Table(title=f"{r0['blocks']} blocks, width {w}, batch {r0['batch']}, input {r0['resolution']}² "
                        f"(block maps {r0['map_size']}²), {r0['threads']} thread(s)")
        for col in ("block", "saved MiB", "×conv", "×swin", "tensors/blk", "MiB/blk",
                    "RSS MiB", "×conv", "×swin"):
            t.add_column(col, justify="left" if col == "block" else "right")
        for kind, r in sub.items():
            t.add_row(kind, f"{r['saved_bytes'] / mib:.1f}", _ratio(r, sub.get("conv"), "saved_bytes"),
                      _ratio(r, sub.get("swin"), "saved_bytes"), f"{r['tensors_per_block']:.1f}",
                      f"{r['bytes_per_block'] / mib:.2f}", f"{r['peak_rss_bytes'] / mib:.1f}",
                      _ratio(r, sub.get("conv"), "peak_rss_bytes"),
                      _ratio(r, sub.get("swin"), "peak_rss_bytes"))
        console.print(t)
        _print_claims(console, sub)
    console.print("saved = unique storages packed by torch.autograd.graph.saved_tensors_hooks over one "
                  "forward, "
                  "parameters excluded; peak RSS = ru_maxrss of a fresh process after one forward+backward "
                  "minus its RSS before building the model (see docs/memory.md)")


def _ratio(r: dict, ref: dict | None, key: str) -> str:
    return f"{r[key] / ref[key]:.2f}" if ref and ref[key] else "–"


def _print_claims(console, sub: dict[str, dict]) -> None:
    """The issue's acceptance checks, as measured in this run."""
    qs, q, conv, swin = (sub.get(k) for k in ("quadra-saving", "quadra", "conv", "swin"))
    if qs and conv:
        v = qs["saved_bytes"] / conv["saved_bytes"]
        ok = "yes" if v <= 1.3 else "NO"
        console.print(f"  quadra-saving / conv saved bytes = {v:.2f} (claim ≤ 1.3: {ok})")
    if qs and swin:
        v = qs["saved_bytes"] / swin["saved_bytes"]
        ok = "yes" if v <= 0.7 else "NO"
        console.print(f"  quadra-saving / swin saved bytes = {v:.2f} (claim ≤ 0.7: {ok})")
    if qs and q:
        d = q["tensors_per_block"] - qs["tensors_per_block"]
        console.print(f"  quadra saves {d:.1f} more tensors per block than quadra-saving "
                      f"(claim ≥ 2: {'yes' if d >= 2 else 'NO'})")




if __name__ == "__main__":
    print(json.dumps(_child(json.loads(sys.argv[1]))))
