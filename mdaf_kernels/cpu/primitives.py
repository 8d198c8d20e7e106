"""What every compiled CPU kernel (numba) shares: the vectorisable exponential and sigmoid, subnormals
flushed to zero, the fixed split of the batch into parts, and the thread setting.

numba has no vector math library here (no SVML), so ``exp`` is written as arithmetic that
vectorises: Cody-Waite range reduction, a degree-7 polynomial, and the power of two built from its
exponent bits. Its relative error is below 2e-7 for inputs in [-87, 88] (tested); below -87 it
returns 0 or a value below 2e-38, above 88 it saturates at about 1.7e38 instead of overflowing.

The kernels compute in fp32 with subnormals flushed to zero on x86 (FTZ/DAZ set for a kernel's
duration by ``flush_subnormals`` / ``restore_fp_control``, as on GPUs).
"""

from __future__ import annotations

import math
import platform

import numba
import numpy as np
import torch
from llvmlite import ir
from numba import njit
from numba.core import cgutils, types
from numba.extending import intrinsic

# Parts the batch is split into: enough for load balance on any core count, and fixed, so that the
# partial sums (and the gradients) do not depend on the thread count.
PARTS = 64

_f32 = np.float32
_LOG2E = _f32(1.4426950408889634)
# ln 2 split so that k * _LN2_HI is exact for |k| <= 127 (Cody-Waite).
_LN2_HI = _f32(0.693359375)
_LN2_LO = _f32(-2.12194440e-4)
_EXP_COEFFS = tuple(_f32(1.0 / math.factorial(i)) for i in range(8))
_C1, _C2, _C3, _C4, _C5, _C6, _C7 = _EXP_COEFFS[1:]
_HALF, _ONE = _f32(0.5), _f32(1.0)
_EXP2_MIN, _EXP2_MAX = _f32(-127.0), _f32(127.0)

# The range reduction must be evaluated as written (no reassociation); NaN and Inf still propagate.
EXP_FLAGS = {"nsz", "contract", "arcp"}
# The kernels' loops may reassociate (vectorised dot products and sums) and fuse multiply-adds.
# Every function compiles with error_model="numpy": a float division by zero gives inf or nan, as in
# torch, instead of Python's check, whose branch keeps loops with a division from vectorising.
LOOP_FLAGS = {"nsz", "contract", "arcp", "reassoc"}


@intrinsic
def _pow2(typingctx, k):
    """2**k for an integral float32 k in [-126, 127] (0 for -127), built from its exponent bits in int32
    (numba's own integer arithmetic widens to 64 bits, which costs a vector loop several instructions)."""
    sig = types.float32(k)

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        biased = builder.add(builder.fptosi(args[0], i32), ir.Constant(i32, 127))
        return builder.bitcast(builder.shl(biased, ir.Constant(i32, 23)), ir.FloatType())

    return sig, codegen


# Flush-to-zero and denormals-are-zero in x86's MXCSR. Subnormal operands cost an x86 core about a
# hundred cycles each (a microcode assist), and an adjoint that decays with no input (last_only)
# reaches them within a few steps (a 20x slower backward here); GPUs flush them too.
_MXCSR_FTZ_DAZ = 0x8040


def _mxcsr_call(builder, name, slot):
    fnty = ir.FunctionType(ir.VoidType(), [ir.IntType(8).as_pointer()])
    fn = cgutils.get_or_insert_function(builder.module, fnty, name)
    builder.call(fn, [builder.bitcast(slot, ir.IntType(8).as_pointer())])


@intrinsic
def _x86_flush_subnormals(typingctx):
    """Set FTZ and DAZ in this thread's MXCSR; return the previous MXCSR."""
    sig = types.uint32()

    def codegen(context, builder, signature, args):
        slot = cgutils.alloca_once(builder, ir.IntType(32))
        _mxcsr_call(builder, "llvm.x86.sse.stmxcsr", slot)
        previous = builder.load(slot)
        builder.store(builder.or_(previous, ir.Constant(ir.IntType(32), _MXCSR_FTZ_DAZ)), slot)
        _mxcsr_call(builder, "llvm.x86.sse.ldmxcsr", slot)
        return previous

    return sig, codegen


@intrinsic
def _x86_restore_fp_control(typingctx, previous):
    """Load a saved MXCSR back."""
    sig = types.void(types.uint32)

    def codegen(context, builder, signature, args):
        slot = cgutils.alloca_once(builder, ir.IntType(32))
        builder.store(args[0], slot)
        _mxcsr_call(builder, "llvm.x86.sse.ldmxcsr", slot)
        return context.get_dummy_value()

    return sig, codegen


if platform.machine().lower() in ("x86_64", "amd64", "x86", "i686"):
    flush_subnormals, restore_fp_control = _x86_flush_subnormals, _x86_restore_fp_control
else:  # other CPUs (e.g. Arm) handle subnormals without a large penalty

    @njit(cache=True, error_model="numpy")
    def flush_subnormals():
        return np.uint32(0)

    @njit(cache=True, error_model="numpy")
    def restore_fp_control(previous):
        pass


@njit(fastmath=EXP_FLAGS, cache=True, error_model="numpy")
def exp(x):
    """exp(x) in fp32 from arithmetic alone, so loops calling it vectorise."""
    k = np.floor(min(max(x * _LOG2E, _EXP2_MIN), _EXP2_MAX) + _HALF)
    r = (x - k * _LN2_HI) - k * _LN2_LO  # |r| <= ln(2) / 2
    p = _ONE + r * (_C1 + r * (_C2 + r * (_C3 + r * (_C4 + r * (_C5 + r * (_C6 + r * _C7))))))
    return p * _pow2(k)


@njit(fastmath=EXP_FLAGS, cache=True, error_model="numpy")
def exp_array(x, out):
    """``out[i] = exp(x[i])``: the vectorised exponential, exposed for its accuracy test."""
    for i in range(x.shape[0]):
        out[i] = exp(x[i])


@njit(fastmath=EXP_FLAGS, cache=True, error_model="numpy")
def sigmoid(x):
    return _ONE / (_ONE + exp(-x))


@njit(fastmath=EXP_FLAGS, cache=True, error_model="numpy")
def silu(x):
    return x * sigmoid(x)


@njit(fastmath=EXP_FLAGS, cache=True, error_model="numpy")
def silu_slope(x):
    """d silu(x) / dx = sigmoid(x) (1 + x (1 - sigmoid(x)))."""
    sig = sigmoid(x)
    return sig * (_ONE + x * (_ONE - sig))


def set_threads() -> None:
    """Use the threads torch uses (its thread setting is the package's one knob), within numba's pool."""
    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))
