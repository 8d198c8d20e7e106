"""MDAF: Mamba-DCN with Adaptive Fusion, a CTR model on the mdaf_kernels fast layer."""

__version__ = "0.1.0"
