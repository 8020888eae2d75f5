"""Encoding (minitune/data/encoding.py): token ids, label ids and the word <-> first
sub-token alignment.
"""
import numpy as np
import pytest
from minitune import data
from minitune.data import IGNORE_INDEX


CONLL_ORDER = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]


class _Encoding(dict):
    """What a tokenizer call with padding=False returns: ragged lists and word_ids(i)."""

    def __init__(self, ids, types, word_ids):
        super().__init__(input_ids=ids, token_type_ids=types)
        self._w = word_ids

    def word_ids(self, i):
        return self._w[i]


def piece_tokenizer(texts, text_pairs=None, max_length=128, padding=True, truncation=True,
                    is_split_into_words=False):
    """A stand-in for minitune.Tokenizer: words split into pieces of up to 3 characters,
    [CLS]=101, [SEP]=102, piece id = 1000 + sum of its character codes."""
    assert padding is False and truncation is True and text_pairs is None
    ids, types, wids = [], [], []
    for i, text in enumerate(texts):
        words = text if is_split_into_words else text.split()
        pieces = [(1000 + sum(map(ord, w[k:k + 3])), j)
                  for j, w in enumerate(words) for k in range(0, len(w), 3)][: max_length - 2]
        ids.append([101] + [p for p, _ in pieces] + [102])
        wids.append([None] + [w for _, w in pieces] + [None])
        types.append([0] * len(ids[-1]))
    return _Encoding(ids, types, wids)


def test_encode_ner_labels_first_subtoken_only():
    sents = [(["Johannesburg", "is", "big"], ["B-LOC", "O", "O"]),
             (["Al", "Gore", "spoke"], ["B-PER", "I-PER", "O"])]
    examples, n_trunc = data.encode_ner(piece_tokenizer, sents, CONLL_ORDER, max_length=128)
    assert n_trunc == 0
    # "Johannesburg" -> 4 pieces: only the first carries B-LOC (id 5).
    assert examples[0]["labels"] == [-100, 5, -100, -100, -100, 0, 0, -100]
    assert examples[0]["word_ids"] == [None, 0, 0, 0, 0, 1, 2, None]
    assert examples[1]["labels"] == [-100, 1, 2, -100, 0, -100, -100]
    assert examples[1]["n_words"] == 3


def test_encode_ner_truncation_and_word_tags():
    sents = [(["aaaaaa", "b", "c", "d"], ["B-PER", "I-PER", "O", "B-LOC"]),
             (["x"], ["O"])]
    examples, n_trunc = data.encode_ner(piece_tokenizer, sents, CONLL_ORDER, max_length=5)
    assert n_trunc == 1
    assert examples[0]["labels"] == [-100, 1, -100, 2, -100]  # "c", "d" cut off
    # Predicting the gold ids back gives the gold tags, cut-off words filled with "O".
    gold = np.where(np.array(examples[0]["labels"]) < 0, 0, examples[0]["labels"])
    padded = np.concatenate([gold, [3, 3, 3]])  # padding positions are ignored
    assert data.word_tags(padded, examples[0], CONLL_ORDER) == ["B-PER", "I-PER", "O", "O"]


def test_encode_ner_rejects_unknown_tags():
    with pytest.raises(ValueError, match=r"'B-DATE' \(first at example 0, token 1\)"):
        data.encode_ner(piece_tokenizer, [(["a", "b"], ["O", "B-DATE"])], CONLL_ORDER)


def test_encode_classification(tmp_path):
    (tmp_path / "a.tsv").write_text("label\ttext\n1\tgood fun\n0\tbad\n")
    d = data.read_classification(tmp_path / "a.tsv")
    examples = data.encode_classification(piece_tokenizer, d, ["0", "1"], max_length=8)
    assert [e["label"] for e in examples] == [1, 0]
    assert examples[1]["input_ids"] == [101, 1000 + sum(map(ord, "bad")), 102]
    assert examples[1]["token_type_ids"] == [0, 0, 0]


def _real_tokenizer():
    try:
        from minitune.tokenizer import Tokenizer
        return Tokenizer.from_pretrained("all-MiniLM-L6-v2")
    except Exception as e:  # noqa: BLE001 - any failure means "not available here"
        pytest.skip(f"minitune.Tokenizer with the MiniLM package is not available: {e!r}")


def test_encode_ner_with_real_tokenizer():
    tok = _real_tokenizer()
    sents = [(["Washington", "Irving", "wrote", "Rip", "Van", "Winkle", "."],
              ["B-PER", "I-PER", "O", "B-PER", "I-PER", "I-PER", "O"]),
             (["Unbelievably", "antidisestablishmentarianism"], ["O", "B-MISC"])]
    examples, n_trunc = data.encode_ner(tok, sents, CONLL_ORDER, max_length=128)
    assert n_trunc == 0
    for (words, tags), ex in zip(sents, examples):
        ids = np.array(ex["input_ids"])
        labels = np.array(ex["labels"])
        assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
        assert labels[0] == labels[-1] == IGNORE_INDEX
        first = np.flatnonzero(labels != IGNORE_INDEX)
        assert [CONLL_ORDER[i] for i in labels[first]] == tags  # one label per word
        for w, pos in enumerate(first):  # the labelled piece starts word w
            piece = tok.convert_ids_to_tokens([int(ids[pos])])[0]
            assert not piece.startswith("##") and words[w].lower().startswith(piece)
    assert len(examples[1]["input_ids"]) > 4  # the long word was split into sub-tokens
    short, n_trunc = data.encode_ner(tok, sents, CONLL_ORDER, max_length=6)
    assert n_trunc == 2 and all(len(e["input_ids"]) == 6 for e in short)


@pytest.mark.parametrize("word_ids, n_words, starts", [
    ([None, 0, 0, 1, 2, 2, None], 3, [1, 3, 4]),           # sub-tokens after the first skipped
    ([None, 0, 1, None], 4, [1, 2, -1, -1]),              # truncation cut words 2 and 3
    ([None, None], 1, [-1]),                              # nothing left of the sentence
])
def test_word_starts_is_the_first_sub_token_of_each_word(word_ids, n_words, starts):
    assert data.word_starts(word_ids, n_words).tolist() == starts
    example = {"word_ids": word_ids, "n_words": n_words}
    pred = np.arange(len(word_ids)) % 3                     # a different id per position
    tags = data.word_tags(pred, example, ["A", "B", "C"], fill="-")
    assert tags == ["ABC"[p % 3] if p >= 0 else "-" for p in starts]
