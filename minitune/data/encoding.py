"""Encoding: texts and words to token ids, labels to label ids, and the one alignment between
words and their sub-tokens.

A word is split into one or more WordPiece sub-tokens. NER trains and predicts on the first
sub-token of each word (``word_starts``): its other sub-tokens, [CLS], [SEP] and padding get
``IGNORE_INDEX``, which the loss skips.
"""
import numpy as np

from ..ops.loss import IGNORE_INDEX
from .labels import as_label2id, check_labels


def encode_texts(tokenizer, texts, text_pairs=None, max_length=128):
    """Tokenize texts (and second segments) without padding.

    Args:
        tokenizer: a minitune.Tokenizer (WordPiece with [CLS] ... [SEP]).
        texts: N strings; text_pairs: N strings or None.
        max_length: longer inputs are truncated to this many tokens.

    Returns:
        list of N dicts: input_ids and token_type_ids (lists of T_i <= max_length ints).
    """
    enc = tokenizer(texts, text_pairs, max_length=max_length, padding=False, truncation=True)
    ids, types = enc["input_ids"], enc["token_type_ids"]
    return [{"input_ids": list(ids[i]), "token_type_ids": list(types[i])}
            for i in range(len(texts))]


def encode_classification(tokenizer, data, label2id, max_length=128):
    """``encode_texts`` of a ClassificationData, each example with its ``label`` id (int).

    label2id: dict label -> id, or the id2label list. Unknown labels are an error naming the
    file and line."""
    label2id = as_label2id(label2id)
    check_labels(data, label2id)
    examples = encode_texts(tokenizer, data.texts, data.text_pairs, max_length)
    for example, label in zip(examples, data.labels):
        example["label"] = label2id[label]
    return examples


def word_starts(word_ids, n_words):
    """Where each word's first sub-token is: int64 array (n_words,), -1 for a word that
    truncation cut off.

    Args:
        word_ids: the word index of each position (T,), None for [CLS], [SEP] and padding.
        n_words: the number of words of the sentence.
    """
    w = np.array([-1 if x is None else x for x in word_ids], dtype=np.int64)
    words, first = np.unique(w, return_index=True)       # first position of each word id
    keep = (words >= 0) & (words < n_words)
    starts = np.full(n_words, -1, dtype=np.int64)
    starts[words[keep]] = first[keep]
    return starts


def encode_words(tokenizer, sentences, max_length=128):
    """Tokenize pre-split words (one list of words per sentence) without padding.

    Returns:
        list of dicts: input_ids (T_i), token_type_ids (T_i), word_ids (T_i; word index or
        None) and n_words.
    """
    words = [list(w) for w in sentences]
    enc = tokenizer(words, is_split_into_words=True, max_length=max_length, padding=False,
                    truncation=True)
    return [{"input_ids": list(enc["input_ids"][i]),
             "token_type_ids": list(enc["token_type_ids"][i]),
             "word_ids": list(enc.word_ids(i)), "n_words": len(words[i])}
            for i in range(len(words))]


def encode_ner(tokenizer, sentences, label2id, max_length=128):
    """``encode_words`` of (tokens, tags) sentences, with per-position ``labels``: the tag id
    at each word's first sub-token, IGNORE_INDEX elsewhere.

    A sentence longer than max_length sub-tokens is truncated: its last words get no
    position, so they are neither trained on nor predicted (word_tags fills them with 'O',
    as the reference evaluation does).

    Args:
        tokenizer: a minitune.Tokenizer.
        sentences: list of (tokens, tags) pairs, e.g. from read_conll.
        label2id: dict tag -> id, or the id2label list.
        max_length: maximum sub-tokens per sentence, [CLS] and [SEP] included.

    Returns:
        (examples, n_truncated): encode_words' dicts plus labels (T_i); n_truncated counts
        the sentences in which some word got no sub-token within max_length.
    """
    label2id = as_label2id(label2id)
    check_labels(sentences, label2id)
    examples = encode_words(tokenizer, [tokens for tokens, _ in sentences], max_length)
    n_truncated = 0
    for example, (_, tags) in zip(examples, sentences):
        starts = word_starts(example["word_ids"], example["n_words"])
        kept = starts >= 0
        labels = np.full(len(example["input_ids"]), IGNORE_INDEX, dtype=np.int64)
        labels[starts[kept]] = np.array([label2id[t] for t in tags], dtype=np.int64)[kept]
        example["labels"] = labels.tolist()
        n_truncated += not kept.all()
    return examples, n_truncated


def word_tags(pred_ids, example, id2label, fill="O"):
    """Per-word tags from per-position predictions: each word takes the prediction at its
    first sub-token; words cut off by truncation get ``fill``.

    Args:
        pred_ids: predicted label ids (T,), T >= len(example["word_ids"]) (padding beyond
            the example is ignored).
        example: an encode_words / encode_ner example (uses word_ids and n_words).
        id2label: the id -> label list.

    Returns:
        list of n_words tag strings.
    """
    starts = word_starts(example["word_ids"], example["n_words"])
    return [id2label[int(pred_ids[p])] if p >= 0 else fill for p in starts]
