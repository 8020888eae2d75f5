"""Parameter groups for fine-tuning: the BERT weight-decay recipe (no decay on biases and
LayerNorm parameters)."""


def param_groups_with_weight_decay(named_parameters, weight_decay,
                                   no_decay=("bias", "LayerNorm", "layer_norm")):
    """Split parameters into a decayed group and a group with ``weight_decay = 0.0``.

    A parameter skips decay when its name ends with one of ``no_decay`` (``...bias``) or has it
    as a module name (``...LayerNorm.weight``, ``...layer_norm.weight``). With the default this
    is the usual BERT fine-tuning rule: biases and LayerNorm parameters are not decayed, every
    weight matrix and embedding table is. Parameters with ``requires_grad = False`` are left out.

    Args:
        named_parameters: iterable of (name, parameter), e.g. ``model.named_parameters()``.
        weight_decay: decay of the first group.
        no_decay: name patterns (see above); a Hugging Face-style ("bias", "LayerNorm.weight")
            selects the same BERT parameters.

    Returns:
        ``[{"params": decayed, "weight_decay": weight_decay},
        {"params": not_decayed, "weight_decay": 0.0}]`` (either list may be empty).
    """
    decay, skip = [], []
    for name, p in named_parameters:
        if not getattr(p, "requires_grad", True):
            continue
        if any(name.endswith(pat) or (pat + ".") in name for pat in no_decay):
            skip.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": skip, "weight_decay": 0.0}]
