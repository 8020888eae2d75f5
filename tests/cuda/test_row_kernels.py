"""The fused row kernels -- residual + LayerNorm, bias + GELU, cross-entropy, embedding,
dropout -- and AdamW, run by the CPU emulator (and on the GPU when present), against the
reference ops in minitune/ops and minitune/optim, forward and backward, on odd shapes.

Tolerances (float32 kernel against the float64 reference): rtol 1e-5, atol 1e-6 x max|ref|
unless stated; sums over many rows (gw, gb, gbias, embedding runs) get atol 1e-5 x max|ref|.
"""
import numpy as np
import pytest

from minitune.cuda import adam as cuda_adam
from minitune.cuda import cross_entropy as cuda_ce
from minitune.cuda import dropout as cuda_dropout
from minitune.cuda import embedding as cuda_embedding
from minitune.cuda import gelu as cuda_gelu
from minitune.cuda import layer_norm as cuda_ln
from minitune.cuda import philox
from minitune.ops import loss as ref_loss
from minitune.ops import nn as ref
from minitune.optim import adam as ref_adam
from minitune.testing import assert_close
from kernel_helpers import both_schedules, f64, flat_draws, gpu

pytestmark = pytest.mark.emulator


def close(actual, expected, what, atol=1e-6, rtol=1e-5):
    actual, expected = f64(actual, expected)
    scale = max(float(np.abs(expected).max()) if expected.size else 0.0, 1.0)
    assert_close(actual, expected, rtol=rtol, atol=atol * scale, msg=what)


def normal(seed, *shape, scale=1.0):
    return (np.random.default_rng(seed).normal(size=shape) * scale).astype(np.float32)


# --------------------------------------------------------------------------- LayerNorm

@pytest.mark.parametrize("shape,residual", [((3, 5, 7), True), ((4, 33), False),
                                            ((2, 3, 300), True), ((1, 1, 1), True),
                                            ((2, 2000), True)])
def test_layer_norm_matches_the_reference(emulated, shape, residual):
    x = normal(0, *shape) + 3.0                                  # a mean to remove
    r = normal(1, *shape) if residual else None
    w, b, gy = normal(2, shape[-1]), normal(3, shape[-1]), normal(4, *shape)

    def run():
        y, saved = cuda_ln.forward(x, w, b, 1e-12, r)
        return (y, saved[1], saved[2]) + cuda_ln.backward(gy, saved)

    y, mean, rstd, gx, gw, gb = both_schedules(run)
    want_y, saved = ref.layer_norm_forward(*f64(x, w, b), 1e-12, *f64(r))
    close(y, want_y, "y")
    u = f64(x)[0] + (0 if r is None else f64(r)[0])
    close(mean, u.reshape(-1, shape[-1]).mean(-1), "mean")
    close(rstd.reshape(saved[1].shape), saved[1], "rstd", rtol=1e-4)
    want = ref.layer_norm_backward(f64(gy)[0], saved)
    close(gx, want[0], "gx")
    close(gw, want[1], "gw", atol=1e-5)
    close(gb, want[2], "gb", atol=1e-5)


def test_partial_column_sums_reference():
    x = np.random.default_rng(0).normal(size=(37, 5))
    assert_close(cuda_ln.partial_column_sums(x, 4), x.sum(0), rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- GELU

@pytest.mark.parametrize("shape,bias", [((3, 5, 7), True), ((70, 300), True), ((4, 9), False),
                                        ((1, 1), True)])
def test_gelu_matches_the_reference(emulated, shape, bias):
    x = normal(0, *shape, scale=3.0)
    b = normal(1, shape[-1]) if bias else None
    gy = normal(2, *shape)
    y, saved = cuda_gelu.forward(x, b)
    gx, gb = both_schedules(lambda: cuda_gelu.backward(gy, saved))
    want_y, want_saved = ref.gelu_forward(*f64(x, b))
    close(y, want_y, "y")
    want_gx, want_gb = ref.gelu_backward(f64(gy)[0], want_saved)
    close(gx, want_gx, "gx")
    if bias:
        close(gb, want_gb, "gbias", atol=1e-5)
    else:
        assert gb is None


# --------------------------------------------------------------------------- cross-entropy

@pytest.mark.parametrize("N,K", [(13, 2), (9, 9), (5, 1000), (1, 1)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_matches_the_reference(emulated, N, K, reduction):
    z = normal(0, N, K, scale=4.0)
    t = np.random.default_rng(1).integers(0, K, size=N)
    t[::3] = -100                                                # ignore_index rows
    gy = normal(2, N) if reduction == "none" else np.float32(0.7)
    loss, saved = cuda_ce.forward(z, t, -100, reduction)
    g = both_schedules(lambda: (cuda_ce.backward(np.asarray(gy), saved),))[0]
    want, want_saved = ref_loss.cross_entropy_forward(f64(z)[0], t, -100, reduction)
    close(loss, want, "loss")
    close(g, ref_loss.cross_entropy_backward(np.asarray(gy, np.float64), want_saved), "glogits")


def test_cross_entropy_all_ignored_and_bad_targets(emulated):
    z = normal(0, 4, 3)
    loss, saved = cuda_ce.forward(z, np.full(4, -100), -100, "mean")
    assert float(loss) == 0.0
    assert not cuda_ce.backward(np.float32(1.0), saved).any()
    with pytest.raises(ValueError, match=r"targets must be in \[0, 3\).*\[7\]"):
        cuda_ce.forward(z, np.array([0, 7, 1, -100]), -100, "mean")


def test_online_logsumexp_reference():
    z = np.random.default_rng(0).normal(size=(6, 77)) * 30
    m = z.max(1)
    assert_close(cuda_ce.online_logsumexp(z, lanes=8), m + np.log(np.exp(z - m[:, None]).sum(1)),
                 rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- embedding

@pytest.mark.parametrize("ids_shape,V,H", [((3, 7), 11, 5), ((2, 40), 3, 130), ((1,), 1, 1),
                                           ((3, 50), 1, 9), ((2, 100), 5, 3)])
def test_embedding_matches_the_reference_with_repeated_ids(emulated, ids_shape, V, H):
    ids = np.random.default_rng(0).integers(0, V, size=ids_shape)    # V small: many repeats
    w, gy = normal(1, V, H), normal(2, *ids_shape, H)
    y, saved = cuda_embedding.forward(ids, w)
    gw = both_schedules(lambda: (cuda_embedding.backward(gy, saved),))[0]
    assert np.array_equal(y, w[ids])
    want = ref.embedding_backward(f64(gy)[0], (ids, V))
    close(gw, want, "gweight", atol=1e-5)
    for piece in (cuda_embedding.PIECE, 4):
        assert_close(cuda_embedding.sorted_run_sums(ids.reshape(-1), f64(gy)[0].reshape(-1, H),
                                                    V, piece), want, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- dropout

@pytest.mark.parametrize("shape,offset", [((3, 37), 0), ((1001,), 1), ((2, 3, 8), 0)])
def test_dropout_is_the_reference_with_philox_draws(emulated, shape, offset):
    """offset 1 starts the arrays 4 bytes past a 16-byte boundary: the scalar path."""
    base = normal(0, int(np.prod(shape)) + offset)
    x = base[offset:].reshape(shape)
    gy = normal(1, *shape)
    y, saved = both_schedules(lambda: cuda_dropout.forward(x, 0.3, np.random.default_rng(5)))
    gx = cuda_dropout.backward(gy, saved)
    draws = flat_draws(5, shape)
    want_y, want_saved = ref.dropout_forward(x, 0.3, draws)
    assert_close(y, want_y, rtol=0, atol=0)                     # same mask, same scale
    assert_close(gx, ref.dropout_backward(gy, want_saved), rtol=0, atol=0)


def test_philox_masks_keep_the_right_fraction():
    for p in (0.1, 0.5):
        threshold, _ = philox.threshold_and_scale(p)
        keep = philox.flat_keep_mask(123, 0, 200_000, threshold)
        sigma = np.sqrt(p * (1 - p) / keep.size)
        assert abs(keep.mean() - (1 - threshold / 65536)) < 5 * sigma
        att = philox.attention_keep_mask(9, 0, 2, 3, 64, threshold)
        assert abs(att.mean() - (1 - p)) < 5 * np.sqrt(p * (1 - p) / att.size)
    a = philox.flat_keep_mask(1, 0, 1000, 6554)
    assert not np.array_equal(a, philox.flat_keep_mask(2, 0, 1000, 6554))   # seeds differ
    assert not np.array_equal(a, philox.flat_keep_mask(1, 1, 1000, 6554))   # offsets differ


def test_philox_known_answers():
    """Random123's known-answer vectors for Philox4x32-10."""
    cases = [((0, 0, 0, 0), 0, (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
             ((0xFFFFFFFF,) * 4, 2**64 - 1, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
             ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), 0x299F31D0A4093822,
              (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1))]
    for counter, key, expected in cases:
        assert [int(w) for w in philox.philox4x32_10(*counter, key)] == list(expected)


# --------------------------------------------------------------------------- AdamW

def adam_state(seed, shapes):
    rng = np.random.default_rng(seed)
    ws = [rng.normal(size=s).astype(np.float32) for s in shapes]
    gs = [rng.normal(size=s).astype(np.float32) for s in shapes]
    ms = [np.zeros(s, np.float32) for s in shapes]
    vs = [np.zeros(s, np.float32) for s in shapes]
    return ws, gs, ms, vs


@pytest.mark.parametrize("decoupled,ts", [(True, [1, 1, 1]), (False, [3, 3, 3]),
                                          (True, [1, 4, 2])])
def test_adam_matches_the_reference_bit_for_bit(emulated, decoupled, ts):
    """Every operation rounded on its own, in the reference's order: identical bits (three
    steps, parameters at different steps included)."""
    shapes = [(3, 5), (2500,), (1,)]
    kernel, expected = adam_state(0, shapes), adam_state(0, shapes)
    hyper = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, decoupled=decoupled)
    for step in range(3):
        t = [x + step for x in ts]
        cuda_adam.step(*kernel, t, work=None, **hyper)
        ref_adam.adam_update(*expected, t, work=np.empty_like, **hyper)
    for got, want in zip(kernel[0] + kernel[2] + kernel[3], expected[0] + expected[2] +
                         expected[3]):
        assert np.array_equal(got, want)


# --------------------------------------------------------------------------- on the GPU

BERT_ROWS = 32 * 128


@pytest.mark.gpu
@pytest.mark.parametrize("H", [384, 768, 1000])
def test_gpu_layer_norm_and_gelu_at_bert_shapes(H):
    x, r, gy = normal(0, BERT_ROWS, H), normal(1, BERT_ROWS, H), normal(2, BERT_ROWS, H)
    w, b = normal(3, H), normal(4, H)
    y, saved = cuda_ln.forward(*gpu(x, w, b), 1e-12, gpu(r)[0])
    grads = cuda_ln.backward(gpu(gy)[0], saved)
    want_y, want_saved = ref.layer_norm_forward(*f64(x, w, b), 1e-12, f64(r)[0])
    cupy_y, _ = ref.layer_norm_forward(*gpu(x, w, b), 1e-12, gpu(r)[0])
    close(y, want_y, "ln y")
    close(cupy_y, want_y, "ln y (cupy path)")
    for got, want, name in zip(grads, ref.layer_norm_backward(f64(gy)[0], want_saved),
                               ("gx", "gw", "gb")):
        close(got, want, f"ln {name}", atol=1e-5)
    y, saved = cuda_gelu.forward(*gpu(x, w))
    gx, gb = cuda_gelu.backward(gpu(gy)[0], saved)
    want_y, want_saved = ref.gelu_forward(*f64(x, w))
    close(y, want_y, "gelu y")
    want_gx, want_gb = ref.gelu_backward(f64(gy)[0], want_saved)
    close(gx, want_gx, "gelu gx")
    close(gb, want_gb, "gelu gbias", atol=1e-5)


@pytest.mark.gpu
@pytest.mark.parametrize("K", [2, 9, 30522])
def test_gpu_cross_entropy(K):
    N = 512 if K > 100 else BERT_ROWS
    z = normal(0, N, K, scale=3.0)
    t = np.random.default_rng(1).integers(0, K, size=N)
    t[::5] = -100
    loss, saved = cuda_ce.forward(*gpu(z, t), -100, "mean")
    g = cuda_ce.backward(gpu(np.float32(1.0))[0], saved)
    want, want_saved = ref_loss.cross_entropy_forward(f64(z)[0], t, -100, "mean")
    close(loss, want, "loss")
    close(g, ref_loss.cross_entropy_backward(np.float64(1.0), want_saved), "glogits")


@pytest.mark.gpu
def test_gpu_embedding_dropout_and_adam():
    ids = np.random.default_rng(0).integers(0, 1000, size=(32, 128))
    w, gy = normal(1, 1000, 384), normal(2, 32, 128, 384)
    y, saved = cuda_embedding.forward(*gpu(ids, w))
    close(y, w[ids], "embedding y", atol=0, rtol=0)
    close(cuda_embedding.backward(gpu(gy)[0], saved),
          ref.embedding_backward(f64(gy)[0], (ids, 1000)), "embedding gw", atol=1e-5)
    x = normal(3, 32, 128, 384)
    y, saved = cuda_dropout.forward(gpu(x)[0], 0.1, np.random.default_rng(5))
    want, _ = ref.dropout_forward(x, 0.1, flat_draws(5, x.shape))
    close(y, want, "dropout", atol=0, rtol=0)
    shapes = [(384, 384), (1536,), (30522, 384)]
    kernel = [gpu(*arrays) for arrays in adam_state(0, shapes)]
    expected = adam_state(0, shapes)
    hyper = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, decoupled=True)
    for t in (1, 2):
        cuda_adam.step(*kernel, [t] * 3, work=None, **hyper)
        ref_adam.adam_update(*expected, [t] * 3, work=np.empty_like, **hyper)
    for got, want in zip(kernel[0], expected[0]):
        close(got, want, "adam w", atol=1e-6, rtol=1e-6)
