"""Fused DCN cross layers (``cross_layer``, ``cross_stack``) against the float64 reference.

On machines without CUDA the kernels run in the Triton interpreter, so batches are tiny (40 rows:
not a multiple of the row block, several blocks) and widths are the MDAF width 192 (padded to 256)
and widths that are not powers of two (100, 66; DCNv3 halves them to 50, 33).
"""

from __future__ import annotations

import pytest
import torch

from mdaf_kernels import backend, cross_layer, cross_stack
from mdaf_kernels.ops import cross_layer as cross_layer_ops
from mdaf_kernels.ops.cross_layer import compile_specs
from mdaf_kernels.reference.cross_layer import cross_layer_ref, cross_stack_ref, projection_size
from tests.tolerance import assert_close

BATCH = 40
FORMULAS = ("mdaf", "dcnv3")
KINDS = ("lcn", "ecn")
PARAM_NAMES = ("weight", "bias", "ln_weight", "ln_bias")


def _params(width: int, formula: str, layers: int | None, dtype, device, *, bias: bool = True) -> dict:
    """Random parameters; ``layers=None`` gives one layer's (unstacked) parameters."""
    lead = () if layers is None else (layers,)
    n_feat = projection_size(width, formula)
    params = {"weight": torch.randn(*lead, n_feat, width, device=device) / width**0.5,
              "bias": 0.1 * torch.randn(*lead, width, device=device) if bias else None}
    if formula == "dcnv3":
        params["ln_weight"] = 1.0 + 0.2 * torch.randn(*lead, n_feat, device=device)
        params["ln_bias"] = 0.2 * torch.randn(*lead, n_feat, device=device)
    return {k: None if v is None else v.to(dtype).requires_grad_() for k, v in params.items()}


def _leaf64(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.detach().double().requires_grad_()


def _grads(out: torch.Tensor, dy: torch.Tensor, tensors: dict) -> dict:
    """Grads of ``out`` for the present tensors; zeros for a tensor that ``out`` does not use."""
    present = {k: v for k, v in tensors.items() if v is not None}
    grads = torch.autograd.grad(out, list(present.values()), dy, allow_unused=True)
    pairs = zip(present.items(), grads, strict=True)
    return {k: torch.zeros_like(v) if g is None else g for (k, v), g in pairs}


def _check_all(out, grads, ref, ref_grads, dtype):
    assert out.dtype == dtype
    assert_close(out, ref, dtype, name="y")
    assert set(grads) == set(ref_grads)
    for name, grad in grads.items():
        assert grad.dtype == dtype, name
        assert_close(grad, ref_grads[name], dtype, name=f"d{name}")


@pytest.mark.parametrize("formula", FORMULAS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("dtype", "width"), [(torch.float32, 192), (torch.float32, 100),
                                              (torch.float16, 100), (torch.bfloat16, 66),
                                              (torch.bfloat16, 192)],
                         ids=["fp32-192", "fp32-100", "fp16-100", "bf16-66", "bf16-192"])
def test_layer_matches_reference(formula, kind, dtype, width, device, seeded):
    x = torch.randn(BATCH, width, device=device).to(dtype).requires_grad_()
    x0 = torch.randn(BATCH, width, device=device).to(dtype).requires_grad_()
    params = _params(width, formula, None, dtype, device)
    out = cross_layer(x, x0, **params, kind=kind, formula=formula, allow_tf32=False)
    dy = torch.randn_like(out)
    grads = _grads(out, dy, {"x": x, "x0": x0, **params})

    x64, x064, p64 = _leaf64(x), _leaf64(x0), {k: _leaf64(v) for k, v in params.items()}
    ref = cross_layer_ref(x64, x064, **p64, kind=kind, formula=formula)
    ref_grads = _grads(ref, dy.double(), {"x": x64, "x0": x064, **p64})
    if formula == "dcnv3" and kind == "ecn":  # the gate is x: x0 gets a zero gradient
        assert torch.count_nonzero(grads.pop("x0")) == 0
        ref_grads.pop("x0")
    _check_all(out, grads, ref, ref_grads, dtype)


@pytest.mark.parametrize(("formula", "kind"), [("mdaf", "ecn"), ("dcnv3", "lcn")])
def test_layer_without_bias_or_layer_norm_affine(formula, kind, device, seeded):
    """The paper's bias-free ECN and a DCNv3 layer with no LayerNorm affine (identity), on a
    non-contiguous (transposed) input."""
    width = 66
    x = torch.randn(width, BATCH, device=device).t().requires_grad_()
    params = _params(width, formula, None, torch.float32, device, bias=False)
    params.pop("ln_weight", None), params.pop("ln_bias", None)
    out = cross_layer(x, x, **params, kind=kind, formula=formula, allow_tf32=False)
    dy = torch.randn_like(out)
    grads = _grads(out, dy, {"x": x, **params})
    x64, p64 = _leaf64(x), {k: _leaf64(v) for k, v in params.items()}
    ref = cross_layer_ref(x64, x64, **p64, kind=kind, formula=formula)
    _check_all(out, grads, ref, _grads(ref, dy.double(), {"x": x64, **p64}), torch.float32)


@pytest.mark.parametrize("formula", FORMULAS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("layers", [1, 4])
def test_stack_matches_reference(formula, kind, layers, device, seeded):
    width = 100 if layers == 4 else 192
    x = torch.randn(BATCH, width, device=device, requires_grad=True)
    params = _params(width, formula, layers, torch.float32, device)
    out = cross_stack(x, **params, kind=kind, formula=formula, allow_tf32=False)
    dy = torch.randn_like(out)
    grads = _grads(out, dy, {"x": x, **params})
    x64, p64 = _leaf64(x), {k: _leaf64(v) for k, v in params.items()}
    ref = cross_stack_ref(x64, **p64, kind=kind, formula=formula)
    _check_all(out, grads, ref, _grads(ref, dy.double(), {"x": x64, **p64}), torch.float32)


@pytest.mark.parametrize("formula", FORMULAS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_stack_equals_layer_by_layer(formula, dtype, device, seeded):
    """One launch for the stack gives the layer-by-layer result: the forward bit for bit in the
    interpreter (both round each layer's output to the I/O dtype; on a GPU the two compiled kernels
    may contract multiply-adds differently, so there to the dtype's rounding), the fp32 gradients to
    fp32 rounding (the stack keeps its inter-layer gradients in fp32 and sums the gate's gradient in
    another order)."""
    width, layers, kind = 66, 3, "ecn"
    x = torch.randn(BATCH, width, device=device).to(dtype).requires_grad_()
    params = _params(width, formula, layers, dtype, device)
    out = cross_stack(x, **params, kind=kind, formula=formula)
    by_layer = x
    for layer in range(layers):
        by_layer = cross_layer(by_layer, x, **{k: v[layer] for k, v in params.items() if v is not None},
                               kind=kind, formula=formula)
    if device.type == "cuda":
        assert_close(out, by_layer, dtype)
    else:
        assert torch.equal(out, by_layer)
    if dtype == torch.float32:
        dy = torch.randn_like(out)
        grads = _grads(out, dy, {"x": x, **params})
        layer_grads = _grads(by_layer, dy, {"x": x, **params})
        for name, grad in grads.items():
            assert_close(grad, layer_grads[name], dtype, name=f"d{name}")


def _check_two_layer_stack(batch: int, width: int, formula: str, kind: str, device) -> None:
    """A two-layer stack (exact fp32) and its gradients against the float64 reference."""
    x = torch.randn(batch, width, device=device, requires_grad=True)
    params = _params(width, formula, 2, torch.float32, device)
    out = cross_stack(x, **params, kind=kind, formula=formula, allow_tf32=False)
    dy = torch.randn_like(out)
    grads = _grads(out, dy, {"x": x, **params})
    x64, p64 = _leaf64(x), {k: _leaf64(v) for k, v in params.items()}
    ref = cross_stack_ref(x64, **p64, kind=kind, formula=formula)
    _check_all(out, grads, ref, _grads(ref, dy.double(), {"x": x64, **p64}), torch.float32)


def test_gpu_row_blocks(monkeypatch, device, seeded):
    """The row blocks the GPU uses (32 rows forward, 16 backward), also under the interpreter."""
    monkeypatch.setattr(cross_layer_ops, "BLOCK_B_INTERPRETER", cross_layer_ops.BLOCK_B_FWD)
    _check_two_layer_stack(BATCH, 66, "dcnv3", "lcn", device)


def test_forward_spreads_rows_over_every_sm(monkeypatch, device, seeded):
    """With fewer row blocks than SMs the forward runs one program per SM on an even share of the
    rows, in 16-row blocks where the shares fit (batch 2048 on an H100's 132 SMs: 15 or 16 rows
    each); here 37 rows over 5 "SMs" (7 or 8 rows each)."""
    assert cross_layer_ops._fwd_grid(2048, 32, 132) == (16, 132)
    assert cross_layer_ops._fwd_grid(2048, 32, 108) == (32, 108)
    assert cross_layer_ops._fwd_grid(8192, 32, 132) == (32, 256)
    assert cross_layer_ops._fwd_grid(2048, 32, None) == (32, 64)
    monkeypatch.setattr(cross_layer_ops, "_device_sms", lambda device: 5)
    assert cross_layer_ops._fwd_grid(37, cross_layer_ops.BLOCK_B_INTERPRETER, 5) == (16, 5)
    _check_two_layer_stack(37, 192, "mdaf", "ecn", device)


@pytest.mark.parametrize("formula", FORMULAS)
def test_wide_rows(formula, device, seeded):
    """Width 300 (padded to 512; DCNv3's halves to 256): fewer rows per program on GPUs."""
    _check_two_layer_stack(20, 300, formula, "ecn", device)


def test_empty_batch(device):
    x = torch.randn(0, 8, device=device, requires_grad=True)
    weight = torch.randn(2, 8, 8, device=device, requires_grad=True)
    out = cross_stack(x, weight, kind="ecn")
    assert out.shape == (0, 8)
    out.sum().backward()
    assert torch.count_nonzero(weight.grad) == 0


def test_backward_is_deterministic(device, seeded):
    width = 192
    x = torch.randn(BATCH, width, device=device, requires_grad=True)
    params = _params(width, "dcnv3", 2, torch.float32, device)
    dy = torch.randn(BATCH, width, device=device)
    runs = [_grads(cross_stack(x, **params, kind="lcn", formula="dcnv3"), dy, {"x": x, **params})
            for _ in range(2)]
    for name in runs[0]:
        assert torch.equal(runs[0][name], runs[1][name]), name


def test_tf32_default_is_close(device, seeded):
    """The default ``allow_tf32=True`` (tf32 GEMMs on GPU) stays within tf32 rounding, which has the
    10-bit mantissa of fp16, hence fp16's tolerance."""
    width = 100
    x = torch.randn(BATCH, width, device=device, requires_grad=True)
    params = _params(width, "mdaf", 2, torch.float32, device)
    out = cross_stack(x, **params, kind="lcn", formula="mdaf")
    dy = torch.randn_like(out)
    grads = _grads(out, dy, {"x": x, **params})
    x64, p64 = _leaf64(x), {k: _leaf64(v) for k, v in params.items()}
    ref = cross_stack_ref(x64, **p64, kind="lcn", formula="mdaf")
    ref_grads = _grads(ref, dy.double(), {"x": x64, **p64})
    assert_close(out, ref, torch.float16, name="y")
    for name, grad in grads.items():
        assert_close(grad, ref_grads[name], torch.float16, name=f"d{name}")


@pytest.mark.parametrize("formula", FORMULAS)
def test_torch_backend_matches_reference(formula, device, seeded):
    """The reference path of the ops (the CPU path), forward and backward."""
    width, kind = 66, "lcn"
    x = torch.randn(BATCH, width, device=device, dtype=torch.float64, requires_grad=True)
    params = _params(width, formula, 2, torch.float64, device)
    with backend.use("torch"):
        out = cross_stack(x, **params, kind=kind, formula=formula)
        dy = torch.randn_like(out)
        grads = _grads(out, dy, {"x": x, **params})
    x64, p64 = _leaf64(x), {k: _leaf64(v) for k, v in params.items()}
    ref = cross_stack_ref(x64, **p64, kind=kind, formula=formula)
    _check_all(out, grads, ref, _grads(ref, dy, {"x": x64, **p64}), torch.float64)


@pytest.mark.parametrize("use_backend", ["torch", "auto"])
def test_opcheck(use_backend, device, seeded):
    batch, width = 5, 16
    x = torch.randn(batch, width, device=device, requires_grad=True)
    layer = _params(width, "dcnv3", None, torch.float32, device)
    stack = _params(width, "mdaf", 2, torch.float32, device)
    with backend.use(use_backend):
        x0 = x.detach().clone().requires_grad_()
        torch.library.opcheck(torch.ops.mdaf_kernels.cross_layer.default,
                              (x, x0, *layer.values(), "lcn", "dcnv3", 1e-5, False))
        torch.library.opcheck(torch.ops.mdaf_kernels.cross_stack.default,
                              (x, stack["weight"], stack["bias"], None, None, "ecn", "mdaf", 1e-5, False))


def test_compiles_without_graph_breaks(device, seeded):
    width = 16
    x = torch.randn(6, width, device=device, requires_grad=True)
    params = _params(width, "dcnv3", 2, torch.float32, device)

    def fn(x, weight, bias, ln_weight, ln_bias):
        y = cross_stack(x, weight, bias, ln_weight=ln_weight, ln_bias=ln_bias, kind="ecn", formula="dcnv3")
        return cross_layer(y, x, weight[0], bias[0], ln_weight=ln_weight[0], ln_bias=ln_bias[0],
                           formula="dcnv3")

    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    out = compiled(x, **params)
    out.sum().backward()
    assert_close(out, fn(x, **params), torch.float32)
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_bad_inputs(device):
    x = torch.randn(4, 8, device=device)
    w = torch.randn(8, 8, device=device)
    with pytest.raises(ValueError, match="weight: expected shape"):
        cross_layer(x, x, torch.randn(8, 6, device=device))
    with pytest.raises(ValueError, match="weight: expected shape"):
        cross_layer(x, x, w, formula="dcnv3")  # dcnv3 projects to width // 2
    with pytest.raises(ValueError, match="x0: expected shape"):
        cross_layer(x, x[:3], w)
    with pytest.raises(ValueError, match="bias: expected shape"):
        cross_layer(x, x, w, torch.randn(7, device=device))
    with pytest.raises(ValueError, match="even width"):
        cross_layer(torch.randn(4, 7, device=device), None, torch.randn(3, 7, device=device), kind="ecn",
                    formula="dcnv3")
    with pytest.raises(ValueError, match="even width"):
        cross_stack(torch.randn(4, 9, device=device), torch.randn(2, 4, 9, device=device), formula="dcnv3")
    with pytest.raises(ValueError, match="x0: kind='lcn'"):
        cross_layer(x, None, w)
    with pytest.raises(ValueError, match="ln_weight: only formula='dcnv3'"):
        cross_layer(x, x, w, ln_weight=torch.ones(4, device=device))
    with pytest.raises(ValueError, match="kind: expected"):
        cross_layer(x, x, w, kind="dcn")
    with pytest.raises(ValueError, match="formula: expected"):
        cross_stack(x, w[None], formula="dcnv2")
    with pytest.raises(ValueError, match="eps"):
        cross_layer(x, x, w, eps=0.0)
    with pytest.raises(TypeError, match="x: expected dtype"):
        cross_layer(x.long(), x, w)
    with pytest.raises(TypeError, match="weight: expected dtype"):
        cross_layer(x, x, w.half())
    with pytest.raises(TypeError, match="x0: expected dtype"):
        cross_layer(x, x.bfloat16(), w)
    with pytest.raises(ValueError, match="weight: expected a tensor on"):
        cross_layer(x, x, w.to("meta"))
    with pytest.raises(ValueError, match="x0: expected a tensor on"):
        cross_layer(x, x.to("meta"), w)
    with pytest.raises(ValueError, match="bias: expected a tensor on"):
        cross_stack(x, w[None], torch.zeros(1, 8, device="meta"))
    with pytest.raises(ValueError, match="weight: expected a 3-D tensor"):
        cross_stack(x, w)
    with pytest.raises(ValueError, match="at least one layer"):
        cross_stack(x, w[None][:0])
    with pytest.raises(ValueError, match="x: expected a 2-D tensor"):
        cross_layer(x[None], x, w)


def test_compile_specs_cover_the_kernels():
    specs = compile_specs()
    names = {s.name.split("[")[0] for s in specs}
    assert names == {"cross_layer_fwd", "cross_stack_fwd", "cross_layer_bwd_rows", "cross_bwd_dw_gemm"}
    for spec in specs:
        assert set(spec.signature) == set(spec.kernel.arg_names), spec.name
        constexpr_args = {a for a, t in spec.signature.items() if t == "constexpr"}
        assert constexpr_args <= set(spec.constexprs), spec.name
