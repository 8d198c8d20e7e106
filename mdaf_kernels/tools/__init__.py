"""Command-line tools: ``compile_report`` (sm_80/sm_90 without a GPU) and ``gpu_check``."""
