"""Whole-model benchmark cases, plain functions without pytest (bench_models.py and
bench_activation_memory.py build on them). ``python benchmarks/model_cases.py`` times them without
pytest (what gpu_check falls back to on a machine without pytest) and writes the results file;
``python benchmarks/model_cases.py --under-load`` prints, as JSON, an MDAF training step's time on
CPU alone and beside a competing CPU-bound process (``train_step_under_load``).

Configuration (the same for every model):

- the paper's: batch 2048 (on a CPU also 512, the CPU training default), history length L = 50,
  embedding width D = 64, each model at its paper defaults (``mdaf.models.build_model(name, meta)``);
- vocabularies of a Taobao UserBehavior sample of about one million behaviours: 10,000 users
  (UserBehavior averages about 100 behaviours per user), 350,000 items, 6,000 categories. The
  embedding tables (about 23M parameters) are shared in size by all models, so they add the same
  parameter, gradient and AdamW-state memory to each;
- random ids, right-padded histories with lengths uniform in [0, L] (shapes, hence work, do not
  depend on the lengths);
- input value checks off (``validate_inputs = False``, the same for every model: the batches are valid
  by construction, and the check's device-to-host synchronisation would break the compiled graph);
- a training step is forward, binary cross-entropy, backward and an AdamW step (dropout on);
  inference is a forward pass under ``torch.inference_mode`` in eval mode.

Variants: ``mdaf/triton`` (the Triton kernels; CUDA only, interpreter timings are never reported),
``mdaf/cpu`` (the compiled CPU kernels, numba: what a CPU runs by default when numba is installed),
``mdaf/reference`` (the PyTorch reference ops, eager: the custom ops with their reference forward and
memory-lean backward; on a CPU at the paper's batch only, the figure the compiled kernels are
compared with), ``mdaf/compile`` (the plain reference functions, without the custom ops, under
``torch.compile``: what the compiler alone makes of a pure-PyTorch MDAF, the baseline a hand-written
kernel must beat), ``bst/eager``, and, for the saved-activation count only, ``mdaf/autograd`` (the
plain reference functions differentiated by autograd: what a pure-PyTorch MDAF keeps for backward).
Compilation (numba's, cached on disk, or torch.compile's) happens in the untimed first calls; their
seconds are recorded with each row as ``first_calls_s``, so a cold cache's cost is reported too.
The backend is chosen with the ``MDAF_KERNELS_BACKEND`` environment variable rather than
``backend.use(...)``: autograd runs CUDA backward passes on its own threads, which do not see a
context variable set in the calling thread.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from mdaf.models import build_model
from mdaf.schema import DatasetMeta
from mdaf_kernels.backend import ENV_VAR, cpu_compiler_available
from mdaf_kernels.tools import bench_results
from mdaf_kernels.tools.memory import PeakMemory, count_saved_tensors

META = DatasetMeta(num_users=10_000, num_items=350_000, num_categories=6_000, max_len=50)
PAPER_BATCH = 2048
# On a CPU the paper's batch and the CPU training default (mdaf.cli). MDAF_BENCH_CPU_BATCH (one size)
# overrides them for a quick look.
# The paper's batch first: a results table pairing rows by model and mode alone then pairs those.
CPU_BATCHES = tuple(int(b) for b in os.environ.get("MDAF_BENCH_CPU_BATCH", f"{PAPER_BATCH},512").split(","))


@dataclass(frozen=True)
class Variant:
    model: str  # registry name
    variant: str  # triton | reference | compile | eager | autograd
    backend: str | None  # MDAF_KERNELS_BACKEND during the case, None: untouched

    @property
    def id(self) -> str:
        return f"{self.model}-{self.variant}"


VARIANTS = (
    Variant("mdaf", "triton", "triton"),
    Variant("mdaf", "cpu", "cpu"),
    Variant("mdaf", "reference", "torch"),
    Variant("mdaf", "compile", "torch"),
    Variant("bst", "eager", None),
    # Saved-activation counts only: the plain-PyTorch baseline of the ops' memory-lean backward.
    Variant("mdaf", "autograd", "torch"),
)
VARIANTS_BY_ID = {v.id: v for v in VARIANTS}
TIMED_VARIANTS = tuple(v for v in VARIANTS if v.variant != "autograd")


def batch_sizes(device: torch.device) -> tuple[int, ...]:
    return (PAPER_BATCH,) if device.type == "cuda" else CPU_BATCHES


def skip_reason(variant: Variant, device: torch.device, batch: int | None = None) -> str | None:
    """Why a variant is not measured on ``device`` at ``batch`` (None: it is)."""
    if variant.variant == "triton" and device.type != "cuda":
        return "Triton rows need a CUDA device: interpreter timings are not reported"
    if variant.variant == "compile" and device.type != "cuda":
        return "torch.compile on CPU spends minutes building C++ kernels for the unrolled scan; GPU only"
    if variant.variant == "cpu" and device.type != "cpu":
        return "the compiled CPU kernels run on CPU tensors only"
    if variant.variant == "cpu" and not cpu_compiler_available():
        return "the compiled CPU kernels need numba (pip install -e \".[cpu]\")"
    if variant.variant == "reference" and device.type == "cpu" and batch not in (None, PAPER_BATCH):
        return "the PyTorch reference path is timed at the paper's batch only (it takes seconds per step)"
    return None


@contextlib.contextmanager
def backend_env(backend: str | None) -> Iterator[None]:
    """Set MDAF_KERNELS_BACKEND for the block (visible to autograd's worker threads too)."""
    old = os.environ.get(ENV_VAR)
    if backend is not None:
        os.environ[ENV_VAR] = backend
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(ENV_VAR, None)
        else:
            os.environ[ENV_VAR] = old


@contextlib.contextmanager
def plain_autograd_ops() -> Iterator[None]:
    """Swap the ops for their plain-PyTorch references, differentiated by autograd (no custom ops).

    What a pure-PyTorch MDAF keeps for backward: the baseline the ops' memory-lean backward is
    measured against. Raises if a swapped function was never called (the modules stopped calling
    the ops through these names), so the row cannot silently measure the ops.
    """
    import mdaf_kernels
    import mdaf_kernels.nn.cross_network as cross_network
    from mdaf_kernels.reference.causal_conv1d import causal_conv1d_ref
    from mdaf_kernels.reference.cross_layer import cross_layer_ref, cross_stack_ref
    from mdaf_kernels.reference.selective_scan import selective_scan_ref

    calls: dict[str, int] = {}

    def counted(name, fn):
        def wrapper(*args, allow_tf32=None, **kwargs):
            calls[name] = calls.get(name, 0) + 1
            return fn(*args, **kwargs)

        return wrapper

    swaps = [
        (mdaf_kernels, "selective_scan_fn", selective_scan_ref),
        (mdaf_kernels, "causal_conv1d_fn", causal_conv1d_ref),
        (cross_network, "cross_layer", cross_layer_ref),
        (cross_network, "cross_stack", cross_stack_ref),
    ]
    originals = [(module, name, getattr(module, name)) for module, name, _ in swaps]
    for module, name, fn in swaps:
        setattr(module, name, counted(name, fn))
    try:
        yield
    finally:
        for module, name, fn in originals:
            setattr(module, name, fn)
    if (
        "selective_scan_fn" not in calls
        or "causal_conv1d_fn" not in calls
        or not ({"cross_layer", "cross_stack"} & calls.keys())
    ):
        raise RuntimeError(f"plain_autograd_ops: the model did not call every swapped op (calls: {calls})")


@contextlib.contextmanager
def variant_context(variant: Variant) -> Iterator[None]:
    """The backend (and, for the plain-PyTorch variants, the swapped ops) a variant runs with."""
    with (
        backend_env(variant.backend),
        plain_autograd_ops() if variant.variant in ("autograd", "compile") else contextlib.nullcontext(),
    ):
        yield


def make_batch(meta: DatasetMeta, batch: int, device: torch.device, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random features obeying mdaf.schema: ids >= 1, right-padded histories."""
    g = torch.Generator().manual_seed(seed)
    length = meta.max_len
    hist_len = torch.randint(0, length + 1, (batch,), generator=g)
    valid = torch.arange(length)[None, :] < hist_len[:, None]
    hist_items = torch.randint(1, meta.num_items, (batch, length), generator=g) * valid
    hist_cats = torch.randint(1, meta.num_categories, (batch, length), generator=g) * valid
    features = {
        "user": torch.randint(1, meta.num_users, (batch,), generator=g),
        "item": torch.randint(1, meta.num_items, (batch,), generator=g),
        "category": torch.randint(1, meta.num_categories, (batch,), generator=g),
        "hist_items": hist_items,
        "hist_cats": hist_cats,
        "hist_len": hist_len,
    }
    features = {k: v.to(device) for k, v in features.items()}
    labels = torch.randint(0, 2, (batch,), generator=g).float().to(device)
    return {"features": features, "labels": labels}


def build(variant: Variant, device: torch.device, meta: DatasetMeta = META) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(variant.model, meta).to(device)
    # The random batches are valid by construction; the per-call value check would add a
    # device-to-host synchronisation to every timing and break the compiled graph in two.
    model.validate_inputs = False
    return model


def parameter_counts(model: torch.nn.Module) -> dict[str, int]:
    total = sum(p.numel() for p in model.parameters())
    embedding = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Embedding))
    return {"params": total, "params_without_embeddings": total - embedding}


def train_step_fn(variant: Variant, model: torch.nn.Module, batch: dict) -> Callable[[], None]:
    """One training step: forward, BCE, backward, AdamW step."""
    model.train()
    # fused, as the trainer builds it: the same optimizer for every model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    forward = torch.compile(model) if variant.variant == "compile" else model
    features, labels = batch["features"], batch["labels"]

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(forward(**features), labels)
        loss.backward()
        optimizer.step()

    return step


def inference_fn(variant: Variant, model: torch.nn.Module, batch: dict) -> Callable[[], None]:
    model.eval()
    forward = torch.compile(model) if variant.variant == "compile" else model
    features = batch["features"]

    def infer() -> None:
        with torch.inference_mode():
            forward(**features)

    return infer


MODES = {"train": train_step_fn, "infer": inference_fn}


def saved_activation_bytes(
    variant: Variant, device: torch.device, batch: int, meta: DatasetMeta = META
) -> dict:
    """Bytes one training-mode forward pass keeps for backward at ``batch`` (parameters apart)."""
    with variant_context(variant):
        model = build(variant, device, meta)
        model.train()
        features = make_batch(meta, batch, device)["features"]
        with count_saved_tensors(model.parameters()) as saved:
            model(**features)
    return {
        "batch": batch,
        "activation_bytes": saved.activation_bytes,
        "parameter_bytes": saved.parameter_bytes,
    }


def activation_bytes_per_sample(variant: Variant, device: torch.device, batches: tuple[int, int]) -> dict:
    """Saved bytes per sample: the slope between two batch sizes, so constant terms cancel."""
    small, large = (saved_activation_bytes(variant, device, b) for b in batches)
    per_sample = (large["activation_bytes"] - small["activation_bytes"]) / (large["batch"] - small["batch"])
    return {"activation_bytes_per_sample": per_sample, "counted_at": [small, large]}


def prepare_case(
    variant: Variant, mode: str, device: torch.device, batch: int
) -> tuple[Callable[[], None], int, dict]:
    """Build the model and its step and make the untimed first calls; call inside ``variant_context``.

    Compilation, autotuning and the optimizer's state happen in the first calls, so they are neither
    timed nor counted in a peak measured afterwards (steady-state training memory). Returns the step,
    the batch size and the row's ``extra_info``.
    """
    model = build(variant, device)
    fn = MODES[mode](variant, model, make_batch(META, batch, device))
    start = time.perf_counter()
    for _ in range(2 if variant.variant == "compile" else 1):
        fn()
    info = {"model": variant.model, "variant": variant.variant, "mode": mode, "seq_len": META.max_len,
            "first_calls_s": time.perf_counter() - start}
    return fn, batch, {**info, **parameter_counts(model)}


@contextlib.contextmanager
def model_case(
    variant: Variant, mode: str, device: torch.device, batch: int
) -> Iterator[tuple[Callable[[], None], int, dict]]:
    """``prepare_case`` inside the variant's context; yields (step, batch, extra_info).

    On exit, on a CPU, ``extra_info["peak_rss_added_bytes"]`` gets what the whole case added to the
    resident set (model, optimizer state, inputs, activations: the analogue of CUDA's max allocated,
    since the process's resident set holds whatever earlier rows left), and compiled graphs, which
    keep their model alive, are dropped so that later rows do not count their memory.
    """
    with variant_context(variant), PeakMemory(device) as case_memory:
        fn, batch, info = prepare_case(variant, mode, device, batch)
        yield fn, batch, info
    if device.type == "cpu":
        info["peak_rss_added_bytes"] = case_memory.added_bytes
    if variant.variant == "compile":
        torch._dynamo.reset()


def case_name(variant: Variant, mode: str, batch: int) -> str:
    """bench_models.py's test id of a case."""
    return f"test_model[{variant.id}-{mode}-{batch}]"


def measure(variant: Variant, mode: str, device: torch.device, batch: int, *, rounds: int = 5) -> dict:
    """Time one case outside pytest: the results row bench_models.py would write."""
    with model_case(variant, mode, device, batch) as (fn, batch, info), PeakMemory(device) as memory:
        times = bench_results.time_calls(fn, device, rounds=rounds)
    time_s = bench_results.time_stats(times)
    memory_key = "peak_memory_bytes" if device.type == "cuda" else "peak_rss_bytes"
    info.update(
        {memory_key: memory.peak_bytes},
        device=bench_results.device_name(device),
        dtype="float32",
        batch=batch,
        samples_per_s=batch / time_s["median"],
    )
    name = case_name(variant, mode, batch)
    return bench_results.make_record(
        f"benchmarks/bench_models.py::{name}",
        name,
        f"model-{mode}",
        {"variant_id": variant.id, "mode": mode, "batch": batch},
        time_s,
        info,
    )


def mdaf_bst_ratios(records: list[dict]) -> list[str]:
    """MDAF's throughput over BST's per MDAF variant, mode and batch, from rows of one run."""
    rows = {}
    for record in records:
        info = record["extra_info"]
        rows[(info["model"], info["variant"], info["mode"], info["batch"])] = info["samples_per_s"]
    lines = []
    for (model, variant, mode, batch), samples_per_s in rows.items():
        bst = rows.get(("bst", "eager", mode, batch))
        if model == "mdaf" and bst:
            lines.append(f"MDAF ({variant}) / BST, {mode}, batch {batch}: {samples_per_s:,.0f} / {bst:,.0f} "
                         f"samples/s = {samples_per_s / bst:.2f}x")
    return lines


# The competing process of the under-load case: one CPU-bound Python loop.
BUSY_LOOP = "while True: pass"
UNDER_LOAD_FLAG = "--under-load"


def median_step_seconds(fn: Callable[[], None], steps: int) -> float:
    return bench_results.time_stats(bench_results.time_calls(fn, torch.device("cpu"), rounds=steps,
                                                             warmup_rounds=0))["median"]


def train_step_under_load(model_name: str = "mdaf", batch: int = 512, steps: int = 3) -> dict:
    """Median training-step seconds on CPU alone and beside one CPU-bound process, with the thread count
    the trainer picks (mdaf.train.threads), and the slowdown a fair share of the cores would explain.

    With ``t`` threads and one competitor on ``c`` cores, each runnable thread gets ``c / (t + 1)`` of a
    core once ``t + 1 > c``: the proportional slowdown is ``(t + 1) / c`` (1.5x for 2 threads on 2 cores).
    """
    from mdaf.train.threads import available_cpus, set_num_threads

    threads, source = set_num_threads()
    device = torch.device("cpu")
    variant = Variant(model_name, "default", None)
    model = build(variant, device)
    fn = train_step_fn(variant, model, make_batch(META, batch, device))
    fn()  # compilation (or the compiled-code cache) and the optimizer state, untimed
    alone = median_step_seconds(fn, steps)
    competitor = subprocess.Popen([sys.executable, "-c", BUSY_LOOP])
    try:
        loaded = median_step_seconds(fn, steps)
    finally:
        competitor.kill()
        competitor.wait()
    cores = available_cpus()
    return {
        "model": model_name, "batch": batch, "threads": threads, "threads_source": source, "cores": cores,
        "alone_s": alone, "loaded_s": loaded, "slowdown": loaded / alone,
        "proportional_slowdown": max(1.0, (threads + 1) / cores),
        "openmp_wait": {k: os.environ[k] for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT") if k in os.environ},
    }


def main(argv: list[str]) -> int:
    if argv == [UNDER_LOAD_FLAG]:
        print(json.dumps(train_step_under_load()))
        return 0
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    records = []
    for variant in TIMED_VARIANTS:
        for batch in batch_sizes(device):
            reason = skip_reason(variant, device, batch)
            for mode in MODES:
                if reason:
                    print(f"SKIPPED {variant.id}-{mode}-{batch}: {reason}")
                    continue
                records.append(measure(variant, mode, device, batch))
                median_ms = records[-1]["time_s"]["median"] * 1e3
                print(f"{variant.id}-{mode}-{batch}: {median_ms:.2f} ms", flush=True)
    print("\n".join(mdaf_bst_ratios(records)))
    results_dir = Path(__file__).resolve().parent / "results"
    repo = results_dir.parents[1]
    path = bench_results.write_results(
        results_dir, bench_results.device_name(device), records, bench_results.environment(repo)
    )
    print(f"wrote {path.relative_to(repo)} and {bench_results.write_readme(results_dir).relative_to(repo)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
