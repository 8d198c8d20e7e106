"""mdaf_kernels.nn.CausalConv1d: nn.Conv1d-compatible parameters over the fused kernel."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mdaf_kernels.nn import CausalConv1d
from tests.tolerance import assert_close


def depthwise_conv(dim: int, width: int, bias: bool) -> nn.Conv1d:
    return nn.Conv1d(dim, dim, width, groups=dim, padding=width - 1, bias=bias, dtype=torch.float64)


@pytest.mark.parametrize(("width", "bias", "activation"),
                         [(4, True, "silu"), (3, False, None), (2, True, None)])
def test_matches_nn_conv1d_after_loading_its_state_dict(width, bias, activation, device, seeded):
    dim, seqlen = 19, 23
    conv = depthwise_conv(dim, width, bias)
    layer = CausalConv1d(dim, width, bias=bias, activation=activation, device=device)
    layer.load_state_dict({k: v.float() for k, v in conv.state_dict().items()})
    x = torch.randn(2, dim, seqlen, dtype=torch.float64)

    ref = conv(x)[..., :seqlen]
    ref = F.silu(ref) if activation else ref
    out = layer(x.float().to(device))
    assert_close(out, ref, torch.float32)

    ref.sum().backward()
    out.sum().backward()
    assert layer.weight.grad.shape == (dim, 1, width)
    assert_close(layer.weight.grad, conv.weight.grad, torch.float32, name="dweight")
    if bias:
        assert_close(layer.bias.grad, conv.bias.grad, torch.float32, name="dbias")


def test_parameters_load_into_nn_conv1d():
    layer = CausalConv1d(8, 4)
    conv = nn.Conv1d(8, 8, 4, groups=8, padding=3)
    conv.load_state_dict(layer.state_dict())
    assert torch.equal(conv.weight, layer.weight) and torch.equal(conv.bias, layer.bias)
    assert {name for name, _ in layer.named_parameters()} == {"weight", "bias"}


def test_factory_kwargs_and_repr():
    layer = CausalConv1d(6, width=3, bias=False, activation=None, dtype=torch.bfloat16)
    assert layer.weight.dtype == torch.bfloat16 and layer.weight.shape == (6, 1, 3)
    assert layer.bias is None
    assert "width=3" in repr(layer) and "bias=False" in repr(layer)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"width": 5}, r"width: must be one of \(2, 3, 4\), got 5"),
    ({"activation": "gelu"}, r"activation: expected one of .*got 'gelu'"),
])
def test_bad_configuration(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CausalConv1d(4, **kwargs)
