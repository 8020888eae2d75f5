"""minitune.metrics against numbers produced by seqeval and scikit-learn.

The fixture tests/fixtures/metric_cases.json was written by tools/make_metric_fixtures.py
with the real libraries; neither library is needed here.
"""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from minitune import metrics

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "metric_cases.json"
CASES = json.loads(FIXTURE.read_text(encoding="utf-8"))
TOL = 1e-12


def _ids(cases):
    return [c["name"] for c in cases]


# ----------------------------------------------------------------- entities (seqeval)


@pytest.mark.parametrize("case", CASES["entities"], ids=lambda c: " ".join(c["tags"]) or "empty")
def test_get_entities_single_sequence(case):
    got = [list(e) for e in metrics.get_entities(case["tags"])]
    assert got == case["entities"]


@pytest.mark.parametrize("case", CASES["seqeval"], ids=_ids(CASES["seqeval"]))
def test_span_scores_match_seqeval(case):
    y_true, y_pred = case["y_true"], case["y_pred"]
    assert [list(e) for e in metrics.get_entities(y_true)] == case["entities_true"]
    assert [list(e) for e in metrics.get_entities(y_pred)] == case["entities_pred"]
    for average in ("micro", "macro", "weighted"):
        got = metrics.span_precision_recall_f1(y_true, y_pred, average=average)
        # Without any entity seqeval's macro average is the mean of nothing (nan);
        # minitune returns 0 there, like every other zero-denominator case.
        want = np.nan_to_num(case[average], nan=0.0)
        np.testing.assert_allclose(got, want, rtol=0, atol=TOL, err_msg=average)
    assert metrics.span_f1(y_true, y_pred) == pytest.approx(case["micro"][2], abs=TOL)
    p, r, f = metrics.span_precision_recall_f1(y_true, y_pred, average=None)
    for name, got in (("precision", p), ("recall", r), ("f1", f)):
        np.testing.assert_allclose(got, case["per_type"][name], rtol=0, atol=TOL, err_msg=name)


@pytest.mark.parametrize("case", [c for c in CASES["seqeval"] if c["report"]],
                         ids=_ids([c for c in CASES["seqeval"] if c["report"]]))
def test_ner_report_matches_seqeval(case):
    assert metrics.ner_classification_report(case["y_true"], case["y_pred"]) == case["report"]


def test_fixture_covers_the_interesting_cases():
    # The comparisons above only mean something if the fixture holds non-trivial scores.
    f1s = [c["micro"][2] for c in CASES["seqeval"]]
    assert min(f1s) == 0.0 and max(f1s) == 1.0
    assert sum(0.0 < f < 1.0 for f in f1s) > 50


def test_span_f1_hand_example():
    # One of two entities found exactly; the prediction also has a spurious LOC.
    y_true = [["B-PER", "I-PER", "O", "B-ORG"]]
    y_pred = [["B-PER", "I-PER", "O", "B-LOC"]]
    p, r, f = metrics.span_precision_recall_f1(y_true, y_pred)
    assert (p, r, f) == (0.5, 0.5, 0.5)


def test_span_metrics_check_lengths():
    with pytest.raises(ValueError, match="sentence 1: 2 true tags but 1 predicted"):
        metrics.span_f1([["O"], ["O", "O"]], [["O"], ["O"]])
    with pytest.raises(ValueError, match="2 sentences but y_pred has 1"):
        metrics.span_f1([["O"], ["O"]], [["O"]])


def test_entities_never_cross_sentences():
    assert metrics.get_entities([["O", "B-PER"], ["I-PER"]]) == [("PER", 1, 1), ("PER", 3, 3)]


# ----------------------------------------------------------------- classification (sklearn)


@pytest.mark.parametrize("case", CASES["sklearn"], ids=_ids(CASES["sklearn"]))
def test_classification_scores_match_sklearn(case):
    y_true, y_pred = case["y_true"], case["y_pred"]
    assert metrics.accuracy(y_true, y_pred) == pytest.approx(case["accuracy"], abs=TOL)
    for average in ("micro", "macro", "weighted"):
        got = metrics.precision_recall_f1(y_true, y_pred, average=average)
        np.testing.assert_allclose(got, case[average], rtol=0, atol=TOL, err_msg=average)
    p, r, f = metrics.precision_recall_f1(y_true, y_pred, average=None, labels=case["labels"])
    for name, got in (("precision", p), ("recall", r), ("f1", f)):
        np.testing.assert_allclose(got, case["per_label"][name], rtol=0, atol=TOL, err_msg=name)
    if "binary" in case:
        got = metrics.precision_recall_f1(y_true, y_pred, average="binary",
                                          pos_label=case["binary"]["pos_label"])
        np.testing.assert_allclose(got, case["binary"]["prf"], rtol=0, atol=TOL)
    if "subset_labels" in case:
        for average in ("micro", "macro"):
            got = metrics.precision_recall_f1(y_true, y_pred, average=average,
                                              labels=case["subset_labels"])
            np.testing.assert_allclose(got, case["subset_" + average], rtol=0, atol=TOL)
        report = metrics.classification_report(y_true, y_pred, labels=case["subset_labels"])
        assert report == case["subset_report"]


def _int_support(report):
    """scikit-learn prints the support column as floats ("1.0") when every score is 0
    (its rows pass through one float array); minitune always prints integers."""
    return re.sub(r"(\d+)\.0$", lambda m: ("%" + str(len(m.group(0))) + "d") % int(m.group(1)),
                  report, flags=re.M)


@pytest.mark.parametrize("case", CASES["sklearn"], ids=_ids(CASES["sklearn"]))
def test_classification_report_matches_sklearn(case):
    y_true, y_pred = case["y_true"], case["y_pred"]
    got = metrics.classification_report(y_true, y_pred, target_names=case["target_names"])
    assert got == _int_support(case["report"])
    got = metrics.classification_report(y_true, y_pred, digits=2)
    assert got == _int_support(case["report_digits2"])


def test_binary_needs_two_labels_at_most():
    with pytest.raises(ValueError, match="at most two distinct labels"):
        metrics.precision_recall_f1([0, 1, 2], [0, 1, 1])
    with pytest.raises(ValueError, match="pos_label='yes' is not one of"):
        metrics.precision_recall_f1(["a", "b"], ["a", "b"], pos_label="yes")


def test_accuracy_accepts_arrays_and_checks_lengths():
    assert metrics.accuracy(np.array([1, 0, 1]), [1, 1, 1]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="3 items but y_pred has 2"):
        metrics.accuracy([1, 0, 1], [1, 0])
