"""Compiled CPU kernels (numba), imported only when a CPU op runs them.

``import mdaf_kernels`` never imports numba: ``mdaf_kernels.backend`` asks ``compiler_available()``
on the first CPU call, and the ops import their kernel module (``mdaf_kernels.cpu.<op>``) only then.
numba is the optional extra ``pip install "mdaf-kernels[cpu]"``: a plain wheel on Linux, macOS and
Windows, no build step. Compiled code is cached on disk (``cache=True``), so only the first call on a
machine pays the compile time. ``primitives`` holds what the kernels share (the vectorisable exp,
FTZ/DAZ, the fixed batch parts, the thread setting).
"""

from __future__ import annotations

import functools


@functools.cache
def compiler_available() -> bool:
    """True when numba imports (the first call pays its import, about half a second)."""
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True
