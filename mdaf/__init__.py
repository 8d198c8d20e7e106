"""MDAF: Mamba-DCN with Adaptive Fusion, a CTR model on the mdaf_kernels fast layer."""

__version__ = "0.1.0"

_API = ("load", "predict")


def __getattr__(name):
    # lazy, so `import mdaf` stays light: torch and the models load on first use
    if name in _API:
        from mdaf import api

        return getattr(api, name)
    raise AttributeError(f"module 'mdaf' has no attribute {name!r}")
