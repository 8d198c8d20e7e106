"""One module per operation: its Triton kernels, autograd, torch.library registration and public function.

``OPS`` lists them; the compile report walks it, so a new op joins the report by being listed here
and defining ``compile_specs()``.
"""

OPS = ("causal_conv1d", "selective_scan", "cross_layer")
