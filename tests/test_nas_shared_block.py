"""Weight sharing across a layer's candidates (`SharedQuadraBlock`): each candidate is the
QuadraBlock made of the k×k centre of the kernels and the first e·C hidden channels, and a
weight step on one candidate trains exactly those weights."""

import pytest
import torch

from edgedet.models.quadranet import QuadraBlock
from edgedet.nas.search import SearchConfig, proxy_supernet
from edgedet.nas.space import SearchSpace, skeleton
from edgedet.nas.supernet import ChannelsLastBatchNorm, SharedQuadraBlock, Supernet

torch.set_num_threads(1)


def _shared(dim=8, seed=0):
    torch.manual_seed(seed)
    block = SharedQuadraBlock(dim, 7, 4, layer_scale=0.5).double()
    with torch.no_grad():  # non-trivial norms and biases, so a wrong slice shows
        for p in block.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return block


def _standalone(block: SharedQuadraBlock, k: int, e: int) -> QuadraBlock:
    """A QuadraBlock (with the shared block's BatchNorms) holding the candidate's weights."""
    dim, lo, h = block.dim, (7 - k) // 2, e * block.dim
    ref = QuadraBlock(dim, k, e, memory_saving=False).double()
    ref.norm1, ref.norm2 = block.norm1, block.norm2
    with torch.no_grad():
        for name in ("wa", "wb", "wc"):
            getattr(ref.mixer, name).copy_(getattr(block.mixer, name)[:, :, lo:lo + k, lo:lo + k])
        ref.mixer.bias.copy_(block.mixer.bias)
        ref.pw1.weight.copy_(block.pw1.weight[:h])
        ref.pw1.bias.copy_(block.pw1.bias[:h])
        ref.pw2.weight.copy_(block.pw2.weight[:, :h])
        ref.pw2.bias.copy_(block.pw2.bias)
        ref.gamma1.copy_(block.gamma1)
        ref.gamma2.copy_(block.gamma2)
    return ref


@pytest.mark.parametrize("k,e", [(3, 2), (5, 4), (7, 2), (7, 4)])
def test_candidate_is_the_block_of_its_slice(k, e):
    block = _shared()
    x = torch.randn(4, 8, 6, 5, dtype=torch.float64)
    got = block(x, k, e)
    want = _standalone(block, k, e)(x)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10 * float(want.detach().abs().max()))


def test_a_step_on_a_small_candidate_trains_only_its_slice():
    block = _shared()
    block(torch.randn(4, 8, 6, 6, dtype=torch.float64), 3, 2).square().sum().backward()
    g = block.mixer.wa.grad
    assert g[:, :, 2:5, 2:5].abs().sum() > 0
    outside = g.clone()
    outside[:, :, 2:5, 2:5] = 0
    assert outside.abs().sum() == 0
    assert block.pw1.weight.grad[:16].abs().sum() > 0 and block.pw1.weight.grad[16:].abs().sum() == 0
    assert block.pw2.weight.grad[:, 16:].abs().sum() == 0


def test_shared_supernet_holds_one_block_per_layer():
    space = SearchSpace(widths=(8, 16), max_layers=(2, 2), num_classes=10)
    shared = Supernet(space, 10, shared=True)
    separate = Supernet(space, 10)
    n_shared = sum(p.numel() for p in shared.parameters())
    assert n_shared < sum(p.numel() for p in separate.parameters()) / 3
    assert len(shared.state_dict()) == len({id(v) for v in shared.state_dict().values()})
    assert not any(isinstance(m, ChannelsLastBatchNorm) for m in separate.modules())
    shared.use_paths([0, 6, 1, 6])  # 6 = skip
    assert shared(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_proxy_supernet_follows_the_config():
    space = skeleton("c16-d16")
    net = proxy_supernet(space, 10, SearchConfig(budget_ms=10))
    assert all(m.shared is not None for m in net.mixed_layers())
    sep = proxy_supernet(space, 10, SearchConfig(budget_ms=10, share_weights=False))
    assert all(m.shared is None for m in sep.mixed_layers())
    with pytest.raises(ValueError, match="QuadraBlocks only"):
        Supernet(SearchSpace(block="mbconv"), 10, shared=True)
