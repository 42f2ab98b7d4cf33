"""`edgedet reproduce boxrpb`: the cost of BoxRPB's axial decomposition (Plain-DETR).

Three parts, printed side by side and saved as JSON:
  1. analytic FLOPs and held activations of the bias at the paper's setting (300 queries,
     8 heads, hidden 512, an 800×1333 image at stride 16 → 50×84), decomposed vs naive
     (`edgedet.models.boxrpb.boxrpb_cost`; the formulas are in its docstring);
  2. measured at a reduced size that fits this machine (batch 1, fewer queries, a smaller
     image): matmul FLOPs counted by torch's FlopCounterMode, bytes autograd saves for
     backward (saved_tensors_hooks, unique storages, parameters excluded) and the peak RSS
     of one forward+backward in a fresh child process, for naive vs decomposed;
  3. runtime on this CPU of the BoxRPB cross-attention vs the same cross-attention with no
     bias at all (and the naive form), interleaved repeats, medians.
The paper's figures (9.5 G vs 26.8 G memory, 5.8 vs 265.4 GFLOPs) are whole-training
numbers for its full setting; ours isolate the bias, so compare ratios, not absolutes.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from edgedet.errors import EdgedetError
from edgedet.models.boxrpb import BoxRPBCrossAttention, boxrpb_cost, naive_boxrpb_attention

SCHEMA_VERSION = 1
PAPER = {"memory_gb": {"decomposed": 9.5, "naive": 26.8}, "gflops": {"decomposed": 5.8, "naive": 265.4}}


def _inputs(batch: int, queries: int, h: int, w: int, dim: int, seed: int = 0):
    import torch

    g = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, queries, dim, generator=g)
    boxes = torch.cat([torch.rand(batch, queries, 2, generator=g) * 0.8 + 0.1,
                       torch.rand(batch, queries, 2, generator=g) * 0.4 + 0.05], -1)
    mem = torch.randn(batch, h * w, dim, generator=g)
    return q, boxes, mem


def _forms(attn):
    """name → callable(q, boxes, mem, hw) for decomposed, naive and no-bias attention."""

    def no_bias(q, boxes, mem, hw):
        b, nq, c = q.shape
        qh = attn._heads(attn.q(q)) * attn.scale
        k, v = attn._heads(attn.k(mem)), attn._heads(attn.v(mem))
        return attn.proj(((qh @ k.transpose(-2, -1)).softmax(-1) @ v).transpose(1, 2).reshape(b, nq, c))

    return {"decomposed": lambda q, b_, m, hw: attn(q, b_, m, m, hw),
            "naive": lambda q, b_, m, hw: naive_boxrpb_attention(attn, q, b_, m, m, hw),
            "no_bias": no_bias}


def saved_bytes(fn, params) -> int:
    """Bytes autograd keeps for backward during fn() (unique storages, parameters excluded)."""
    import torch

    skip = {p.untyped_storage().data_ptr() for p in params}
    seen: dict[int, int] = {}

    def pack(t):
        s = t.untyped_storage()
        if s.data_ptr() not in skip:
            seen[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())


def matmul_flops(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def _child_peak(args: dict) -> dict:
    """In a fresh process: peak RSS growth of one forward+backward of one form (VmHWM, the
    process's own high-water mark, minus the RSS after imports)."""
    import psutil
    import torch

    torch.set_num_threads(args["threads"])
    base = psutil.Process().memory_info().rss
    torch.manual_seed(0)
    attn = BoxRPBCrossAttention(args["dim"], args["heads"], args["hidden"])
    q, boxes, mem = _inputs(1, args["queries"], args["h"], args["w"], args["dim"])
    q.requires_grad_(True)
    out = _forms(attn)[args["form"]](q, boxes, mem, (args["h"], args["w"]))
    out.square().mean().backward()
    return {"peak_rss_bytes": max(0, _vm_hwm() - base)}


def _vm_hwm() -> int:
    """Peak resident set size of this process in bytes (Linux /proc; 0 elsewhere). Unlike
    ru_maxrss it is not inherited from the parent across exec."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def child_peak(form: str, **kw) -> int:
    args = json.dumps({"form": form, **kw})
    code = ("import json,sys; from edgedet.bench.reproduce.boxrpb import _child_peak; "
            "print(json.dumps(_child_peak(json.loads(sys.argv[1]))))")
    r = subprocess.run([sys.executable, "-c", code, args], capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        raise EdgedetError(f"boxrpb child ({form}) failed: {r.stderr.strip().splitlines()[-1:]}")
    return int(json.loads(r.stdout.strip().splitlines()[-1])["peak_rss_bytes"])


def measure(queries: int, height: int, width: int, heads: int, hidden: int, dim: int, threads: int,
            repeats: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    attn = BoxRPBCrossAttention(dim, heads, hidden)
    forms = _forms(attn)
    hw = (height, width)
    q, boxes, mem = _inputs(1, queries, height, width, dim)
    res: dict = {"analytic": boxrpb_cost(queries, heads, height, width, hidden, dim)}
    for name, fn in forms.items():
        qq = q.clone().requires_grad_(True)
        res.setdefault("saved_bytes", {})[name] = saved_bytes(lambda fn=fn, qq=qq: fn(qq, boxes, mem, hw),
                                                              attn.parameters())
        with torch.no_grad():
            res.setdefault("matmul_flops", {})[name] = matmul_flops(lambda fn=fn: fn(q, boxes, mem, hw))
    for name in forms:
        res.setdefault("peak_rss_bytes", {})[name] = child_peak(name, queries=queries, h=height, w=width,
                                                                heads=heads, hidden=hidden, dim=dim,
                                                                threads=threads)
    times: dict[str, dict[str, list[float]]] = {n: {"forward": [], "train_step": []} for n in forms}
    for fn in forms.values():  # warm-up
        with torch.no_grad():
            fn(q, boxes, mem, hw)
    for _ in range(repeats):
        for name, fn in forms.items():  # interleaved so load changes hit every form alike
            with torch.no_grad():
                t = time.perf_counter()
                fn(q, boxes, mem, hw)
                times[name]["forward"].append(time.perf_counter() - t)
            qq = q.clone().requires_grad_(True)
            t = time.perf_counter()
            fn(qq, boxes, mem, hw).square().mean().backward()
            times[name]["train_step"].append(time.perf_counter() - t)
            attn.zero_grad(set_to_none=True)
    res["latency_ms"] = {n: {k: 1e3 * statistics.median(v) for k, v in d.items()} for n, d in times.items()}
    res["latency_note"] = (f"measured: this CPU, PyTorch eager, {threads} thread(s), batch 1, median of "
                           f"{repeats} interleaved repeats; machine may be shared")
    return res




def _print(con, paper: dict, m: dict, queries: int, image: tuple[int, int], fmap: tuple[int, int]) -> None:
    from rich.table import Table

    t = Table(title="BoxRPB bias, analytic, paper setting "
                    "(300 queries, 8 heads, hidden 512, 50×84 map, one layer)")
    for c in ("form", "GFLOPs", "held activations (GB, fp32)"):
        t.add_column(c, justify="right")
    for f in ("decomposed", "naive"):
        t.add_row(f, f"{paper[f]['flops'] / 1e9:.2f}", f"{paper[f]['memory'] / 1e9:.3f}")
    t.add_row("naive / decomposed", f"{paper['ratio']['flops']:.1f}×", f"{paper['ratio']['memory']:.1f}×")
    t.add_row("paper (whole model)", "5.8 vs 265.4 (45.8×)", "9.5 vs 26.8 (2.8×)")
    con.print(t)
    t = Table(title=f"measured, batch 1, {queries} queries, {image[0]}×{image[1]} image "
                    f"({fmap[0]}×{fmap[1]} map), 8 heads, hidden 512")
    for c in ("form", "matmul GFLOPs", "saved for bwd (MB)", "peak RSS (MB)", "fwd ms", "fwd+bwd ms"):
        t.add_column(c, justify="right")
    for f in ("no_bias", "decomposed", "naive"):
        lat = m["latency_ms"][f]
        t.add_row(f, f"{m['matmul_flops'][f] / 1e9:.3f}", f"{m['saved_bytes'][f] / 2**20:.1f}",
                  f"{m['peak_rss_bytes'][f] / 2**20:.1f}", f"{lat['forward']:.2f}",
                  f"{lat['train_step']:.2f}")
    con.print(t)
    lat = m["latency_ms"]
    fwd = lat["decomposed"]["forward"] / lat["no_bias"]["forward"]
    step = lat["decomposed"]["train_step"] / lat["no_bias"]["train_step"]
    con.print(f"BoxRPB vs no bias: forward {fwd:.2f}×, forward+backward {step:.2f}× ({m['latency_note']})")
