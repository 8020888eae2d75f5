"""Label maps (minitune/data/labels.py): the id order of a run and unseen labels."""
import numpy as np
import pytest
from minitune import data


CONLL_ORDER = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]


def written(path, text):
    path.write_text(text)
    return path


def test_label_map_ner_order():
    rng = np.random.default_rng(0)
    tags = list(rng.permutation(CONLL_ORDER))
    assert data.build_label_map([tags[:5], tags[5:]]) == CONLL_ORDER
    # Only B-LOC seen: I-LOC is still included so the model can predict it.
    assert data.build_label_map(["O", "B-LOC", "B-PER"]) == ["O", "B-PER", "I-PER", "B-LOC",
                                                            "I-LOC"]
    assert data.build_label_map([["B-DATE", "O", "I-ORG"]]) == ["O", "B-DATE", "I-DATE",
                                                               "B-ORG", "I-ORG"]


def test_label_map_classification_order():
    assert data.build_label_map(["1", "10", "2", "0", "1"]) == ["0", "1", "2", "10"]
    assert data.build_label_map(["pos", "neg", "neutral"]) == ["neg", "neutral", "pos"]
    assert data.build_label_map(["b", "a"], preferred_order=["b", "a", "c"]) == ["b", "a", "c"]
    with pytest.raises(ValueError, match=r"missing from preferred_order .*\['c'\]"):
        data.build_label_map(["a", "c"], preferred_order=["a", "b"])
    with pytest.raises(ValueError, match="repeats"):
        data.build_label_map(["a"], preferred_order=["a", "a"])


def test_check_labels_names_file_and_line(tmp_path):
    train = data.read_classification(
        written(tmp_path / "train.tsv", "label\ttext\npos\ta\nneg\tb\n"))
    dev = data.read_classification(
        written(tmp_path / "dev.tsv", "label\ttext\npos\tc\nmixed\td\nmixed\te\nodd\tf\n"))
    id2label = data.build_label_map(train.labels)
    with pytest.raises(ValueError, match=r"dev\.tsv: labels never seen in training: 'mixed' "
                                         r"\(first at line 3\), 'odd' \(first at line 5\); "
                                         r"known labels: \['neg', 'pos'\]"):
        data.check_labels(dev, id2label)
    dev_ner = data.read_conll(written(tmp_path / "dev.txt", "a O\n\nb O\nc B-DATE\n"))
    with pytest.raises(ValueError, match=r"dev\.txt: .*'B-DATE' \(first at line 4\)"):
        data.check_labels(dev_ner, CONLL_ORDER)
    with pytest.raises(ValueError, match=r"'x' \(first at example 1\)"):
        data.check_labels(["0", "x"], ["0", "1"])
