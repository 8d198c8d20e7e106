"""mdaf_kernels.tools.memory: saved-tensor counting and peak memory."""

import sys

import pytest
import torch

from mdaf_kernels.tools.memory import PeakMemory, count_saved_tensors


def test_counts_each_saved_storage_once():
    x = torch.randn(64, 32, requires_grad=True)
    with count_saved_tensors() as saved:
        y = x.sin() + x[:8].cos().sum()  # sin saves x, cos saves a view of x: one storage
    assert saved.activation_bytes == x.nbytes
    assert saved.num_storages == 1
    y.sum().backward()  # the tensors handed back by the hooks still drive backward
    assert torch.allclose(x.grad[8:], x.detach()[8:].cos())


def test_parameters_are_counted_apart():
    layer = torch.nn.Linear(32, 16)
    x = torch.randn(10, 32, requires_grad=True)  # its gradient needs the weight saved
    with count_saved_tensors(layer.parameters()) as saved:
        torch.tanh(layer(x))
    assert saved.parameter_bytes == layer.weight.nbytes
    # the input saved by the matmul and the output saved by tanh
    assert saved.activation_bytes == x.nbytes + 10 * 16 * 4


def test_nothing_is_counted_without_grad():
    x = torch.randn(100, requires_grad=True)
    with torch.no_grad(), count_saved_tensors() as saved:
        x.exp()
    assert saved.activation_bytes == 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-block resident-set peak is Linux-only")
def test_cpu_peak_sees_a_temporary_allocation():
    size = 64 * 2**20
    with PeakMemory("cpu") as memory:
        buffer = torch.ones(size // 4)
        del buffer
    assert memory.kind == "rss_peak"
    assert memory.added_bytes >= 0.9 * size
