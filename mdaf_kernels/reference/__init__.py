"""Plain-PyTorch twins of the ops: the test oracle (run in float64) and the CPU path."""
