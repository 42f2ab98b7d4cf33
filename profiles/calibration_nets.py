"""The random calibration networks a measured profile is fitted on: networks of the NAS
search space (QuadraNet and MBConv blocks, drawn by a sampler the caller passes in, since
the search space is a layer above) and random plain CNNs (VGG / ResNet / SqueezeNet /
MobileNet-like layouts, FC heads). All are disjoint from the models `edgedet reproduce
predictor` evaluates on (other seeds and skeletons)."""

from __future__ import annotations

import io
import os
import random
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from edgedet.runtimes import first_line

CALIBRATION_SEED = 10_000  # evaluation archs use seeds 0…n; calibration starts far above

SpaceNet = Callable[[str, random.Random], tuple[str, nn.Module, int]]
"""(block kind "quadra" | "mbconv", rng) → (name, network, input size): one random network
of the search space (`edgedet.nas.sampled_nets.random_space_net`)."""


class NetExportError(RuntimeError):
    """A network the TorchScript ONNX exporter rejects; the message is one line."""


@contextmanager
def _stdout_fd_silenced() -> Iterator[None]:
    """File descriptor 1 points at /dev/null inside: the TorchScript exporter (torch 2.x) writes
    the whole TorchScript graph (hundreds of lines) to the C++ stdout when an export fails."""
    sys.stdout.flush()
    saved = os.dup(1)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(null)


def torch_onnx(module: nn.Module, size: int = 224) -> bytes:
    """ONNX bytes of `module` with its weights, batch 1 at size×size (TorchScript exporter).
    Raises NetExportError (one line) when the exporter rejects the network."""
    buf = io.BytesIO()
    try:
        with torch.no_grad(), warnings.catch_warnings(), _stdout_fd_silenced():
            warnings.simplefilter("ignore")
            torch.onnx.export(module.eval(), (torch.randn(1, 3, size, size),), buf, dynamo=False,
                              opset_version=17, input_names=["input"], output_names=["output"])
    except Exception as e:
        raise NetExportError(f"ONNX export failed: {first_line(e)[:200]}") from e
    return buf.getvalue()


class Residual(nn.Module):
    """ResNet basic (two 3×3) or bottleneck (1×1 → 3×3 → 1×1, c/4 inside) block, c → c."""

    def __init__(self, c: int, bottleneck: bool):
        super().__init__()
        m = c // 4 if bottleneck else c
        layers = [nn.Conv2d(c, m, 1 if bottleneck else 3, padding=0 if bottleneck else 1), nn.BatchNorm2d(m),
                  nn.ReLU(), nn.Conv2d(m, m, 3, padding=1), nn.BatchNorm2d(m), nn.ReLU()]
        if bottleneck:
            layers += [nn.Conv2d(m, c, 1), nn.BatchNorm2d(c)]
        else:
            layers = layers[:3] + [nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c)]
        self.body, self.act = nn.Sequential(*layers), nn.ReLU()

    def forward(self, x):
        return self.act(x + self.body(x))


class Fire(nn.Module):
    """SqueezeNet fire module: 1×1 squeeze to s, then 1×1 and 3×3 expands of e each, concatenated."""

    def __init__(self, cin: int, s: int, e: int):
        super().__init__()
        self.squeeze = nn.Sequential(nn.Conv2d(cin, s, 1), nn.ReLU())
        self.e1, self.e3 = nn.Conv2d(s, e, 1), nn.Conv2d(s, e, 3, padding=1)
        self.act = nn.ReLU()

    def forward(self, x):
        y = self.squeeze(x)
        return self.act(torch.cat([self.e1(y), self.e3(y)], 1))


class Inverted(nn.Module):
    """MobileNetV2 inverted residual: 1×1 expand ×t, k×k depthwise (stride s), 1×1 project."""

    def __init__(self, cin: int, cout: int, k: int, s: int, t: int):
        super().__init__()
        h = cin * t
        self.res = s == 1 and cin == cout
        self.body = nn.Sequential(
            nn.Conv2d(cin, h, 1), nn.ReLU6(), nn.Conv2d(h, h, k, s, padding=k // 2, groups=h), nn.ReLU6(),
            nn.Conv2d(h, cout, 1))

    def forward(self, x):
        return x + self.body(x) if self.res else self.body(x)


def _mobile_cnn(r: random.Random) -> nn.Module:
    """Stride-2 stem, inverted residuals with stride-2 depthwise downsampling, odd widths."""
    c = r.choice([16, 24, 32])
    layers = [nn.Conv2d(3, c, 3, 2, padding=1), nn.ReLU6()]
    for w in r.sample([16, 24, 40, 56, 80, 112, 160, 192, 320], r.choice([4, 5, 6])):
        for j in range(r.choice([1, 2, 3])):
            s = 2 if j == 0 and r.random() < 0.6 else 1
            layers.append(Inverted(c, w, r.choice([3, 5]), s, r.choice([1, 3, 6])))
            c = w
    head = [nn.Conv2d(c, 4 * c, 1), nn.ReLU6(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * c, 1000)]
    return nn.Sequential(*layers, *head)


def _staged_cnn(kind: str, r: random.Random) -> nn.Module:
    """Stem (+ max-pool), 3–4 stages doubling the width of VGG convs, residual blocks or fire
    modules, then a global-pool or a wide FC head."""
    c = r.choice([16, 24, 32, 48, 64])
    ks, st = r.choice([(3, 2), (7, 2), (11, 4), (4, 4)])
    layers: list = [nn.Conv2d(3, c, ks, st, padding=ks // 2 if ks % 2 else 0), nn.ReLU()]
    if st == 2 or r.random() < 0.5:
        layers.append(nn.MaxPool2d(3, 2, padding=1))
    for stage in range(r.choice([3, 4])):
        w = c * 2**stage
        if stage:
            layers.append(nn.MaxPool2d(2, 2) if kind != "residual" else nn.Conv2d(w // 2, w, 3, 2, padding=1))
        cin = w // 2 if stage and kind != "residual" else w
        for _ in range(r.choice([1, 2, 3])):
            if kind == "vgg":
                layers += [nn.Conv2d(cin, w, 3, padding=1), nn.ReLU()]
            elif kind == "residual":
                layers.append(Residual(w, r.random() < 0.4))
            else:
                layers.append(Fire(cin, max(8, w // 4), w // 2))
            cin = w
    if r.random() < 0.4:
        side = r.choice([4, 6])
        hidden = r.choice([512, 1024, 2048])
        head = [WideHead(cin, side, hidden)]
    else:
        head = [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, 1000)]
    return nn.Sequential(*layers, *head)


class WideHead(nn.Module):
    """AlexNet/VGG-style classifier: pool the c×F×F feature map to side×side, then
    FC(c·side² → hidden), ReLU, FC(hidden → 1000). The pool must be one ONNX exports, so
    `fit(F)` (called once the input size, hence F, is known) picks it: an adaptive pool when
    side divides F, a fixed average pool of stride F // side and kernel F − (side − 1)·stride
    (side×side output, overlapping windows as the adaptive pool's) when F > side, none when
    F ≤ side (the FC then reads c·F²)."""

    def __init__(self, c: int, side: int, hidden: int):
        super().__init__()
        self.c, self.side, self.hidden = c, side, hidden
        self.pool: nn.Module = nn.AdaptiveAvgPool2d(side)
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(c * side * side, hidden), nn.ReLU(), nn.Linear(hidden, 1000))

    def fit(self, feature: int) -> None:
        if feature % self.side == 0:
            return
        if feature > self.side:
            stride = feature // self.side
            self.pool = nn.AvgPool2d(feature - (self.side - 1) * stride, stride)
        else:
            self.pool = nn.Identity()
            self.fc[1] = nn.Linear(self.c * feature * feature, self.hidden)

    def forward(self, x):  # (1, c, F, F) → (1, 1000)
        return self.fc(self.pool(x))


def fit_heads(net: nn.Module, size: int) -> nn.Module:
    """`net` with every WideHead fitted to the feature map a size×size input gives it
    (one forward pass at batch 1 when there is a head to fit)."""
    heads = [m for m in net.modules() if isinstance(m, WideHead)]
    if heads:
        seen: dict[WideHead, int] = {}
        hooks = [h.register_forward_pre_hook(lambda m, a: seen.update({m: a[0].shape[-1]})) for h in heads]
        try:
            with torch.no_grad():
                net.eval()(torch.zeros(1, 3, size, size))
        finally:
            for h in hooks:
                h.remove()
        for h in heads:
            h.fit(seen[h])
    return net


def plain_cnn(r: random.Random) -> tuple[nn.Module, str]:
    """A random plain CNN and its layout kind ("vgg", "residual", "fire" or "mobile")."""
    kind = r.choice(["vgg", "residual", "fire", "mobile"])
    return (_mobile_cnn(r) if kind == "mobile" else _staged_cnn(kind, r)), kind


def calibration_networks(n: int, space_net: SpaceNet, seed: int = CALIBRATION_SEED
                         ) -> Iterator[tuple[str, str, Callable[[], bytes]]]:
    """(name, family, ONNX bytes maker) of `n` calibration networks, four families
    interleaved: QuadraNet and MBConv networks of the search space, plain CNNs ×2."""
    for i in range(n):
        fam, r = i % 4, random.Random(seed + i)
        if fam < 2:
            block = "quadra" if fam == 0 else "mbconv"
            name, net, size = space_net(block, r)
            family = "QuadraNet (random)" if fam == 0 else "MBConv (random)"
            yield f"{name}-s{seed + i}", family, lambda net=net, size=size: torch_onnx(net, size)
        else:
            net, kind = plain_cnn(r)
            size = r.choice([160, 192, 224])
            yield (f"cnn-{kind}-{size}-s{seed + i}", "plain CNN (random)",
                   lambda net=net, size=size: torch_onnx(fit_heads(net, size), size))
