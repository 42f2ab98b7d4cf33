"""The saved-for-backward counter behind `edgedet reproduce memory`, on tiny stacks."""

import pytest
import torch

from edgedet.bench.reproduce.memory import KINDS, build_stack, count_saved, measure

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def stats():
    out = {}
    for kind in KINDS:
        torch.manual_seed(0)
        # the suite's default input 32 (8×8 block maps; Swin pads them to 14×14 windows)
        out[kind] = count_saved(build_stack(kind, 32, 2), torch.randn(2, 3, 32, 32))
    return out


def test_plain_quadra_saves_two_more_tensors_per_block(stats):
    # plain autograd keeps Wa⊛x and Wb⊛x (and the stacked weight) on top of x
    assert stats["quadra"].tensors_per_block - stats["quadra-saving"].tensors_per_block >= 2
    assert stats["quadra"].saved_bytes > stats["quadra-saving"].saved_bytes


def test_ordering_of_the_memory_table(stats):
    b = {k: s.saved_bytes for k, s in stats.items()}
    assert b["skip"] < b["conv"] <= b["quadra-saving"] < b["quadra"]
    assert b["quadra-saving"] <= 1.3 * b["conv"]
    assert b["quadra-saving"] <= 0.7 * b["swin"]
    assert b["quadra-saving"] < b["hor"]


def test_parameters_are_not_counted():
    torch.manual_seed(0)
    m = build_stack("conv", 16, 1)
    s = count_saved(m, torch.randn(1, 3, 16, 16))
    param_bytes = sum(p.numel() * p.element_size() for p in m.parameters())
    s_big = count_saved(m, torch.randn(4, 3, 16, 16))
    # activations scale with the batch; nothing parameter-sized stays fixed in the count
    assert s_big.saved_bytes == 4 * s.saved_bytes and param_bytes > 0
    assert len(s.per_block_tensors) == 1


def test_child_process_row():
    row = measure("quadra-saving", 16, 16, 2, 2, threads=1)
    assert row["block"] == "quadra-saving" and row["width"] == 16 and row["resolution"] == 16
    assert row["saved_bytes"] > 0 and row["peak_rss_bytes"] > 0 and row["schema_version"] == 1
