"""`edgedet convert-checkpoint --from plain-detr|asag IN OUT`: official checkpoints → edgedet."""

from __future__ import annotations

import argparse
from pathlib import Path

import typer

from edgedet.errors import EdgedetError

SOURCES = ("plain-detr", "asag")


def official_args(obj) -> dict:
    args = obj.get("args") if isinstance(obj, dict) else None
    return dict(vars(args)) if args is not None and hasattr(args, "__dict__") else {}


def convert_plain_detr(obj, backbone: str, reparam: bool | None, rpe_type: str | None, nheads: int | None,
                       num_queries: int | None, proposal_strides: tuple[int, ...] | None) -> dict:
    """An edgedet detection checkpoint (dict) from an official Plain-DETR checkpoint."""
    import torch

    from edgedet.models.plain_detr import build_plain_detr
    from edgedet.models.plain_detr_convert import convert_official, load_converted
    from edgedet.training.config import TrainConfig

    args = official_args(obj)
    if args.get("decoder_type", "global_rpe_decomp") != "global_rpe_decomp":
        raise EdgedetError(f"decoder_type {args['decoder_type']!r} is not supported (global_rpe_decomp only)")
    if args and not (args.get("two_stage") and args.get("mixed_selection") and args.get("with_box_refine")):
        raise EdgedetError("only two-stage + mixed_selection + with_box_refine runs are supported")
    strides = proposal_strides or tuple(args.get("proposal_tgt_strides") or (8, 16, 32, 64))
    if args and int(args.get("proposal_feature_levels", len(strides))) == 1:
        strides = (16,)
    nq = num_queries or int(args.get("num_queries_one2one", 300))
    conv = convert_official(obj, num_queries=nq, proposal_strides=strides)
    opts = dict(conv.config)
    opts["proposal_strides"] = tuple(opts["proposal_strides"])
    opts["reparam"] = bool(args.get("reparam", True)) if reparam is None else reparam
    opts["rpe_type"] = rpe_type or args.get("decoder_rpe_type", "linear")
    opts["nheads"] = nheads or int(args.get("nheads", opts["nheads"]))
    opts["dropout"] = 0.0
    opts["look_forward_twice"] = bool(args.get("look_forward_twice", True))
    if "k_one2many" in args:
        opts["k_one2many"] = int(args["k_one2many"])
    torch.manual_seed(0)
    model = build_plain_detr(backbone, preset="paper", **opts)
    unfit = load_converted(model, conv)
    k = opts["num_classes"]
    options = {"preset": "paper", **opts, "proposal_strides": list(opts["proposal_strides"])}
    cfg = TrainConfig(model=f"plain-detr-{backbone}", data="", img_size=800)
    return {"task": "detection", "model_name": f"plain-detr-{backbone}", "model_options": options,
            "num_classes": k, "class_names": [str(i) for i in range(k)], "label_to_cat": list(range(k)),
            "config": cfg.to_dict(), "model": model.state_dict(),
            "converted_from": {"source": "plain-detr", "converted": len(conv.state_dict) - len(unfit),
                               "not_converted": len(conv.skipped) + len(unfit),
                               "shape_mismatch": unfit}}


def register(app: typer.Typer) -> None:
    @app.command("convert-checkpoint")
    def convert_checkpoint(
        src_kind: str = typer.Option(..., "--from", help="Official implementation: plain-detr or asag."),
        src: Path = typer.Argument(..., help="Official checkpoint (.pth)."),
        dst: Path = typer.Argument(..., help="edgedet checkpoint to write."),
        backbone: str = typer.Option("quadranet25-s", "--backbone", help="edgedet backbone of the converted "
                                     "model (its stride-32 width 768 matches SwinV2-S, so the upsampler "
                                     "converts too)."),
        reparam: bool = typer.Option(None, "--reparam/--no-reparam", help="Plain-DETR: box reparam "
                                     "(default: from the checkpoint's args, else on)."),
        rpe_type: str = typer.Option(None, "--rpe-type", help="linear or abs_log8 (default: args)."),
        nheads: int = typer.Option(None, "--nheads", help="Attention heads (default: args or inferred)."),
        num_queries: int = typer.Option(None, "--num-queries", help="One-to-one queries (default: 300)."),
        proposal_strides: str = typer.Option(None, "--proposal-strides", help="Plain-DETR: e.g. 8,16,32,64."),
    ) -> None:
        """Map an official Plain-DETR or ASAG checkpoint onto edgedet's model and save it for
        `edgedet eval` / `detect` / `export`. Backbone weights are not converted."""
        from edgedet.io.checkpoint import load_torch_file, save_checkpoint  # torch: lazy for CLI start-up

        if src_kind not in SOURCES:
            raise EdgedetError(f"--from must be one of {', '.join(SOURCES)}, got {src_kind!r}")
        if not src.is_file():
            raise EdgedetError(f"{src} does not exist")
        if rpe_type is not None and rpe_type not in ("linear", "abs_log8"):
            raise EdgedetError(f"--rpe-type must be linear or abs_log8, got {rpe_type!r}")
        strides = None
        if proposal_strides:
            try:
                strides = tuple(int(s) for s in proposal_strides.split(","))
            except ValueError:
                raise EdgedetError("--proposal-strides must be integers like 8,16,32,64, "
                                   f"got {proposal_strides!r}") from None
        obj = load_torch_file(src, safe_globals=[argparse.Namespace])  # official runs pickle their args
        if src_kind == "plain-detr":
            state = convert_plain_detr(obj, backbone, reparam, rpe_type, nheads, num_queries, strides)
        else:
            state = _convert_asag(obj, backbone, src)
        save_checkpoint(dst, state)
        info = state.get("converted_from", {})
        typer.echo(f"wrote {dst}: {state['model_name']}, {info.get('converted', '?')} tensors converted, "
                   f"{info.get('not_converted', '?')} left out (backbone)")


def _convert_asag(obj, backbone: str, src: Path) -> dict:
    """Through helper module edgedet.models.asag_convert (ASAG-S heads, FPN, anchor generator)."""
    import torch

    try:
        from edgedet.models import asag_convert
    except ImportError:
        raise EdgedetError("ASAG checkpoint conversion is not available in this version of edgedet") from None
    from edgedet.models import create
    from edgedet.training.config import TrainConfig

    if not isinstance(obj, dict):
        raise EdgedetError(f"{src} is not an ASAG checkpoint (expected a state dict)")
    converted = asag_convert.convert_asag_state_dict(obj)
    skipped = asag_convert.unmapped_asag_keys(obj)
    k = next((int(v.shape[0]) for n, v in converted.items() if n.endswith("class_logits.weight")), 80)
    torch.manual_seed(0)
    model = create(f"asag-{backbone}", preset="paper", num_classes=k)
    own = model.state_dict()
    unknown = [n for n in converted if n not in own]
    if unknown:
        raise EdgedetError(f"converted ASAG keys with no place in asag-{backbone}: {', '.join(unknown[:5])}")
    fitted = {n: v for n, v in converted.items() if own[n].shape == v.shape}
    unfit = sorted(set(converted) - set(fitted))
    bad = [n for n in unfit if not n.startswith("fpn.lateral.")]
    if bad:
        raise EdgedetError(f"shape mismatch for {', '.join(bad[:5])}")
    model.load_state_dict(fitted, strict=False)
    cfg = TrainConfig(model=f"asag-{backbone}", data="", img_size=800)
    return {"task": "detection", "model_name": f"asag-{backbone}", "model_options": {"preset": "paper"},
            "num_classes": k, "class_names": [str(i) for i in range(k)], "label_to_cat": list(range(k)),
            "config": cfg.to_dict(), "model": model.state_dict(),
            "converted_from": {"source": "asag", "converted": len(fitted),
                               "not_converted": len(skipped) + len(unfit), "shape_mismatch": unfit}}
