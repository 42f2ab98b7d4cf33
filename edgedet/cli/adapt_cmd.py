"""`edgedet adapt MODEL --checkpoint C --images DIR|synthetic:SHIFT [--steps N] --out C2`:
test-time domain adaptation (MABN) of a trained checkpoint from a few unlabelled images."""

from __future__ import annotations

from pathlib import Path

import typer

from edgedet.errors import EdgedetError

SYNTHETIC_PREFIX = "synthetic:"
SYNTHETIC_POOL_START = 100_000  # index range of the synthetic adaptation images (never trained on)


def load_images(spec: str, count: int, size: int, mean: list[float], std: list[float], seed: int):
    """(count,3,size,size) unlabelled images from a folder or a synthetic domain."""
    if spec.startswith(SYNTHETIC_PREFIX):
        from edgedet.data.domains import DomainShapes

        name = spec[len(SYNTHETIC_PREFIX):]
        return DomainShapes(name, count, size, start=SYNTHETIC_POOL_START, seed=seed).tensors()[0]
    from edgedet.data.domain_folder import unlabelled_images

    return unlabelled_images(spec, size, tuple(mean), tuple(std), limit=count)


def register(app: typer.Typer) -> None:
    @app.command("adapt")
    def adapt(
        model: str = typer.Argument(..., help="Model name the checkpoint was trained as (e.g. resnet-bn)."),
        checkpoint: Path = typer.Option(..., "--checkpoint", "-c", help="MABN checkpoint (with its auxiliary head)."),
        images: str = typer.Option(..., "--images", help="Folder of unlabelled target images, or "
                                   "synthetic:DOMAIN (see docs/adapt.md for the domain names)."),
        out: Path = typer.Option(..., "--out", "-o", help="Adapted checkpoint to write (auxiliary head dropped)."),
        steps: int = typer.Option(None, "--steps", help="Adaptation steps (default: the inner steps "
                                  "it was meta-trained with)."),
        num_images: int = typer.Option(32, "--num-images", help="Unlabelled images to adapt with (12–32 "
                                       "in the paper's protocol)."),
        lr: float = typer.Option(None, "--lr", help="SGD rate of the step (default: the meta-trained α)."),
        seed: int = typer.Option(0, "--seed", help="Seed of the auxiliary views (and of synthetic images)."),
        threads: int = typer.Option(1, "--threads", help="torch intra-op threads here."),
        profile: str = typer.Option("cortex-a76", "--profile", help="Device profile of the predicted step time."),
    ) -> None:
        """Adapt the norm affine parameters of MODEL to a target domain and write a plain checkpoint."""
        import math

        import torch

        from edgedet.adapt.checkpoint import load_mabn, save_adapted
        from edgedet.adapt.norm_affine import norm_affine_names
        from edgedet.adapt.test_time import mabn
        from edgedet.adapt.timing import step_time

        if steps is not None and steps <= 0:
            raise EdgedetError(f"--steps must be a positive integer, got {steps}")
        if num_images <= 0:
            raise EdgedetError(f"--num-images must be a positive integer, got {num_images}")
        if lr is not None and (not math.isfinite(lr) or lr <= 0):
            raise EdgedetError(f"--lr must be a positive number, got {lr}")
        if threads <= 0:
            raise EdgedetError(f"--threads must be a positive integer, got {threads}")
        if out.exists() and out.is_dir():
            raise EdgedetError(f"--out {out} is a folder; give the checkpoint file to write")
        if out.resolve() == checkpoint.resolve():
            raise EdgedetError("--out must differ from --checkpoint (the MABN checkpoint stays adaptable)")
        torch.set_num_threads(threads)
        aux_net, state = load_mabn(checkpoint, model)
        cfg = state["mabn"]
        size = int(state["img_size"])
        norm = state["normalisation"]
        x = load_images(images, num_images, size, norm["mean"], norm["std"], seed)
        if len(x) < 2:
            raise EdgedetError(f"--images {images}: {len(x)} image; adaptation needs at least 2")
        n_steps = steps if steps is not None else int(cfg["inner_steps"])
        rate = lr if lr is not None else float(cfg["inner_lr"])
        stats = str(cfg.get("stats", "source"))  # checkpoints before the option: source statistics
        adapted = mabn(aux_net, x, n_steps, rate, seed, stats)
        timing = step_time(aux_net, x, profile)
        save_adapted(out, adapted, state, {"method": "mabn", "images": images, "num_images": len(x),
                                           "steps": n_steps, "lr": rate, "seed": seed,
                                           "bn_statistics": stats})
        n_affine = sum(p.numel() for n, p in adapted.named_parameters() if n in set(norm_affine_names(adapted)))
        print(f"adapted {model} ({state['aux_kind']} auxiliary loss) with {len(x)} unlabelled images from "
              f"{images}: {n_steps} step(s) at rate {rate:g} on {n_affine} norm affine parameters")
        print(timing.line())
        print(f"wrote {out} (auxiliary head dropped; exports like any checkpoint)")

