"""MDAF: Mamba-DCN with Adaptive Fusion, a CTR model on the mdaf_kernels fast layer."""

import importlib.util as _importlib_util

__version__ = "0.1.0"
PRODUCT_DEPENDENCIES = ("pandas", "matplotlib", "scipy")


def _missing(names):
    """Modules that cannot be imported, found without importing them (``import mdaf`` stays fast)."""
    missing = []
    for name in names:
        try:
            if _importlib_util.find_spec(name) is None:
                missing.append(name)
        except (ImportError, ValueError):  # ValueError: a module set to None in sys.modules
            missing.append(name)
    return missing


if _missing(PRODUCT_DEPENDENCIES):
    raise ImportError(
        f"mdaf needs {', '.join(_missing(PRODUCT_DEPENDENCIES))}: install the product extra with"
        " pip install 'mdaf-kernels[product]' (mdaf_kernels alone needs only torch, triton, einops, numpy)"
    )

_API = ("load", "predict")


def __getattr__(name):
    # lazy, so `import mdaf` stays light: torch and the models load on first use
    if name in _API:
        from mdaf import api

        return getattr(api, name)
    raise AttributeError(f"module 'mdaf' has no attribute {name!r}")
