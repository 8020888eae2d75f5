"""minitune.words: BERT's word rule with exact character offsets, and BIO tags between
characters, words and entity spans."""
import pytest
from hypothesis import given
from hypothesis import strategies as st
from paths import FIXTURES

from minitune import Tokenizer
from minitune.data.words import (char_tags_to_word_tags, spans_inside_words, spans_to_char_tags,
                            split_words, word_tags_to_spans)

MIXED = "张三在北京工作。iPhone5s售价５９９９元，比去年便宜了20%！《FarmVille》Ｔｅｓｔ　ok\u200b好"


def words_of(text):
    return [text[s:e] for s, e in split_words(text)]


def test_each_cjk_character_is_a_word():
    assert words_of("张三在北京工作。") == list("张三在北京工作。")


def test_mixed_scripts_digits_and_full_width_forms():
    assert words_of(MIXED) == [
        *"张三在北京工作。", "iPhone5s", "售", "价", "５９９９", "元", "，", *"比去年便宜了",
        "20", "%", "！", "《", "FarmVille", "》", "Ｔｅｓｔ", "ok", "好"]


def test_offsets_index_the_original_text():
    """Words in order, non-overlapping; what lies between them is whitespace or dropped
    (control/format) characters only."""
    text = " \tCafé naïve，ÉCOLE 東京\u00a0ok a\u200bb 𠀋𪚥 😀👍🏽 "
    spans = split_words(text)
    assert [text[s:e] for s, e in spans] == [
        "Café", "naïve", "，", "ÉCOLE", "東", "京", "ok", "a\u200bb", "𠀋", "𪚥", "😀👍🏽"]
    previous_end = 0
    for start, end in spans:
        assert previous_end <= start < end
        assert text[previous_end:start].strip() == ""
        previous_end = end


@pytest.fixture(scope="module")
def chinese_tokenizer():
    return Tokenizer.from_pretrained(FIXTURES / "tiny_chinese_bert")


ALPHABET = st.sampled_from(list(
    "张三北京工作東京龘𠀋abcXYZé09５９Ｔｅ，。！《》（）“”…-.%@ \t\n\u3000\u00a0\u200b😀"))


@given(st.lists(ALPHABET, max_size=30).map("".join))
def test_the_rule_is_berts(chinese_tokenizer, text):
    """Tokenizing the words one by one gives exactly the ids of tokenizing the text, and
    each token falls in the same word as BERT's own word_ids say: the split never separates
    what BERT keeps together, nor joins what it separates."""
    whole = chinese_tokenizer([text], padding=False)
    by_word = chinese_tokenizer([words_of(text)], is_split_into_words=True, padding=False)
    assert by_word["input_ids"][0] == whole["input_ids"][0]
    assert by_word.word_ids(0) == whole.word_ids(0)


def test_spans_to_char_tags_and_back():
    text = "叶老桂在北京见了Real Madrid的人"
    spans = [("name", 0, 3), ("address", 4, 6), ("organization", 8, 19)]
    assert text[8:19] == "Real Madrid"
    tags = spans_to_char_tags(len(text), spans)
    assert tags[:4] == ["B-name", "I-name", "I-name", "O"]
    assert tags[8:20] == ["B-organization"] + ["I-organization"] * 10 + ["O"]
    words = split_words(text)
    word_tags = char_tags_to_word_tags(tags, words)
    assert word_tags_to_spans(word_tags, words) == spans


def test_span_that_starts_inside_a_word():
    """'CPL' inside the word 'CPL2011' widens to the word; 'nec尼美根' inside 'vsnec尼美根'
    starts at the next word (its I- becomes B-)."""
    text = "CPL2011在vsnec尼美根"
    spans = [("organization", 0, 3), ("organization", 10, 16)]
    assert [text[s:e] for _, s, e in spans] == ["CPL", "nec尼美根"]
    words = split_words(text)
    word_tags = char_tags_to_word_tags(spans_to_char_tags(len(text), spans), words)
    assert word_tags == ["B-organization", "O", "O", "B-organization", "I-organization",
                         "I-organization"]
    assert word_tags_to_spans(word_tags, words) == [("organization", 0, 7),
                                                    ("organization", 13, 16)]
    assert spans_inside_words(spans, words) == spans


@pytest.mark.parametrize("spans,message", [
    ([("name", 2, 5), ("address", 4, 6)], r"span address \[4, 6\) overlaps name \[2, 5\)"),
    ([("name", 5, 9)], r"span name \[5, 9\) is outside the text of 8 characters"),
    ([("name", -1, 2)], r"outside the text"),
    ([("name", 3, 3)], r"span name \[3, 3\) is empty"),
])
def test_bad_spans_are_reported(spans, message):
    with pytest.raises(ValueError, match=message):
        spans_to_char_tags(8, spans)
