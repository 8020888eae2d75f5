"""Dropout for numpy arrays, with a counter-based mask, fused and on all cores (reference:
ops/nn.py ``dropout_forward`` / ``dropout_backward``).

    forward   y  = x  * keep * scale          backward  gx = gy * keep * scale

**The mask.** The reference draws one 16-bit number per element from the model's numpy
Generator, in order, on one thread (about 1 ns per element: at B 32 x T 128 the attention's
masks alone took 36 ms of a 1.5 s step), and stores the boolean mask for backward. Here the
Generator gives one 64-bit ``seed`` per call, and element e's draw is a pure function of
(seed, e):

    z      = SplitMix64 output number e // 4 for this seed:
             z = seed + (e // 4 + 1) * 0x9E3779B97F4A7C15
             z = (z ^ z >> 30) * 0xBF58476D1CE4E5B9;  z = (z ^ z >> 27) * 0x94D049BB133111EB
             z = z ^ z >> 31
    draw_e = 16-bit piece e % 4 of z (bits 16 (e % 4) .. 16 (e % 4) + 15)
    keep_e = draw_e >= threshold,  threshold = round(p * 65536)    (the reference's rule)

SplitMix64 (Steele, Lea and Flood, OOPSLA 2014) is Java's SplittableRandom and the seeder of
numpy's own generators; its outputs pass BigCrush. Any thread can compute any part of the
mask, in the same pass that applies it; the backward recomputes it instead of storing it; and
a resumed run -- whose checkpoint holds the Generator the seeds come from -- redraws it, so
resuming stays bitwise. One hash serves four elements: 0.21 ns per element on one thread for
a row's flags (``row_draws``, ``kept``), against 0.9 ns for the Generator's draws.

The masks differ from the reference's for the same seed (and from the CUDA kernels', which
use Philox): the same seed gives the same training run with fused CPU ops, another one with
``MINITUNE_FUSED=0``. Tests feed the reference these draws (``draws16``) to compare the two.

saved: (seed, threshold, scale), as the CUDA kernel's (minitune/cuda/dropout.py).
"""
import sys

import numpy as np

from ..ops.nn import dropout_threshold
from .threads import parallel_for
from .vecmath import inline_kernel, kernel

_GOLDEN = 0x9E3779B97F4A7C15                 # SplitMix64's increment and its two multipliers
_MIX1, _MIX2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
_GRAIN = 1 << 14                             # elements per chunk at least
_BLOCK = 4096                                # elements whose mask a kernel makes at a time
# Where piece i (bits 16 i .. 16 i + 15) of a 64-bit word lies among its four uint16s: at i on
# a little-endian CPU, at 3 - i on a big-endian one (index ^ 3). A constant to the compiler.
_PIECE = 0 if sys.byteorder == "little" else 3


@inline_kernel
def _splitmix(seed, c):
    """SplitMix64's output number c (0, 1, ...) for a 64-bit seed (uint64 in, uint64 out)."""
    z = seed + (c + np.uint64(1)) * np.uint64(_GOLDEN)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(_MIX1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(_MIX2)
    return z ^ (z >> np.uint64(31))


@inline_kernel
def mask_scratch(n):
    """Scratch for the draws of rows of up to n elements: ``words`` (n // 4 + 2,) uint64 for
    their hashes, and ``draws``, the same memory read as uint16. Made once per kernel call,
    outside its loop over rows."""
    words = np.empty(n // 4 + 2, np.uint64)
    return words, words.view(np.uint16)


@inline_kernel
def row_draws(seed, start, n, words):
    """Hash the draws of elements start .. start + n - 1 into ``words`` (``mask_scratch``'s);
    returns ``skip``, the piece of the first word where element ``start``'s draw lies: the
    draw of element start + j is then number skip + j of ``draws`` (read it with ``kept``).

    A plain loop of 64-bit multiplies, which the compiler vectorises (eight hashes per
    instruction with AVX-512DQ's 64-bit multiply; AVX2 has none, so elsewhere it gains less).
    The caller's loop that applies the mask then reads the draws as a plain uint16 row and
    compares them where it uses them (``kept``): that loop stays vectorised too. Measured on
    rows of 128, one thread: 0.55 ns per element as one loop that hashes and stores each
    hash's four flags (left scalar), 0.21 ns as the hashes plus a loop that stores the flags
    in a bool row, and the attention's row pass 4.3 us a head faster again without the bool
    row (``keep_mask``, before; docs/cpu.md).
    """
    s = np.uint64(seed)
    first = start // 4                    # the hash that holds element `start`
    skip = start % 4                      # ... as its piece number `skip`
    count = (skip + n + 3) // 4           # hashes covering the row (numba checks no bounds:
    assert count <= words.size            # a row longer than mask_scratch's would overrun)
    for c in range(count):
        words[c] = _splitmix(s, np.uint64(first + c))
    return skip


@inline_kernel
def kept(draws, i, threshold):
    """Whether draw number i of a row's ``draws`` (i = skip + j for the row's element j,
    ``row_draws``) keeps its element: draw >= threshold, threshold 0 .. 65536 (65536, past
    the 16-bit draws, keeps none). Piece i % 4 of word i // 4 is uint16 number i on a
    little-endian CPU and i ^ 3 on a big-endian one (``_PIECE``, a constant to the compiler)."""
    return np.int32(draws[i ^ _PIECE]) >= np.int32(threshold)


def draws16(seed, n):
    """The 16-bit draws of elements 0 .. n-1 for ``seed`` (uint16 array of n): the NumPy
    reference of ``row_draws`` and ``kept`` (keep = draws16(seed, n) >= threshold)."""
    e = np.arange(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = np.uint64(seed) + ((e >> np.uint64(2)) + np.uint64(1)) * np.uint64(_GOLDEN)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(_MIX1)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(_MIX2)
        z = z ^ (z >> np.uint64(31))
    return ((z >> ((e & np.uint64(3)) << np.uint64(4))) & np.uint64(0xFFFF)).astype(np.uint16)


@kernel
def _apply(c, lo, hi, x, y, seed, threshold, scale):
    """y[e] = x[e] * keep_e * scale for the flat elements lo .. hi-1."""
    words, draws = mask_scratch(_BLOCK)
    for b0 in range(lo, hi, _BLOCK):
        n = min(_BLOCK, hi - b0)
        skip = row_draws(seed, b0, n, words)
        for j in range(n):
            keep = kept(draws, skip + j, threshold)
            y[b0 + j] = x[b0 + j] * scale if keep else x.dtype.type(0.0)


def supports(x, *rest):
    return x.dtype in (np.float32, np.float64)


def draw_seed(rng):
    """One 64-bit seed from the op's numpy Generator (as the CUDA kernels draw theirs)."""
    return rng.integers(0, 2**64, dtype=np.uint64)


def _run(x, seed, threshold, scale):
    x = np.asarray(x, order="C")                  # (ascontiguousarray makes 0-d 1-d)
    y = np.empty_like(x)
    parallel_for(_apply, x.size, x.reshape(-1), y.reshape(-1), seed, threshold,
                 x.dtype.type(scale), grain=_GRAIN)
    return y


def dropout_forward(x, p, rng):
    """As ops.nn.dropout_forward: x any shape -> y, saved (seed, threshold, scale)."""
    threshold, scale = dropout_threshold(p)
    saved = (draw_seed(rng), threshold, scale)
    return _run(x, *saved), saved


def dropout_backward(gy, saved):
    """The same mask (recomputed) and scale: gx = gy * keep * scale."""
    return _run(gy, *saved)
