"""``CrossNetwork`` and ``StaticBranch`` (kernels in the interpreter on CPU) against the float64 reference."""

from __future__ import annotations

import copy

import pytest
import torch

from mdaf_kernels.nn import CrossNetwork, StaticBranch
from mdaf_kernels.reference.cross_layer import cross_stack_ref, static_branch_ref
from tests.tolerance import assert_close

BATCH = 24


def _randomise_(module: torch.nn.Module) -> None:
    """Move every parameter off its init (zero biases, unit LayerNorm) so all paths are exercised."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.1 * torch.randn_like(p))


def _stack_params(net: CrossNetwork) -> dict:
    return {"weight": net.weight, "bias": net.bias, "ln_weight": net.ln_weight, "ln_bias": net.ln_bias}


@pytest.mark.parametrize("formula", ["mdaf", "dcnv3"])
@pytest.mark.parametrize("kind", ["lcn", "ecn"])
@pytest.mark.parametrize("fused", [True, False])
def test_cross_network_matches_reference(formula, kind, fused, device, seeded):
    width = 66
    net = CrossNetwork(width, 2, kind, formula, fused=fused, device=device, allow_tf32=False)
    _randomise_(net)
    net64 = copy.deepcopy(net).double()
    x = torch.randn(BATCH, width, device=device, requires_grad=True)
    x64 = x.detach().double().requires_grad_()
    out = net(x)
    ref = cross_stack_ref(x64, **_stack_params(net64), kind=kind, formula=formula)
    assert_close(out, ref, torch.float32, name="y")
    dy = torch.randn_like(out)
    out.backward(dy)
    ref.backward(dy.double())
    assert_close(x.grad, x64.grad, torch.float32, name="dx")
    for (name, p), p64 in zip(net.named_parameters(), net64.parameters(), strict=True):
        assert_close(p.grad, p64.grad, torch.float32, name=f"d{name}")


@pytest.mark.parametrize(("formula", "num_lcn", "num_ecn", "width"),
                         [("mdaf", 2, 2, 192), ("dcnv3", 1, 2, 66), ("mdaf", 1, 0, 100)])
def test_static_branch_matches_reference(formula, num_lcn, num_ecn, width, device, seeded):
    out_dim = 24
    branch = StaticBranch(width, out_dim, num_lcn, num_ecn, formula, device=device, allow_tf32=False)
    _randomise_(branch)
    branch64 = copy.deepcopy(branch).double()
    x = torch.randn(BATCH, width, device=device, requires_grad=True)
    x64 = x.detach().double().requires_grad_()
    out = branch(x)
    assert out.shape == (BATCH, out_dim)
    stacks = [None if s is None else _stack_params(s) for s in (branch64.lcn, branch64.ecn)]
    ref = static_branch_ref(x64, *stacks, branch64.norm.weight, branch64.norm.bias, branch64.proj.weight,
                            branch64.proj.bias, formula=formula)
    assert_close(out, ref, torch.float32, name="y")
    dy = torch.randn_like(out)
    out.backward(dy)
    ref.backward(dy.double())
    assert_close(x.grad, x64.grad, torch.float32, name="dx")
    for (name, p), p64 in zip(branch.named_parameters(), branch64.parameters(), strict=True):
        assert_close(p.grad, p64.grad, torch.float32, name=f"d{name}")


def test_bf16_module_runs_in_bf16(device, seeded):
    width = 66
    branch = StaticBranch(width, 8, formula="dcnv3", device=device, dtype=torch.bfloat16)
    _randomise_(branch)
    branch64 = copy.deepcopy(branch).double()
    x = torch.randn(BATCH, width, device=device, dtype=torch.bfloat16)
    out = branch(x)
    assert out.dtype == torch.bfloat16
    stacks = [_stack_params(branch64.lcn), _stack_params(branch64.ecn)]
    ref = static_branch_ref(x.double(), *stacks, branch64.norm.weight, branch64.norm.bias,
                            branch64.proj.weight, branch64.proj.bias, formula="dcnv3")
    assert_close(out, ref, torch.bfloat16)


def test_initialisation(device):
    net = CrossNetwork(66, 3, "ecn", "dcnv3", device=device)
    assert net.weight.shape == (3, 33, 66) and net.bias.shape == (3, 66) and net.ln_weight.shape == (3, 33)
    assert torch.count_nonzero(net.bias) == 0 and torch.count_nonzero(net.ln_bias) == 0
    assert torch.equal(net.ln_weight, torch.ones_like(net.ln_weight))
    bound = (6.0 / (66 + 33)) ** 0.5  # Xavier-uniform
    assert net.weight.abs().max() <= bound and net.weight.std() > bound / 3
    mdaf = CrossNetwork(8, 1, device=device)
    assert mdaf.weight.shape == (1, 8, 8) and mdaf.ln_weight is None and mdaf.ln_bias is None
    branch = StaticBranch(8, 3, num_lcn=2, num_ecn=1, device=device)
    assert branch.norm.normalized_shape == (16,) and branch.proj.weight.shape == (3, 16)
    assert torch.count_nonzero(branch.proj.bias) == 0


def test_bad_arguments(device):
    with pytest.raises(ValueError, match="even width"):
        CrossNetwork(7, 2, formula="dcnv3")
    with pytest.raises(ValueError, match="num_layers"):
        CrossNetwork(8, 0)
    with pytest.raises(ValueError, match="kind"):
        CrossNetwork(8, 1, kind="dcn")
    with pytest.raises(ValueError, match="formula"):
        StaticBranch(8, 4, formula="dcnv2")
    with pytest.raises(ValueError, match="num_lcn, num_ecn"):
        StaticBranch(8, 4, num_lcn=0, num_ecn=0)
    with pytest.raises(ValueError, match="out_dim"):
        StaticBranch(8, 0)
    net = CrossNetwork(8, 1, device=device)
    with pytest.raises(ValueError, match="x: expected a 2-D tensor"):
        net(torch.randn(2, 3, 8, device=device))
    with pytest.raises(ValueError, match="weight: expected shape"):
        net(torch.randn(2, 6, device=device))
