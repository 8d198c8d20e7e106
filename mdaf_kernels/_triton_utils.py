"""Helpers for defining Triton kernels that work both compiled and in the CPU interpreter."""

from __future__ import annotations

import triton

from mdaf_kernels.backend import interpreter_active


def autotune(configs: list[triton.Config], key: list[str], **kwargs):
    """``triton.autotune`` on a GPU; the first config alone under the interpreter.

    Autotuning over two or more configs needs a driver to time them, which the interpreter lacks,
    so there the first config is used as is. List the config you trust most first.
    """
    if interpreter_active():
        configs = configs[:1]
    return triton.autotune(configs=configs, key=key, **kwargs)
