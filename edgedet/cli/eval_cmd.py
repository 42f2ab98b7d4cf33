"""`edgedet eval MODEL --checkpoint C [--data SPEC]`: COCO mAP of a trained detector."""

from __future__ import annotations

from pathlib import Path

import typer

from edgedet.errors import EdgedetError

SHOWN = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large")


def register(app: typer.Typer) -> None:
    @app.command("eval")
    def eval_(
        model: str = typer.Argument(..., help="Detector the checkpoint holds (plain-detr-*, asag-*)."),
        checkpoint: Path = typer.Option(..., "--checkpoint", help="checkpoint.pt from `edgedet train`."),
        data: str = typer.Option(None, "--data", help="synthetic-det or coco:ANN.json:IMAGES_DIR "
                                 "(default: the checkpoint's training data, validation split)."),
        img_size: int = typer.Option(None, "--img-size", help="Longer image side (default: as trained)."),
        max_images: int = typer.Option(None, "--max-images", help="Evaluate only the first N images."),
        batch_size: int = typer.Option(8, "--batch-size", help="Images per forward pass."),
        threads: int = typer.Option(None, "--threads", help="torch intra-op threads."),
        json_out: Path = typer.Option(None, "--json", help="Also write the metrics here (JSON)."),
    ) -> None:
        """Evaluate COCO bbox AP / AP50 / AP75 / AP_small / AP_medium / AP_large (pycocotools)."""
        import torch
        from rich.console import Console
        from rich.table import Table

        from edgedet.io.atomic import write_json_atomic
        from edgedet.training.coco_eval import evaluate
        from edgedet.training.config import TrainConfig
        from edgedet.training.detection import load_datasets, load_trained

        if threads is not None:
            if threads <= 0:
                raise EdgedetError(f"--threads must be positive, got {threads}")
            torch.set_num_threads(threads)
        if max_images is not None and max_images <= 0:
            raise EdgedetError(f"--max-images must be positive, got {max_images}")
        if batch_size <= 0:
            raise EdgedetError(f"--batch-size must be positive, got {batch_size}")
        if not checkpoint.is_file():
            raise EdgedetError(f"checkpoint {checkpoint} does not exist")
        net, state = load_trained(checkpoint)
        if state["model_name"] != model:
            raise EdgedetError(f"{checkpoint} holds a {state['model_name']}, not a {model}")
        cfg = TrainConfig.from_dict(state["config"])
        if data is not None:
            cfg.data = data
        if img_size is not None:
            cfg.img_size = img_size
        _, val = load_datasets(cfg, augment=False)
        if val.label_to_cat != list(state["label_to_cat"]):
            raise EdgedetError(f"the categories of {cfg.data} differ from the checkpoint's")
        metrics = evaluate(net, val, batch_size=batch_size, max_images=max_images)
        table = Table(title=f"{model} on {cfg.data} ({metrics['num_detections']} detections)")
        for k in SHOWN:
            table.add_column(k, justify="right")
        table.add_row(*(f"{metrics[k]:.3f}" for k in SHOWN))
        Console().print(table)
        if json_out is not None:
            write_json_atomic(json_out, {"schema_version": 1, "model": model, "checkpoint": str(checkpoint),
                                         "data": cfg.data, "img_size": cfg.img_size,
                                         "images": min(max_images or len(val), len(val)),
                                         **{k: v for k, v in metrics.items()}})
