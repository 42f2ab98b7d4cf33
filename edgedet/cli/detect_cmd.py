"""`edgedet detect MODEL [--checkpoint C] --image IMG --out OUT.png`: draw detections."""

from __future__ import annotations

from pathlib import Path

import typer

from edgedet.errors import EdgedetError

PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212)]


def draw_detections(image, boxes, labels, scores, names: list[str]):
    """A copy of the PIL image with labelled boxes (xyxy pixels) drawn on it."""
    from PIL import ImageDraw

    out = image.copy()
    d = ImageDraw.Draw(out)
    for (x1, y1, x2, y2), lab, s in zip(boxes, labels, scores, strict=True):
        colour = PALETTE[lab % len(PALETTE)]
        d.rectangle((x1, y1, x2, y2), outline=colour, width=2)
        text = f"{names[lab] if lab < len(names) else lab} {s:.2f}"
        tx, ty = x1, max(0.0, y1 - 11)
        d.rectangle((tx, ty, tx + 6 * len(text) + 2, ty + 11), fill=colour)
        d.text((tx + 1, ty), text, fill=(0, 0, 0))
    return out


def register(app: typer.Typer) -> None:
    @app.command("detect")
    def detect(
        model: str = typer.Argument(..., help="Detector name (plain-detr-*, asag-*)."),
        checkpoint: Path = typer.Option(None, "--checkpoint", help="checkpoint.pt from `edgedet train` "
                                        "(default: untrained weights, for a smoke test)."),
        image: Path = typer.Option(..., "--image", help="Input image (any format PIL reads)."),
        out: Path = typer.Option(..., "--out", help="Output PNG with labelled boxes."),
        threshold: float = typer.Option(0.3, "--threshold", help="Draw detections scoring at least this."),
        img_size: int = typer.Option(None, "--img-size", help="Longer side fed to the model (default: "
                                     "the checkpoint's training size, else 640)."),
        top_k: int = typer.Option(100, "--top-k", help="Detections kept before the threshold."),
        json_out: Path = typer.Option(None, "--json", help="Also write the detections here (JSON)."),
    ) -> None:
        """Run MODEL on one image and write it with labelled boxes."""
        import numpy as np
        import torch
        from PIL import Image

        from edgedet.data.coco import MEAN, STD, collate
        from edgedet.io.atomic import atomic_output, write_json_atomic
        from edgedet.training.coco_eval import default_postprocess
        from edgedet.training.detection import build_detector, default_model_options, load_trained

        if not 0.0 <= threshold <= 1.0:
            raise EdgedetError(f"--threshold must be in [0, 1], got {threshold}")
        if out.suffix.lower() != ".png":
            raise EdgedetError(f"--out must be a .png file, got {out}")
        if not image.is_file():
            raise EdgedetError(f"image {image} does not exist")
        try:
            with Image.open(image) as im:
                pil = im.convert("RGB")
        except OSError as e:
            raise EdgedetError(f"cannot read image {image}: {e}") from None
        if checkpoint is not None:
            if not checkpoint.is_file():
                raise EdgedetError(f"checkpoint {checkpoint} does not exist")
            net, state = load_trained(checkpoint)
            if state["model_name"] != model:
                raise EdgedetError(f"{checkpoint} holds a {state['model_name']}, not a {model}")
            names = list(state["class_names"])
            size = img_size or int(state["config"]["img_size"])
        else:
            size = img_size or 640
            torch.manual_seed(0)
            net = build_detector(model, 80, default_model_options(model, size)).eval()
            names = [f"class{i}" for i in range(80)]
            typer.echo("warning: no --checkpoint, the weights are untrained", err=True)
        w, h = pil.size
        scale = size / max(w, h)
        resized = pil.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR)
        x = torch.from_numpy(np.asarray(resized, dtype=np.float32) / 255.0).permute(2, 0, 1)
        x = (x - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]
        images, masks, _ = collate([(x, {})])
        with torch.no_grad():
            det = default_postprocess(net)(net(images, masks), torch.tensor([[h, w]]), top_k)
        keep = (det["scores"][0] >= threshold) & (det["scores"][0] > 0)  # 0: padding or suppressed
        boxes = det["boxes"][0][keep].tolist()
        labels = det["labels"][0][keep].tolist()
        scores = det["scores"][0][keep].tolist()
        drawn = draw_detections(pil, boxes, labels, scores, names)
        with atomic_output(out) as tmp:
            drawn.save(tmp, format="PNG")
        if json_out is not None:
            rows = [{"label": lab, "name": names[lab] if lab < len(names) else str(lab), "score": s,
                     "box_xyxy": b} for b, lab, s in zip(boxes, labels, scores, strict=True)]
            write_json_atomic(json_out, {"schema_version": 1, "model": model, "image": str(image),
                                         "detections": rows})
        typer.echo(f"{len(boxes)} detection(s) ≥ {threshold} → {out}")
