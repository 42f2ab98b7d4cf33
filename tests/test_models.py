"""The model registry, the QuadraNet family, the baselines and arch.json."""

import json

import pytest
import torch

from edgedet import models
from edgedet.arch import SCHEMA_VERSION, Arch, load_arch, uniform_arch
from edgedet.errors import EdgedetError
from edgedet.models.baselines import BLOCK_KINDS, make_block
from edgedet.models.complexity import count_flops, count_params

torch.set_num_threads(1)

QUADRANETS = [f"quadranet{d}-{s}" for d in (25, 36) for s in ("xxs", "xs", "t", "s", "b")]
BASELINES = ["convnet", "skipnet", "swinnet", "hornet"]


def test_names_lists_family_and_baselines():
    assert set(QUADRANETS + BASELINES) <= set(models.names())


@pytest.mark.parametrize("name", QUADRANETS + BASELINES)
def test_every_name_builds_and_runs_small(name):
    # Width overrides keep the big variants cheap; the structure (depths, blocks) is the real one.
    kw = {"width": 8} if name in BASELINES else {}
    torch.manual_seed(0)
    m = models.create(name, num_classes=5, **kw).eval()
    with torch.no_grad():
        feats = m.forward_features(torch.randn(1, 3, 64, 64))
        y = m(torch.randn(2, 3, 64, 64))
    assert y.shape == (2, 5) and torch.isfinite(y).all()
    assert [f.shape[-1] for f in feats] == [16, 8, 4, 2]
    assert m.feature_strides == [4, 8, 16, 32]
    assert [f.shape[1] for f in feats] == m.feature_channels


def test_quadranet_sizes_and_depths():
    m = models.create("quadranet36-xxs", num_classes=10)
    assert m.feature_channels == [16, 32, 64, 128]
    assert [len(s) for s in m.stages] == [3, 3, 27, 3]
    small, big = count_params(models.create("quadranet25-xxs")), count_params(models.create("quadranet25-xs"))
    assert 0 < small < big


def test_flops_count_quadratic_conv():
    """A QuadraConv layer costs 3× a depthwise conv (three filters per channel)."""
    from edgedet.kernels import QuadraConv2d

    flops = count_flops(QuadraConv2d(8, 7), input_size=14, in_chans=8)
    assert flops == 2 * 3 * 8 * 14 * 14 * 7 * 7


@pytest.mark.parametrize("kind", BLOCK_KINDS)
def test_blocks_keep_shape_and_backprop(kind):
    torch.manual_seed(0)
    b = make_block(kind, 32, index=1)
    x = torch.randn(2, 32, 9, 9, requires_grad=True)
    y = b(x)
    assert y.shape == x.shape
    y.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_create_errors():
    with pytest.raises(EdgedetError, match="unknown model 'quadranet25-xxx'.*did you mean"):
        models.create("quadranet25-xxx")
    with pytest.raises(EdgedetError, match="has no option colour"):
        models.create("quadranet25-xxs", colour="red")
    with pytest.raises(EdgedetError, match="unknown block kind|unknown model"):
        models.create("nonsense-model")


def test_arch_json_round_trip(tmp_path):
    arch = uniform_arch([16, 32, 64, 128], [1, 2, 1, 1], kernel=5, expansion=2, num_classes=7, budget_ms=30.0)
    arch.stages[1].layers[1] = None
    path = tmp_path / "a.json"
    arch.save(path)
    d = json.loads(path.read_text())
    assert d["schema_version"] == SCHEMA_VERSION and d["stages"][1]["layers"][1] == "skip"
    back = load_arch(path)
    assert back.to_json() == arch.to_json()
    net = models.create(f"quadranet-arch:{path}")
    assert isinstance(net.stages[1][1], torch.nn.Identity)
    assert net.head.out_features == 7
    with torch.no_grad():
        assert net.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 7)


@pytest.mark.parametrize(
    "mutate,field",
    [
        (lambda d: d.update(schema_version=99), "schema_version"),
        (lambda d: d["stages"][0].update(width=0), "stages[0].width"),
        (lambda d: d["stages"][1].update(stride=3), "stages[1].stride"),
        (lambda d: d["stages"][2]["layers"].__setitem__(0, {"kernel": 4, "expansion": 2}),
         "stages[2].layers[0].kernel"),
        (lambda d: d["stages"][0]["layers"].__setitem__(0, "conv"), "stages[0].layers[0]"),
        (lambda d: d["stem"].update(stride="4"), "stem.stride"),
        (lambda d: d.update(budget_ms=-1), "budget_ms"),
        (lambda d: d.update(stages=[]), "stages"),
    ],
)
def test_arch_validation_names_the_field(tmp_path, mutate, field):
    d = uniform_arch([16, 32, 64, 128], [1, 1, 1, 1]).to_json()
    mutate(d)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(d))
    with pytest.raises(EdgedetError, match=f"field '{field}'".replace("[", r"\[").replace("]", r"\]")):
        load_arch(path)


def test_arch_file_errors(tmp_path):
    with pytest.raises(EdgedetError, match="not found"):
        models.create(f"quadranet-arch:{tmp_path / 'missing.json'}")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(EdgedetError, match="not valid JSON"):
        load_arch(bad)
    assert isinstance(Arch.from_json(uniform_arch([8], [1]).to_json()), Arch)
