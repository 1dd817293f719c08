from __future__ import annotations

from webapp.evaluations.judging.outcome import ItemOutcome
from webapp.evaluations.judging.report import ReportItem, build_report

CATEGORY_KEYS = {"n", "a_mean", "b_mean", "win", "tie", "loss", "inconsistent"}
TOP_KEYS = {"categories", "micro", "macro", "n", "win", "tie", "loss", "unparsed", "inconsistent"}


def _items(category: str, a_scores: list[float], b_score: float = 5.0, outcome: str = "win") -> list[ReportItem]:
    return [ReportItem(category, ItemOutcome(outcome, False, a, b_score)) for a in a_scores]


def test_the_seed_table_gives_micro_6_53_and_macro_5_11() -> None:
    # General 89 questions, mean 615/89 = 6.91; Math 7, mean 10/7 = 1.43; Coding 4, mean 7.0
    items = (_items("general", [7.0] * 81 + [6.0] * 8)
             + _items("math", [2.0] * 3 + [1.0] * 4)
             + _items("coding", [7.0] * 4))
    report = build_report(items)
    means = {name: (c["n"], round(c["a_mean"], 2)) for name, c in report["categories"].items()}
    assert means == {"general": (89, 6.91), "math": (7, 1.43), "coding": (4, 7.0)}
    assert round(report["micro"]["a"], 2) == 6.53
    assert round(report["macro"]["a"], 2) == 5.11
    assert report["micro"]["b"] == report["macro"]["b"] == 5.0
    # means are not rounded in the report itself
    assert report["categories"]["general"]["a_mean"] == 615 / 89


def test_report_has_the_issue_shape_and_counts_outcomes() -> None:
    items = [
        ReportItem("general", ItemOutcome("win", False, 8.0, 6.0)),
        ReportItem("general", ItemOutcome("tie", True, 6.5, 6.5)),
        ReportItem("general", ItemOutcome("unparsed", False, 9.0, 3.0)),  # one order parsed: its scores count
        ReportItem("math", ItemOutcome("loss", False, 2.0, 9.0)),
        ReportItem("math", ItemOutcome("unparsed", False, None, None)),
        ReportItem("open qa", ItemOutcome("tie", False, 5.0, 5.0)),
    ]
    report = build_report(items)
    assert set(report) == TOP_KEYS
    assert all(set(c) == CATEGORY_KEYS for c in report["categories"].values())
    assert list(report["categories"]) == ["general", "math", "open qa"]
    assert report["categories"]["general"] == {
        "n": 3, "a_mean": (8.0 + 6.5 + 9.0) / 3, "b_mean": (6.0 + 6.5 + 3.0) / 3,
        "win": 1, "tie": 1, "loss": 0, "inconsistent": 1}
    assert report["categories"]["math"] == {
        "n": 2, "a_mean": 2.0, "b_mean": 9.0, "win": 0, "tie": 0, "loss": 1, "inconsistent": 0}
    assert (report["n"], report["win"], report["tie"], report["loss"], report["unparsed"], report["inconsistent"]) == \
        (6, 1, 2, 1, 2, 1)
    assert report["micro"] == {"a": (8.0 + 6.5 + 9.0 + 2.0 + 5.0) / 5, "b": (6.0 + 6.5 + 3.0 + 9.0 + 5.0) / 5}
    assert report["macro"] == {"a": ((8.0 + 6.5 + 9.0) / 3 + 2.0 + 5.0) / 3,
                               "b": ((6.0 + 6.5 + 3.0) / 3 + 9.0 + 5.0) / 3}


def test_verdict_mode_report_has_no_means() -> None:
    items = [
        ReportItem("general", ItemOutcome("win", False)),
        ReportItem("coding", ItemOutcome("tie", True)),
        ReportItem("coding", ItemOutcome("unparsed", False)),
    ]
    report = build_report(items)
    assert report["micro"] == {"a": None, "b": None}
    assert report["macro"] == {"a": None, "b": None}
    for category in report["categories"].values():
        assert category["a_mean"] is None and category["b_mean"] is None
    assert list(report["categories"]) == ["general", "coding"]
    assert (report["win"], report["tie"], report["unparsed"], report["inconsistent"]) == (1, 1, 1, 1)


def test_a_category_without_scores_does_not_drag_the_macro_mean() -> None:
    items = [ReportItem("general", ItemOutcome("win", False, 8.0, 4.0)),
             ReportItem("math", ItemOutcome("unparsed", False, None, None))]
    report = build_report(items)
    assert report["categories"]["math"]["a_mean"] is None
    assert report["macro"] == {"a": 8.0, "b": 4.0}


def test_empty_report() -> None:
    report = build_report([])
    assert report["categories"] == {}
    assert report["micro"] == report["macro"] == {"a": None, "b": None}
    assert (report["n"], report["win"], report["tie"], report["loss"], report["unparsed"]) == (0, 0, 0, 0, 0)
