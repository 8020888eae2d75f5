"""NumPy reference of the counter-based random numbers the kernels use (kernels/common.cuh).

Philox4x32-10 maps a 128-bit counter and a 64-bit key to four 32-bit words; each word gives two
16-bit draws, so one call serves eight dropout decisions. A mask is then a pure function of
(seed, offset, element index) -- no stored mask, the same mask in backward, and a resumed run
(whose numpy Generator, the source of the seeds, is checkpointed) redraws it.

    keep(element) = draw >= threshold,  threshold = round(p * 65536)
    P(keep) = 1 - threshold / 65536,     scale = 65536 / (65536 - threshold)

exactly as ``minitune.ops.nn.dropout_keep_mask`` defines the reference's host-drawn masks.
"""
import numpy as np

_M0, _M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
_W0, _W1 = np.uint32(0x9E3779B9), np.uint32(0xBB67AE85)
_LO = np.uint64(0xFFFFFFFF)


def philox4x32_10(c0, c1, c2, c3, seed):
    """Four uint32 arrays (the counter words, broadcast together) and a 64-bit seed -> the four
    uint32 output words, as the kernels' ``philox``."""
    c = [np.asarray(w, dtype=np.uint32) for w in np.broadcast_arrays(c0, c1, c2, c3)]
    seed = int(seed)
    k0, k1 = np.uint32(seed & 0xFFFFFFFF), np.uint32(seed >> 32)
    with np.errstate(over="ignore"):
        for _ in range(10):
            p0 = _M0 * c[0].astype(np.uint64)
            p1 = _M1 * c[2].astype(np.uint64)
            hi0, lo0 = (p0 >> np.uint64(32)).astype(np.uint32), (p0 & _LO).astype(np.uint32)
            hi1, lo1 = (p1 >> np.uint64(32)).astype(np.uint32), (p1 & _LO).astype(np.uint32)
            c = [hi1 ^ c[1] ^ k0, lo1, hi0 ^ c[3] ^ k1, lo0]
            k0 = k0 + _W0
            k1 = k1 + _W1
    return c


def draws16(words, k):
    """Draw k (0..7, an int array) of Philox's output words: word k // 2, low half if k even."""
    k = np.asarray(k)
    w = np.choose(k >> 1, words)
    return np.where(k & 1, w >> np.uint32(16), w & np.uint32(0xFFFF))


def threshold_and_scale(p):
    """(threshold, scale) of dropout probability p: keep a draw >= threshold, scale the kept."""
    threshold = int(round(p * 65536))
    return threshold, 65536.0 / (65536 - threshold)


def flat_keep_mask(seed, offset, n, threshold):
    """dropout.cu's mask over n contiguous elements: element e uses counter
    (e // 8 low word, e // 8 high word, 0, offset), draw e % 8."""
    e = np.arange(n, dtype=np.uint64)
    g = e >> np.uint64(3)
    words = philox4x32_10(g & _LO, g >> np.uint64(32), 0, offset, seed)
    return draws16(words, (e & np.uint64(7)).astype(np.int64)) >= threshold


def attention_keep_mask(seed, offset, B, NH, T, threshold):
    """attention.cu's mask, (B, NH, T, T): probability (b, h, i, j) uses counter
    (j // 8, i, b * NH + h, offset), draw j % 8."""
    bh = np.arange(B * NH, dtype=np.uint32)[:, None, None]
    i = np.arange(T, dtype=np.uint32)[None, :, None]
    j = np.arange(T, dtype=np.uint32)[None, None, :]
    words = philox4x32_10(j >> np.uint32(3), i, bh, offset, seed)
    keep = draws16(words, (j & np.uint32(7)).astype(np.int64)) >= threshold
    return keep.reshape(B, NH, T, T)
