from __future__ import annotations

from collections import Counter

import pytest

from webapp.evaluations.judging.sampling import allocate, stratified_sample


def _rows(counts: dict[str, int]) -> list[dict]:
    """Categories interleaved, as in a real file."""
    rows: list[dict] = []
    remaining = dict(counts)
    while any(remaining.values()):
        for name in counts:
            if remaining[name]:
                rows.append({"id": f"q{len(rows)}", "category": name, "question": "?", "reference": ""})
                remaining[name] -= 1
    return rows


BELLE = {"general": 887, "math": 75, "coding": 38}


def test_belle_100_keeps_the_seed_ratio_89_7_4() -> None:
    sample = stratified_sample(_rows(BELLE), size=100, seed=0)
    assert len(sample) == 100
    assert Counter(row["category"] for row in sample) == {"general": 89, "math": 7, "coding": 4}


def test_sample_is_deterministic_per_seed_and_in_dataset_order() -> None:
    rows = _rows(BELLE)
    first = stratified_sample(rows, size=100, seed=7)
    assert first == stratified_sample(rows, size=100, seed=7)
    assert first != stratified_sample(rows, size=100, seed=8)
    positions = [rows.index(row) for row in first]
    assert positions == sorted(positions)
    assert len({row["id"] for row in first}) == 100


def test_no_size_or_size_at_least_the_dataset_gives_every_row() -> None:
    rows = _rows({"general": 3, "math": 2})
    assert stratified_sample(rows, size=None, seed=1) == rows
    assert stratified_sample(rows, size=5, seed=1) == rows
    assert stratified_sample(rows, size=50, seed=1) == rows


def test_every_present_category_gets_one_when_size_allows() -> None:
    # 2% of 10 rounds to 0; the rare category still gets a row
    counts = {"general": 980, "math": 10, "coding": 10}
    assert allocate(counts, 10) == {"general": 8, "math": 1, "coding": 1}
    sample = stratified_sample(_rows(counts), size=3, seed=0)
    assert Counter(row["category"] for row in sample) == {"general": 1, "math": 1, "coding": 1}


def test_size_below_the_number_of_categories_goes_to_the_largest() -> None:
    assert allocate({"general": 90, "math": 6, "coding": 4}, 1) == {"general": 1, "math": 0, "coding": 0}


@pytest.mark.parametrize("size", [1, 2, 3, 17, 99, 100, 999])
def test_allocation_always_sums_to_the_size(size: int) -> None:
    shares = allocate(BELLE, size)
    assert sum(shares.values()) == size
    assert all(0 <= shares[name] <= BELLE[name] for name in BELLE)


def test_rows_without_category_count_as_general() -> None:
    rows = [{"id": str(i), "question": "?"} for i in range(10)] + [{"id": "m", "category": "math"}]
    sample = stratified_sample(rows, size=2, seed=0)
    assert sum(1 for row in sample if row.get("category") == "math") == 1


def test_size_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        stratified_sample(_rows({"general": 3}), size=0, seed=0)
