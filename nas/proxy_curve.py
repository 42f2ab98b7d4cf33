"""Learning curves of the supernet's warm-up on the proxy task, for choosing the proxy
recipe (docs/nas.md, "Proxy recipe"): train the supernet of a skeleton on uniform random
paths (or a sandwich of largest + smallest + random paths per step) and print the mean
top-1 of a fixed set of random sub-networks on held-out images every few steps.

    python -m edgedet.nas.proxy_curve --skeleton c16-d16 --steps 600 --size 32

It measures only; the search's defaults live in nas.search.SearchConfig. The defaults here are
the earlier recipe the docs' tables start from; the search's is
`--shared --init torch --layer-scale 1.0 --lr 0.05`.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch
import torch.nn.functional as F

from edgedet.data import make_classification_data
from edgedet.io.atomic import write_json_atomic
from edgedet.nas.proxy import fan_in_init
from edgedet.nas.search import proxy_space
from edgedet.nas.space import skeleton
from edgedet.nas.supernet import Alphas, Supernet, sample_paths
from edgedet.nas.supernet_eval import evaluate, proxy_batch


def _args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skeleton", default="c16-d16")
    ap.add_argument("--proxy-width", type=int, default=16)
    ap.add_argument("--size", type=int, default=32, help="proxy image size")
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--val", type=int, default=400)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--opt", choices=("sgd", "adamw"), default="sgd")
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--warmup-steps", type=int, default=0, help="linear LR warm-up")
    ap.add_argument("--schedule", choices=("cosine", "const"), default="cosine")
    ap.add_argument("--label-smoothing", type=float, default=0.1)
    ap.add_argument("--layer-scale", type=float, default=0.1)
    ap.add_argument("--norm", choices=("ln", "bn"), default="ln", help="block norm of the supernet")
    ap.add_argument("--shared", action="store_true", help="candidates share one block's weights")
    ap.add_argument("--sampling", choices=("uniform", "sandwich", "largest", "smallest"), default="uniform")
    ap.add_argument("--stem-stride", type=int, default=4, help="proxy stem (k = stride); 4 = the skeleton's")
    ap.add_argument("--init", choices=("skeleton", "torch"), default="skeleton",
                    help="skeleton: trunc-normal 0.02 (ConvNeXt); torch: PyTorch's default fan-in init")
    ap.add_argument("--grad-clip", type=float, default=0.0)
    ap.add_argument("--paths", type=int, default=3, help="random sub-networks scored")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default="")
    return ap.parse_args(argv)


def _lr_at(a: argparse.Namespace, step: int) -> float:
    if step < a.warmup_steps:
        return a.lr * (step + 1) / a.warmup_steps
    if a.schedule == "const":
        return a.lr
    t = (step - a.warmup_steps) / max(1, a.steps - a.warmup_steps)
    return 0.5 * a.lr * (1 + math.cos(math.pi * t))


def _largest(space) -> list[int]:
    """Index of the dearest block (largest k, then e) at every layer."""
    choices = space.all_choices()
    return [max(range(len(c)), key=lambda i: (c[i].kernel, c[i].expansion) if c[i] else (0, 0)) for c in choices]


def _smallest(space) -> list[int]:
    """Index of the cheapest choice (skip where allowed, else k3 e2) at every layer."""
    choices = space.all_choices()
    return [min(range(len(c)), key=lambda i: (c[i].kernel, c[i].expansion) if c[i] else (0, 0)) for c in choices]


def main(argv: list[str] | None = None) -> None:
    a = _args(argv)
    torch.set_num_threads(a.threads)
    space = proxy_space(skeleton(a.skeleton), a.proxy_width)
    data = make_classification_data("synthetic", a.size, seed=a.seed, train_size=a.images, val_size=a.val)
    torch.manual_seed(a.seed)
    net = Supernet(space, data.num_classes, a.layer_scale, a.norm, a.shared)
    if a.stem_stride != 4:
        net.net.stem[0] = torch.nn.Conv2d(3, space.widths[0], a.stem_stride, stride=a.stem_stride)
    if a.init == "torch":
        fan_in_init(net)
    alphas = Alphas(net.num_choices, torch.Generator().manual_seed(a.seed + 1))
    if a.opt == "sgd":
        opt = torch.optim.SGD(net.parameters(), lr=a.lr, momentum=0.9, nesterov=True, weight_decay=4e-5)
    else:
        opt = torch.optim.AdamW(net.parameters(), lr=a.lr, weight_decay=0.05)
    gen = torch.Generator().manual_seed(a.seed + 2)
    eval_gen = torch.Generator().manual_seed(a.seed + 4242)
    eval_paths = [sample_paths(alphas, eval_gen, uniform=True) for _ in range(a.paths)]
    big, small = _largest(space), _smallest(space)
    order = torch.randperm(a.images, generator=torch.Generator().manual_seed(a.seed))
    curve, t0, pos, busy = [], time.perf_counter(), 0, 0.0
    for step in range(a.steps):
        if pos + a.batch > a.images:
            order, pos = torch.randperm(a.images, generator=gen), 0
        x, y = proxy_batch(data.train, order[pos:pos + a.batch], torch.device("cpu"))
        pos += a.batch
        for g in opt.param_groups:
            g["lr"] = _lr_at(a, step)
        ts = time.perf_counter()
        paths = {"uniform": [None], "largest": [big], "sandwich": [big, small, None], "smallest": [small]}[a.sampling]
        opt.zero_grad(set_to_none=True)
        for p in paths:
            net.use_paths(p if p is not None else sample_paths(alphas, gen, uniform=True))
            loss = F.cross_entropy(net(x), y, label_smoothing=a.label_smoothing) / len(paths)
            loss.backward()
        if a.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(net.parameters(), a.grad_clip)
        opt.step()
        busy += time.perf_counter() - ts
        if (step + 1) % a.eval_every == 0 or step + 1 == a.steps:
            accs = [evaluate(net, p, data.val, 100, torch.device("cpu")) for p in eval_paths]
            rec = {"step": step + 1, "val_acc_sampled": round(sum(accs) / len(accs), 4),
                   "loss": round(float(loss.detach()) * len(paths), 4), "train_s_per_step": round(busy / (step + 1), 4),
                   "wall_s": round(time.perf_counter() - t0, 1)}
            curve.append(rec)
            print(json.dumps(rec), flush=True)
    if a.json:
        write_json_atomic(a.json, {"args": vars(a), "curve": curve})


if __name__ == "__main__":
    main()
