"""Scoring and predicting: the model in eval mode over encoded examples, batched by length.

Evaluation, ``Trainer.predict`` and ``minitune predict`` all go through ``predict_examples``,
so a text is encoded and read back the same way whichever entry point it comes through.
"""
from .. import data as D
from ..autograd import no_grad
from ..backend import asnumpy
from ..metrics import get_entities
from .tasks import task_of


def predict_logits(model, examples, batch_size=128, pad_id=0):
    """Run the model in eval mode (no dropout, no graph) over encoded examples.

    Examples are batched by length (less padding). Yields (indices (B,), logits as a NumPy
    array (B, K) or (B, T, K)) per batch; ``indices`` map rows back to ``examples``. The
    model's training mode is restored afterwards.
    """
    loader = D.DataLoader(examples, batch_size, shuffle=False, group_by_length=True,
                        pad_id=pad_id)
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            for batch in loader:
                out = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
                yield batch.indices, asnumpy(out.logits.data)
    finally:
        model.train(was_training)


def predict_examples(model, task, examples, id2label, batch_size=128, pad_id=0, dist=None):
    """One prediction dict per example, in order (see the task's ``predict``). With ``dist``
    (data parallelism) each rank predicts its share and every rank gets them all."""
    share = examples if dist is None else examples[dist.my_share(len(examples))]
    predictions = [None] * len(share)
    if share or dist is None:             # a rank's share of a tiny set may be empty
        for indices, logits in predict_logits(model, share, batch_size, pad_id):
            for row, i in enumerate(indices):
                predictions[i] = task.predict(logits[row], share[i], id2label)
    return predictions if dist is None else dist.gather(predictions)


def evaluate(model, task, raw, examples, id2label, batch_size=128, pad_id=0, dist=None):
    """Score ``model`` on the encoded ``examples`` of ``raw`` data (split across the ranks of
    ``dist``, when given).

    Returns (metrics dict, predictions): classify -> accuracy, macro F1 (and binary F1 for two
    labels); ner -> entity-level precision/recall/F1 (seqeval's default) and token accuracy.
    """
    predictions = predict_examples(model, task, examples, id2label, batch_size, pad_id, dist)
    return task.metrics(raw, predictions, id2label), predictions


def id2label_of(model):
    """The id -> label list of a task model's config."""
    return [model.config.id2label[i] for i in range(model.config.num_labels)]


def trained_max_length(model):
    """The --max-len the model was fine-tuned with (kept in config.json), else its position
    limit."""
    return int(model.config.extra.get("minitune_max_length",
                                      model.config.max_position_embeddings))


def split_words(text):
    """The words of text by BERT's rule (``data.words``: each CJK character, each punctuation
    mark, whitespace-separated runs), with character offsets: [(word, (start, end)), ...]."""
    return [(text[start:end], (start, end)) for start, end in D.split_words(text)]


def predict_texts(model, tokenizer, texts, text_pairs=None, max_len=None, batch_size=64):
    """Label raw texts. Returns one dict per text:

    classify: {"label", "probability", "probabilities": {label: p}}
    ner: {"words": [{"word", "start", "end", "tag"}], "entities": [{"type", "text", "start",
    "end"}]}, offsets in characters of the text (end exclusive).
    """
    task, id2label = task_of(model), id2label_of(model)
    max_len = max_len or trained_max_length(model)
    if task.name == "classify":
        examples = D.encode_texts(tokenizer, list(texts), text_pairs, max_len)
        return predict_examples(model, task, examples, id2label, batch_size,
                                tokenizer.pad_token_id)
    words = [split_words(t) for t in texts]
    # an empty text still gets an example (with one empty word) so every row is predicted
    examples = D.encode_words(tokenizer, [[w for w, _ in ws] or [""] for ws in words], max_len)
    tags = predict_examples(model, task, examples, id2label, batch_size, tokenizer.pad_token_id)
    return [_ner_result(text, ws, t["tags"]) for text, ws, t in zip(texts, words, tags)]


def _ner_result(text, words, tags):
    """Each word with its tag and offsets, and the entities the tags spell."""
    out = {"words": [{"word": w, "start": a, "end": b, "tag": tag}
                     for (w, (a, b)), tag in zip(words, tags)], "entities": []}
    for etype, first, last in get_entities(tags[:len(words)]):
        start, end = words[first][1][0], words[last][1][1]
        out["entities"].append({"type": etype, "text": text[start:end], "start": start,
                                "end": end})
    return out
