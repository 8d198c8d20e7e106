"""Memory measurement for benchmarks: bytes saved for backward, and peak memory on CUDA or CPU.

``count_saved_tensors`` answers "how many bytes does this forward pass keep alive for backward?"
independently of the device's allocator: every tensor that autograd saves (built-in ops and
``ctx.save_for_backward`` in custom ops alike) passes through ``torch.autograd.graph.saved_tensors_hooks``.
Tensors are counted by their storage, once per storage, so views of one buffer (and the same tensor
saved by several ops) are not double counted, and a saved view keeps its whole storage alive, which is
what is counted. Parameters are reported apart: they are alive anyway and do not grow with the batch.
Tensors stashed as plain ``ctx`` attributes bypass the hooks and are not seen (the ops here do not do
that).

``PeakMemory`` measures the peak around a block: ``torch.cuda.max_memory_allocated`` on CUDA, and on
Linux CPUs the process's peak resident set (VmHWM), reset before the block through
``/proc/self/clear_refs`` so each measurement starts from the current resident set instead of the
process's lifetime peak. Where that reset is unavailable the lifetime peak is reported and flagged.
"""

from __future__ import annotations

import ctypes
import gc
import resource
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch


@dataclass
class SavedTensors:
    """What a forward pass saved for backward, counted once per storage."""

    activation_bytes: int = 0
    parameter_bytes: int = 0
    num_storages: int = 0
    _seen: set[int] = field(default_factory=set, repr=False)


def _storage_key(tensor: torch.Tensor) -> tuple[int, int]:
    storage = tensor.untyped_storage()
    return storage.data_ptr(), storage.nbytes()


class count_saved_tensors:
    """Context manager: count the storages saved for backward inside the block.

    ``parameters`` (e.g. ``model.parameters()``) are counted as ``parameter_bytes``, everything else as
    ``activation_bytes``. The saved tensors themselves are passed through unchanged.
    """

    def __init__(self, parameters: Iterable[torch.Tensor] = ()):
        self.result = SavedTensors()
        self._parameter_ptrs = {p.untyped_storage().data_ptr() for p in parameters}
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda tensor: tensor)

    def _pack(self, tensor: torch.Tensor) -> torch.Tensor:
        ptr, nbytes = _storage_key(tensor)
        if ptr not in self.result._seen and nbytes > 0:
            self.result._seen.add(ptr)
            self.result.num_storages += 1
            if ptr in self._parameter_ptrs:
                self.result.parameter_bytes += nbytes
            else:
                self.result.activation_bytes += nbytes
        return tensor

    def __enter__(self) -> SavedTensors:
        self._hooks.__enter__()
        return self.result

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)


def _proc_status_bytes(key: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_rss_peak() -> bool:
    """Reset VmHWM to the current resident set (Linux >= 4.0); False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return _proc_status_bytes("VmHWM") is not None


def _return_freed_memory_to_os() -> None:
    """Give freed heap pages back (glibc), so the resident set before a block reflects live data."""
    gc.collect()
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass


def lifetime_peak_rss_bytes() -> int:
    """Peak resident set of this process since it started (ru_maxrss is KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


class PeakMemory:
    """Context manager measuring peak memory inside the block on ``device``.

    After the block: ``peak_bytes`` (absolute peak: CUDA allocated bytes, or resident set on CPU),
    ``baseline_bytes`` (the same quantity on entry) and ``kind`` ("cuda_max_allocated", "rss_peak" or
    "rss_lifetime_peak" where the per-block reset is unavailable).
    """

    def __init__(self, device: torch.device | str):
        self.device = torch.device(device)
        self.peak_bytes = 0
        self.baseline_bytes = 0
        self.kind = ""

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            gc.collect()  # what earlier work left unreachable must not count in this peak
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.baseline_bytes = torch.cuda.memory_allocated(self.device)
            self.kind = "cuda_max_allocated"
        else:
            _return_freed_memory_to_os()
            if _reset_rss_peak():
                self.kind = "rss_peak"
                self.baseline_bytes = _proc_status_bytes("VmRSS") or 0
            else:
                self.kind = "rss_lifetime_peak"
                self.baseline_bytes = 0
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device)
        elif self.kind == "rss_peak":
            self.peak_bytes = _proc_status_bytes("VmHWM") or 0
        else:
            self.peak_bytes = lifetime_peak_rss_bytes()

    @property
    def added_bytes(self) -> int:
        """Peak above what was already in use on entry (0 where the baseline is unknown)."""
        return max(self.peak_bytes - self.baseline_bytes, 0) if self.baseline_bytes else 0
