"""causal_conv1d_fn: Triton kernels (the interpreter on CPU) against a float64 F.conv1d reference."""

from __future__ import annotations

import itertools
import subprocess
import sys
import warnings

import pytest
import torch

import mdaf_kernels
from mdaf_kernels import backend
from mdaf_kernels.ops import causal_conv1d as ops
from mdaf_kernels.reference.causal_conv1d import causal_conv1d_bwd_ref, causal_conv1d_ref
from mdaf_kernels.tools.memory import count_saved_tensors
from tests.tolerance import assert_close, poison_

# 20 channels: not a power of two, so the channel block (32 here) is partly masked.
DIM = 20
BATCH = 2
WIDTH_LENGTHS = list(itertools.product((2, 3, 4), (1, 7, 50, 129)))
FLAGS = list(itertools.product((torch.float32, torch.bfloat16), ("channel-first", "channel-last"),
                               (True, False), (True, False)))
# Every (dtype, layout, bias, silu) combination once, walking through all (width, seqlen) pairs.
CASES = [(*WIDTH_LENGTHS[i % len(WIDTH_LENGTHS)], *flags) for i, flags in enumerate(FLAGS)]


def make_x(batch: int, dim: int, seqlen: int, dtype: torch.dtype, layout: str, device) -> torch.Tensor:
    """x (batch, dim, seqlen); channel-last is the transposed view of a (batch, seqlen, dim) tensor;
    channel-last-slice the first half of a (batch, seqlen, 2 * dim) one, as Mamba's x after in_proj."""
    if layout == "channel-last":
        return torch.randn(batch, seqlen, dim, device=device, dtype=dtype).transpose(1, 2)
    if layout == "channel-last-slice":
        return torch.randn(batch, seqlen, 2 * dim, device=device, dtype=dtype).transpose(1, 2)[:, :dim]
    return torch.randn(batch, dim, seqlen, device=device, dtype=dtype)


def make_params(dim: int, width: int, dtype: torch.dtype, with_bias: bool, device):
    weight = torch.randn(dim, width, device=device, dtype=dtype) * 0.5
    bias = torch.randn(dim, device=device, dtype=dtype) if with_bias else None
    return weight, bias


def reference_grads(x, weight, bias, silu: bool, dout):
    """Float64 forward and (dx, dweight, dbias) from autograd through the F.conv1d reference."""
    x64 = x.detach().double().requires_grad_()
    w64 = weight.detach().double().requires_grad_()
    b64 = bias.detach().double().requires_grad_() if bias is not None else None
    out = causal_conv1d_ref(x64, w64, b64, "silu" if silu else None)
    out.backward(dout.double())
    return out.detach(), x64.grad, w64.grad, None if bias is None else b64.grad


@pytest.mark.parametrize(("width", "seqlen", "dtype", "layout", "with_bias", "silu"), CASES)
def test_kernels_match_float64_reference(width, seqlen, dtype, layout, with_bias, silu, device, seeded):
    # 5 rows: the forward's last row block is partly masked; max_programs=2 gives each backward
    # program a run of 3 rows, i.e. two row blocks for the first (the second one partly masked).
    x = make_x(5, DIM, seqlen, dtype, layout, device)
    weight, bias = make_params(DIM, width, dtype, with_bias, device)
    dout = make_x(5, DIM, seqlen, dtype, layout, device)
    ref, dx_ref, dw_ref, db_ref = reference_grads(x, weight, bias, silu, dout)

    out = ops._launch_fwd(x, weight, bias, silu, poison_(torch.empty_like(x)))
    dx, dw, db = ops._launch_bwd(x, weight, bias, dout, silu, poison_(torch.empty_like(x)), max_programs=2)

    assert_close(out, ref, dtype, name="out")
    assert_close(dx, dx_ref, dtype, name="dx")
    # dweight/dbias come back in fp32 from bf16 inputs: judged at the input dtype's tolerance.
    assert_close(dw, dw_ref, dtype, name="dweight")
    if with_bias:
        assert_close(db, db_ref, dtype, name="dbias")


def test_int64_offset_path_matches_reference(device, seeded, monkeypatch):
    monkeypatch.setattr(ops, "_needs_int64_offsets", lambda *tensors: True)
    x = make_x(BATCH, DIM, 40, torch.float32, "channel-last", device).requires_grad_()
    weight, bias = make_params(DIM, 4, torch.float32, True, device)
    dout = torch.randn(BATCH, DIM, 40, device=device)
    ref, dx_ref, dw_ref, db_ref = reference_grads(x, weight, bias, True, dout)
    out = ops._launch_fwd(x.detach(), weight, bias, True, poison_(torch.empty_like(x)))
    dx, dw, db = ops._launch_bwd(x.detach(), weight, bias, dout, True, poison_(torch.empty_like(x)))
    for name, got, want in (("out", out, ref), ("dx", dx, dx_ref), ("dweight", dw, dw_ref),
                            ("dbias", db, db_ref)):
        assert_close(got, want, torch.float32, name=name)


@pytest.mark.parametrize(("width", "silu", "with_bias"),
                         [(2, True, True), (4, False, True), (3, True, False)])
def test_reference_backward_matches_autograd(width, silu, with_bias, seeded):
    x = make_x(3, 6, 11, torch.float64, "channel-last", "cpu")
    weight, bias = make_params(6, width, torch.float64, with_bias, "cpu")
    dout = torch.randn(3, 6, 11, dtype=torch.float64)
    # Without a bias, dbias is the gradient a zero bias would get.
    zero_or_bias = bias if with_bias else torch.zeros(6, dtype=torch.float64)
    _, dx_ref, dw_ref, db_ref = reference_grads(x, weight, zero_or_bias, silu, dout)
    dx, dw, db = causal_conv1d_bwd_ref(x, weight, bias, dout, "silu" if silu else None)
    assert_close(dx, dx_ref, torch.float64, name="dx")
    assert_close(dw, dw_ref, torch.float64, name="dweight")
    assert_close(db, db_ref, torch.float64, name="dbias")


def test_needs_int64_offsets_detects_large_in_batch_strides():
    small = torch.empty(4, 128, 50, device="meta")
    huge = torch.empty_strided((1, 4, 8), (1, 2**29, 1), device="meta")
    assert not ops._needs_int64_offsets(small)
    assert ops._needs_int64_offsets(small, huge)


@pytest.mark.parametrize(("layout", "with_bias", "activation", "dtype"), [
    ("channel-first", True, "silu", torch.float32),
    ("channel-last", False, None, torch.float32),
    ("channel-last", True, "swish", torch.bfloat16),
    ("channel-last-slice", True, "silu", torch.float32),
])
@pytest.mark.parametrize("be", ["auto", "cpu"])
def test_public_function_autograd(be, layout, with_bias, activation, dtype, device, seeded):
    """Through causal_conv1d_fn and autograd: the default backend (Triton, interpreted on CPU) and the
    compiled CPU kernel; values, dtypes and the output layout."""
    if be == "cpu":
        pytest.importorskip("numba", reason="the compiled CPU kernel needs numba (the [cpu] extra)")
        device = torch.device("cpu")
    x = make_x(BATCH, DIM, 19, dtype, layout, device).requires_grad_()
    weight, bias = make_params(DIM, 3, dtype, with_bias, device)
    weight.requires_grad_()
    if bias is not None:
        bias.requires_grad_()
    dout = torch.randn(BATCH, DIM, 19, device=device, dtype=dtype)
    ref, dx_ref, dw_ref, db_ref = reference_grads(x, weight, bias, activation is not None, dout)

    with backend.use(be):
        out = mdaf_kernels.causal_conv1d_fn(x, weight, bias, activation=activation)
    out.backward(dout)  # outside the block: the backward runs where its forward ran

    assert out.dtype == dtype and out.shape == x.shape
    # Channel-last in, channel-last out (dense), so a following (batch, seqlen, dim) matmul needs no copy.
    assert out.stride(1) == (1 if layout.startswith("channel-last") else out.shape[2])
    assert out.transpose(1, 2).is_contiguous() == layout.startswith("channel-last")
    assert_close(out, ref, dtype, name="out")
    assert x.grad.dtype == dtype and weight.grad.dtype == dtype
    assert_close(x.grad, dx_ref, dtype, name="dx")
    assert_close(weight.grad, dw_ref, dtype, name="dweight")
    if bias is not None:
        assert_close(bias.grad, db_ref, dtype, name="dbias")


def test_mixed_dtypes_and_strided_parameters(device, seeded):
    # bf16 activations with fp32 parameters (as under mixed precision); bias a strided view.
    x = make_x(BATCH, DIM, 13, torch.bfloat16, "channel-first", device).requires_grad_()
    weight = (0.5 * torch.randn(4, DIM, device=device)).t().requires_grad_()
    bias = torch.randn(DIM, 2, device=device)[:, 0].detach().requires_grad_()
    assert weight.stride() == (1, DIM) and bias.stride() == (2,)
    dout = torch.randn(BATCH, DIM, 13, device=device, dtype=torch.bfloat16)
    ref, dx_ref, dw_ref, db_ref = reference_grads(x, weight, bias, True, dout)
    out = mdaf_kernels.causal_conv1d_fn(x, weight, bias, "silu")
    out.backward(dout)
    assert out.dtype == torch.bfloat16 and weight.grad.dtype == bias.grad.dtype == torch.float32
    assert_close(out, ref, torch.bfloat16, name="out")
    assert_close(x.grad, dx_ref, torch.bfloat16, name="dx")
    assert_close(weight.grad, dw_ref, torch.bfloat16, name="dweight")
    assert_close(bias.grad, db_ref, torch.bfloat16, name="dbias")


def test_sum_backward_with_expanded_gradient(device, seeded):
    # out.sum() hands the backward a stride-0 (expanded) gradient; the kernel reads it through strides.
    x = make_x(BATCH, DIM, 33, torch.float32, "channel-first", device).requires_grad_()
    weight, bias = make_params(DIM, 4, torch.float32, True, device)
    mdaf_kernels.causal_conv1d_fn(x, weight, bias, "silu").sum().backward()
    _, dx_ref, _, _ = reference_grads(x, weight, bias, True, torch.ones(BATCH, DIM, 33, device=device))
    assert_close(x.grad, dx_ref, torch.float32, name="dx")


def test_torch_backend_matches_triton_backend(device, seeded):
    x = make_x(BATCH, DIM, 21, torch.float32, "channel-last", device)
    weight, bias = make_params(DIM, 4, torch.float32, True, device)
    with backend.use("torch"):
        via_torch = mdaf_kernels.causal_conv1d_fn(x, weight, bias, "silu")
    via_kernel = mdaf_kernels.causal_conv1d_fn(x, weight, bias, "silu")
    assert via_torch.stride() == via_kernel.stride() == x.stride()
    assert_close(via_kernel, via_torch, torch.float32)


def test_backward_is_deterministic(device, seeded):
    x = make_x(3, DIM, 70, torch.float32, "channel-first", device).requires_grad_()
    weight, bias = make_params(DIM, 4, torch.float32, True, device)
    weight.requires_grad_()
    bias.requires_grad_()
    dout = torch.randn(3, DIM, 70, device=device)
    grads = []
    for _ in range(2):
        x.grad = weight.grad = bias.grad = None
        mdaf_kernels.causal_conv1d_fn(x, weight, bias, "silu").backward(dout)
        grads.append((x.grad.clone(), weight.grad.clone(), bias.grad.clone()))
    for first, second in zip(*grads, strict=True):
        assert torch.equal(first, second)


def test_empty_sequence(device):
    x = torch.randn(2, 5, 0, device=device, requires_grad=True)
    weight = torch.randn(5, 4, device=device, requires_grad=True)
    out = mdaf_kernels.causal_conv1d_fn(x, weight, None, "silu")
    out.sum().backward()
    assert out.shape == (2, 5, 0)
    assert torch.equal(weight.grad, torch.zeros_like(weight))


def _bad(**changes):
    args = {"x": torch.randn(2, 6, 9), "weight": torch.randn(6, 4), "bias": torch.randn(6),
            "activation": "silu"}
    args.update(changes)
    return args


@pytest.mark.parametrize(("args", "error", "match"), [
    (_bad(x=torch.randn(6, 9)), ValueError, r"x: expected a 3-D tensor"),
    (_bad(weight=torch.randn(6, 1, 4)), ValueError, r"weight: expected a 2-D tensor"),
    (_bad(weight=torch.randn(5, 4)), ValueError,
     r"weight: expected shape \(dim, width\) with dim = x.shape\[1\] = 6"),
    (_bad(weight=torch.randn(6, 5)), ValueError, r"weight: width .* must be one of \(2, 3, 4\), got 5"),
    (_bad(weight=torch.randn(6, 1)), ValueError, r"weight: width .* got 1"),
    (_bad(bias=torch.randn(7)), ValueError, r"bias: expected shape \(6,\)"),
    (_bad(x=torch.randint(0, 5, (2, 6, 9))), TypeError, r"x: expected dtype in .*got torch.int64"),
    (_bad(weight=torch.randn(6, 4, device="meta")), ValueError,
     r"weight: expected a tensor on cpu.*got meta"),
    (_bad(bias=torch.randn(6, device="meta")), ValueError, r"bias: expected a tensor on cpu.*got meta"),
    (_bad(activation=True), ValueError, r"activation: expected one of \(None, 'silu', 'swish'\), got True"),
    (_bad(activation="relu"), ValueError, r"activation: .*got 'relu'"),
    (_bad(x=[[1.0]]), TypeError, r"x: expected a torch.Tensor"),
])
def test_bad_input_raises_naming_the_argument(args, error, match):
    with pytest.raises(error, match=match):
        mdaf_kernels.causal_conv1d_fn(**args)


@pytest.mark.parametrize("backend_name", ["torch", "auto", "cpu"])
def test_opcheck(backend_name, seeded):
    if backend_name == "cpu":
        pytest.importorskip("numba", reason="the compiled CPU kernel needs numba (the [cpu] extra)")
    x = make_x(2, 5, 6, torch.float32, "channel-last", "cpu").requires_grad_()
    weight = torch.randn(5, 3, requires_grad=True)
    bias = torch.randn(5, requires_grad=True)
    dout = torch.randn(2, 5, 6)
    with backend.use(backend_name):
        torch.library.opcheck(ops.causal_conv1d_fwd, (x, weight, bias, True))
        torch.library.opcheck(ops.causal_conv1d_fwd, (x.detach(), weight, None, False))
        torch.library.opcheck(ops.causal_conv1d_bwd, (x.detach(), weight.detach(), None, dout, True))


def test_torch_compile_fullgraph(seeded):
    def block(x, weight, bias):
        return mdaf_kernels.causal_conv1d_fn(x * 2.0, weight, bias, activation="silu").sum()

    x = torch.randn(2, 5, 6, requires_grad=True)
    weight = torch.randn(5, 4, requires_grad=True)
    bias = torch.randn(5, requires_grad=True)
    eager_loss = block(x, weight, bias)
    eager_grads = torch.autograd.grad(eager_loss, (x, weight, bias))
    compiled = torch.compile(block, fullgraph=True, backend="aot_eager")
    loss = compiled(x, weight, bias)
    grads = torch.autograd.grad(loss, (x, weight, bias))
    assert_close(loss, eager_loss, torch.float32)
    for got, want in zip(grads, eager_grads, strict=True):
        assert_close(got, want, torch.float32)


# ----------------------------------------------------------------------------- compiled CPU kernel
CPU_LAYOUTS = ("channel-first", "channel-last", "channel-last-slice")
CPU_FLAGS = list(itertools.product((torch.float32, torch.bfloat16), CPU_LAYOUTS, (True, False),
                                   (True, False)))
# Every (dtype, layout, bias, silu) combination once, with sizes cycling so that every size meets every
# value of each flag: widths 2..4, L = 1, 7, 50 and 129, batch 1 and 5 (5 rows: parts of one row), 20
# and 37 channels (neither a multiple of a vector's 8 or 16 lanes).
CPU_CASES = [((2, 3, 4)[i % 3], (1, 7, 50, 129)[(i + i // 4) % 4], (1, 5)[(i + i // 2) % 2],
              (20, 37)[i // 3 % 2], *flags) for i, flags in enumerate(CPU_FLAGS)]


@pytest.fixture
def cpu_kernel():
    """The compiled CPU kernel module, skipping the test when numba is not installed."""
    pytest.importorskip("numba", reason="the compiled CPU kernel needs numba (the [cpu] extra)")
    from mdaf_kernels.cpu import causal_conv1d

    return causal_conv1d


@pytest.mark.parametrize(("width", "seqlen", "batch", "dim", "dtype", "layout", "with_bias", "silu"),
                         CPU_CASES)
def test_cpu_kernel_matches_float64_reference(width, seqlen, batch, dim, dtype, layout, with_bias, silu,
                                              cpu_kernel, seeded):
    x = make_x(batch, dim, seqlen, dtype, layout, "cpu")
    weight, bias = make_params(dim, width, dtype, with_bias, "cpu")
    dout = make_x(batch, dim, seqlen, dtype, layout, "cpu")
    ref, dx_ref, dw_ref, db_ref = reference_grads(x, weight, bias, silu, dout)

    out = poison_(ops._empty_like_x(x))
    assert cpu_kernel.causal_conv1d_cpu_fwd(x, weight, bias, silu, out) is out
    dx, dw, db = cpu_kernel.causal_conv1d_cpu_bwd(x, weight, bias, dout, silu, poison_(ops._empty_like_x(x)))

    assert_close(out, ref, dtype, name="out")
    assert_close(dx, dx_ref, dtype, name="dx")
    assert_close(dw, dw_ref, dtype, name="dweight")
    if with_bias:
        assert_close(db, db_ref, dtype, name="dbias")


def _strided(kind: str) -> torch.Tensor:
    """(2, 9, 11) tensors laid out in ways the kernels must read through their strides."""
    if kind == "padded-channels":  # time has unit stride, channels a stride larger than seqlen
        return torch.randn(2, 12, 11)[:, :9]
    if kind == "expanded":  # stride 0 everywhere, as out.sum().backward() hands over
        return torch.randn(()).expand(2, 9, 11)
    if kind == "no-unit-stride":  # copied before the kernel runs
        return torch.randn(2, 22, 18)[:, ::2, ::2].transpose(1, 2)[:, :9, :11]
    if kind == "second-half":  # channel-last at a storage offset, as Mamba's z
        return torch.randn(2, 11, 18).transpose(1, 2)[:, 9:]
    return make_x(2, 9, 11, torch.float32, kind, "cpu")


@pytest.mark.parametrize(("x_kind", "dout_kind"), [
    ("padded-channels", "channel-last"),
    ("channel-last-slice", "channel-first"),
    ("channel-last", "expanded"),
    ("no-unit-stride", "padded-channels"),
    ("second-half", "second-half"),
])
def test_cpu_kernel_reads_any_strides(x_kind, dout_kind, cpu_kernel, seeded):
    x, dout = _strided(x_kind), _strided(dout_kind)
    assert x.shape == dout.shape == (2, 9, 11)
    weight, bias = make_params(9, 4, torch.float32, True, "cpu")
    ref, dx_ref, dw_ref, db_ref = reference_grads(x, weight, bias, True, dout)
    out = cpu_kernel.causal_conv1d_cpu_fwd(x, weight, bias, True, poison_(ops._empty_like_x(x)))
    dx, dw, db = cpu_kernel.causal_conv1d_cpu_bwd(x, weight, bias, dout, True, poison_(ops._empty_like_x(x)))
    for name, got, want in (("out", out, ref), ("dx", dx, dx_ref), ("dweight", dw, dw_ref),
                            ("dbias", db, db_ref)):
        assert_close(got, want, torch.float32, name=name)


@pytest.mark.parametrize("layout", ["channel-first", "channel-last-slice"])
def test_cpu_kernel_results_do_not_depend_on_the_thread_count(layout, cpu_kernel, seeded):
    """The batch is split into a fixed number of parts (70 rows: parts of one and two rows), whatever
    the threads: the same dweight and dbias sums, the same bits (and the right ones)."""
    x = make_x(70, DIM, 23, torch.float32, layout, "cpu")
    weight, bias = make_params(DIM, 4, torch.float32, True, "cpu")
    dout = make_x(70, DIM, 23, torch.float32, layout, "cpu")
    _, _, dw_ref, db_ref = reference_grads(x, weight, bias, True, dout)
    threads = torch.get_num_threads()
    runs = []
    try:
        for n in (1, 2, 2):
            torch.set_num_threads(n)
            out = cpu_kernel.causal_conv1d_cpu_fwd(x, weight, bias, True, ops._empty_like_x(x))
            grads = cpu_kernel.causal_conv1d_cpu_bwd(x, weight, bias, dout, True, ops._empty_like_x(x))
            runs.append((out, *grads))
    finally:
        torch.set_num_threads(threads)
    for name, *results in zip(("out", "dx", "dweight", "dbias"), *runs, strict=True):
        assert all(torch.equal(results[0], r) for r in results[1:]), f"{name} differs between 1 and 2 threads"
    assert_close(runs[0][2], dw_ref, torch.float32, name="dweight")
    assert_close(runs[0][3], db_ref, torch.float32, name="dbias")


def test_cpu_backend_saves_only_the_inputs(cpu_kernel, seeded):
    x = make_x(BATCH, DIM, 30, torch.float32, "channel-last-slice", "cpu").requires_grad_()
    weight, bias = make_params(DIM, 4, torch.float32, True, "cpu")
    leaves = (x, weight.requires_grad_(), bias.requires_grad_())
    with backend.use("cpu"), count_saved_tensors() as saved:
        mdaf_kernels.causal_conv1d_fn(*leaves, activation="silu")
    assert saved.activation_bytes == sum(t.untyped_storage().nbytes() for t in leaves)


def test_without_numba_auto_falls_back_with_one_one_line_warning(numba_missing, seeded):
    x = make_x(BATCH, DIM, 9, torch.float32, "channel-last-slice", "cpu").requires_grad_()
    weight, bias = make_params(DIM, 4, torch.float32, True, "cpu")
    dout = torch.randn(BATCH, DIM, 9)
    ref, dx_ref, _, _ = reference_grads(x, weight, bias, True, dout)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert ops._backend_for(x) == "torch"
        out = mdaf_kernels.causal_conv1d_fn(x, weight, bias, "silu")
        out.backward(dout)
    assert_close(out, ref, torch.float32, name="out")
    assert_close(x.grad, dx_ref, torch.float32, name="dx")
    messages = [str(w.message) for w in caught if "numba" in str(w.message)]
    assert len(messages) == 1 and "\n" not in messages[0], messages
    assert messages[0].startswith("causal_conv1d_fn:") and "mdaf-kernels[cpu]" in messages[0]


def test_without_numba_an_explicit_cpu_request_raises(numba_missing):
    weight, bias = make_params(DIM, 4, torch.float32, True, "cpu")
    with backend.use("cpu"), pytest.raises(backend.BackendUnavailableError, match="numba is not installed"):
        mdaf_kernels.causal_conv1d_fn(torch.randn(1, DIM, 5), weight, bias, "silu")


def test_torch_backend_does_not_import_numba():
    code = ("import sys, torch, mdaf_kernels\n"
            "with mdaf_kernels.backend.use('torch'):\n"
            "    mdaf_kernels.causal_conv1d_fn(torch.randn(1, 4, 5), torch.randn(4, 3), None, 'silu')\n"
            "assert 'numba' not in sys.modules, 'numba imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
