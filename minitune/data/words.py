"""Words for NER, by BERT's own rule, and the character spans of entities.

A token-classification model tags *words*: each word's tag is predicted at its first
sub-token. Where raw text has to be cut into words (prediction, the CLUENER reader), the cut
is the one BERT itself makes before WordPiece:

* every CJK ideograph is a word of its own (BERT's normalizer puts spaces around them; on
  in every Chinese checkpoint as ``tokenize_chinese_chars``);
* whitespace separates words (the ideographic space U+3000 too) and is not part of any;
* every punctuation mark is a word of its own (ASCII punctuation and Unicode P*: ``，。！``
  ``《》（）`` included; full-width letters and digits such as ``Ｔｅｓｔ``/``５９９９``
  are not punctuation and stay words);
* control and format characters (zero-width space, U+0000, U+FFFD) are dropped.

So ``张三在北京工作。`` is eight words, ``iPhone5s售价５９９９元`` is ``iPhone5s 售 价 ５９９９
元``. The rule is run by the same Rust components (``BertNormalizer``, ``BertPreTokenizer``)
that the tokenizer uses, with lower-casing and accent stripping off, so it cannot drift from
BERT's; offsets always index the original text, whatever the normalizer did.

Entities are spans of characters ``(type, start, end)`` with ``end`` exclusive (Python's
slice: the entity is ``text[start:end]``). Words carry BIO tags; ``char_tags_to_word_tags``
and ``word_tags_to_spans`` go between the two.
"""
from ..metrics import get_entities

_SPLITTER = None


def _splitter():
    """BERT's normalizer (CJK spacing and cleaning only) + pre-tokenizer, built once."""
    global _SPLITTER
    if _SPLITTER is None:
        from tokenizers import normalizers, pre_tokenizers
        _SPLITTER = (normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                strip_accents=False, lowercase=False),
                     pre_tokenizers.BertPreTokenizer())
    return _SPLITTER


def split_words(text):
    """The words of ``text`` by BERT's rule, as character spans.

    Args:
        text: a string.

    Returns:
        list of (start, end) pairs, end exclusive, in order: word i is text[start:end].
    """
    from tokenizers import PreTokenizedString

    normalizer, pre_tokenizer = _splitter()
    pieces = PreTokenizedString(text)
    pieces.normalize(normalizer.normalize)
    pre_tokenizer.pre_tokenize(pieces)
    return [offsets for _, offsets, _ in pieces.get_splits(offset_referential="original")]


def spans_to_char_tags(n_chars, spans):
    """One BIO tag per character: ``B-type`` at a span's first character, ``I-type`` on the
    rest, ``O`` elsewhere.

    Args:
        n_chars: the text's length.
        spans: (type, start, end) triples, end exclusive.

    Raises:
        ValueError naming the span that is empty, falls outside the text, or overlaps
        another (BIO tags cannot hold overlapping entities).
    """
    tags = ["O"] * n_chars
    owner = [None] * n_chars
    for span in sorted(spans, key=lambda s: (s[1], s[2])):
        entity_type, start, end = span
        if end <= start:
            raise ValueError(f"span {span_str(span)} is empty")
        if start < 0 or end > n_chars:
            raise ValueError(f"span {span_str(span)} is outside the text of {n_chars} "
                             "characters")
        clash = next((owner[i] for i in range(start, end) if owner[i] is not None), None)
        if clash is not None:
            raise ValueError(f"span {span_str(span)} overlaps {span_str(clash)}")
        tags[start] = "B-" + entity_type
        tags[start + 1:end] = ["I-" + entity_type] * (end - start - 1)
        owner[start:end] = [span] * (end - start)
    return tags


def span_str(span):
    """('name', 3, 5) -> 'name [3, 5)' for messages."""
    entity_type, start, end = span
    return f"{entity_type} [{start}, {end})"


def char_tags_to_word_tags(char_tags, words):
    """Word tags from character tags: each word takes its first character's tag, then an
    ``I-X`` that opens an entity becomes ``B-X`` (an entity that starts inside a word starts
    at the next word).

    Args:
        char_tags: one tag per character of the text.
        words: (start, end) spans from ``split_words``.
    """
    out, prev_type = [], None
    for start, _ in words:
        tag = char_tags[start]
        entity_type = None if tag == "O" else tag[2:]
        if tag.startswith("I-") and entity_type != prev_type:
            tag = "B-" + entity_type
        out.append(tag)
        prev_type = entity_type
    return out


def word_tags_to_spans(word_tags, words):
    """Entities as character spans: (type, start of the first word, end of the last word).

    Args:
        word_tags: one BIO tag per word (read leniently, as seqeval does).
        words: (start, end) spans of the same words.

    Returns:
        list of (type, start, end) triples, end exclusive, in text order.
    """
    return [(entity_type, words[first][0], words[last][1])
            for entity_type, first, last in get_entities(list(word_tags))]


def spans_inside_words(spans, words):
    """The spans that start or end inside a word: no word tagging can give them exactly
    (``CPL`` in ``CPL2011``: ``CPL2011`` is one word). For reports and tests."""
    starts = {start for start, _ in words}
    ends = {end for _, end in words}
    return [s for s in spans if s[1] not in starts or s[2] not in ends]
