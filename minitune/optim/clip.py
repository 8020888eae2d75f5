"""Gradient clipping by the global norm, as torch.nn.utils.clip_grad_norm_.

All gradients are treated as one long vector g = concat(g_1, ..., g_n):

    total_norm = ||g||_p = (sum_i ||g_i||_p ** p) ** (1/p)          (max_i max|g_i| for p = inf)
    clip_coef  = max_norm / (total_norm + 1e-6)
    if clip_coef < 1:  g_i = g_i * clip_coef  for every i           (direction kept, length capped)

Scaling every gradient by the same factor keeps the update direction; only its length is capped,
which protects against the rare huge gradient (e.g. early in fine-tuning) without biasing
ordinary steps.
"""
import math

from .. import backend


def clip_grad_norm(params, max_norm, norm_type=2.0):
    """Scale the gradients of ``params`` in place so their global norm is at most ``max_norm``.

    Args:
        params: a parameter or an iterable of parameters (``.grad`` arrays; None grads skipped).
        max_norm: the largest allowed global norm.
        norm_type: p of the p-norm (2.0 default; ``float("inf")`` for the max-abs norm).

    Returns:
        The global norm *before* clipping, as a Python float. When it is NaN or infinite the
        gradients are left untouched and the value is returned as is: the caller decides (for
        instance, skip the step). torch would instead multiply the gradients by NaN or 0.
    """
    if hasattr(params, "data"):
        params = [params]
    grads = [p.grad for p in params if p.grad is not None and p.grad.size > 0]
    if not grads:
        return 0.0
    norm_type = float(norm_type)
    if not norm_type > 0:
        raise ValueError(f"clip_grad_norm: norm_type must be > 0, got {norm_type}")
    xp = backend.get_array_module(grads[0])

    # One reduction per gradient, kept on the device; a single host transfer at the end.
    if norm_type == math.inf:
        per_grad = xp.stack([xp.max(xp.abs(g)) for g in grads])
        total_norm = float(per_grad.max())
    elif norm_type == 2.0:
        # ||g_i||^2 as a dot product: BLAS, no |g|^2 temporary the size of the weights.
        per_grad = xp.stack([xp.vdot(g.ravel(), g.ravel()) for g in grads])
        total_norm = math.sqrt(float(per_grad.astype(xp.float64).sum()))
    else:
        per_grad = xp.stack([xp.sum(xp.abs(g) ** norm_type) for g in grads])
        total_norm = float(per_grad.astype(xp.float64).sum()) ** (1.0 / norm_type)

    if not math.isfinite(total_norm):
        return total_norm
    clip_coef = max_norm / (total_norm + 1e-6)
    if clip_coef < 1.0:
        for g in grads:
            g *= clip_coef       # in place: a Python float keeps the grad's dtype
    return total_norm
