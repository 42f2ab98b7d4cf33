"""The proxy learning-curve tool (docs/nas.md, proxy recipe) runs and writes its curve."""

import json

from edgedet.nas.proxy_curve import main


def test_proxy_curve_writes_a_curve(tmp_path):
    out = tmp_path / "curve.json"
    main(["--steps", "4", "--eval-every", "2", "--images", "64", "--val", "20", "--batch", "8",
          "--sampling", "sandwich", "--stem-stride", "2", "--init", "torch", "--json", str(out)])
    rec = json.loads(out.read_text())
    assert [r["step"] for r in rec["curve"]] == [2, 4]
    assert all(0.0 <= r["val_acc_sampled"] <= 1.0 and r["loss"] > 0 for r in rec["curve"])
    assert rec["args"]["sampling"] == "sandwich"


def test_batchnorm_supernet_has_no_layernorm_in_its_blocks():
    import torch

    from edgedet.models.layers import LayerNorm2d
    from edgedet.models.skeleton import Block
    from edgedet.nas.search import proxy_space
    from edgedet.nas.space import skeleton
    from edgedet.nas.supernet import Supernet

    net = Supernet(proxy_space(skeleton("c16-d16"), 16), 10, 0.1, norm="bn")
    blocks = [m for m in net.modules() if isinstance(m, Block)]
    assert blocks and not any(isinstance(n, (LayerNorm2d, torch.nn.LayerNorm)) for b in blocks for n in b.modules())
    net.use_paths([0] * len(net.mixed_layers()))
    assert net.eval()(torch.randn(4, 3, 32, 32)).shape == (4, 10)  # batch statistics in eval as well
