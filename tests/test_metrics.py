"""Metrics on hand-computed numbers: overall errors, errors per age group, the store's ID check."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from faceage.ages import GROUP_LABELS, age_group
from faceage.metrics import id_check, per_group, regression_metrics, wilson_upper


def test_regression_metrics_hand_computed() -> None:
    true = np.array([10.0, 20.0, 30.0, 40.0])
    pred = np.array([12.0, 14.0, 30.0, 49.0])
    # errors: +2, -6, 0, +9 ; |e|: 2, 6, 0, 9
    m = regression_metrics(true, pred)
    assert m["mae"] == pytest.approx(17 / 4)
    assert m["rmse"] == pytest.approx(math.sqrt((4 + 36 + 0 + 81) / 4))
    assert m["median_ae"] == pytest.approx((2 + 6) / 2)
    assert m["cs5"] == pytest.approx(2 / 4)  # |e| <= 5: 2 and 0
    assert m["mean_signed_error"] == pytest.approx(5 / 4)
    assert all(isinstance(v, float) for v in m.values())


def test_cs5_boundary_is_inclusive() -> None:
    m = regression_metrics(np.array([20.0, 20.0]), np.array([25.0, 25.01]))
    assert m["cs5"] == pytest.approx(0.5)


def test_perfect_predictions() -> None:
    true = np.array([1.0, 50.0, 99.0])
    m = regression_metrics(true, true.copy())
    assert m == {"mae": 0.0, "rmse": 0.0, "median_ae": 0.0, "cs5": 1.0, "mean_signed_error": 0.0}


def test_per_group_rows_and_empty_groups_omitted() -> None:
    true = np.array([5.0, 10.0, 20.0, 70.0, 80.0, 12.9])
    pred = np.array([7.0, 6.0, 21.0, 60.0, 75.0, 13.0])
    table = per_group(true, pred)
    assert list(table.columns) == ["group", "n", "mae", "mean_signed_error"]
    assert table["group"].tolist() == ["0-12", "18-24", "65+"]  # group order, empty groups left out
    rows = table.set_index("group")
    # 0-12: errors +2, -4, +0.1
    assert rows.loc["0-12", "n"] == 3
    assert rows.loc["0-12", "mae"] == pytest.approx((2 + 4 + 0.1) / 3)
    assert rows.loc["0-12", "mean_signed_error"] == pytest.approx((2 - 4 + 0.1) / 3)
    assert rows.loc["18-24", "n"] == 1 and rows.loc["18-24", "mae"] == pytest.approx(1.0)
    # 65+: errors -10, -5
    assert rows.loc["65+", "n"] == 2
    assert rows.loc["65+", "mae"] == pytest.approx(7.5)
    assert rows.loc["65+", "mean_signed_error"] == pytest.approx(-7.5)
    assert table["n"].sum() == len(true)


def test_per_group_groups_by_true_age_not_prediction() -> None:
    table = per_group(np.array([16.0]), np.array([40.0]))
    assert table["group"].tolist() == ["13-17"]


def test_per_group_empty_input() -> None:
    table = per_group(np.array([]), np.array([]))
    assert table.empty
    assert list(table.columns) == ["group", "n", "mae", "mean_signed_error"]


def test_id_check_hand_made() -> None:
    # legal age 18, ask for ID when the estimate is under 25
    true = np.array([15.0, 16.0, 17.0, 20.0, 22.0, 30.0, 40.0, 26.0])
    pred = np.array([14.0, 26.0, 30.0, 24.0, 27.0, 23.0, 45.0, 25.0])
    # asked (pred < 25):   Y     N     N     Y     N     Y     N     N (25 is not < 25)
    out = id_check(true, pred, legal_age=18, threshold=25)
    assert out["n_minors"] == 3 and out["n_adults"] == 5
    assert out["minors_not_asked"] == pytest.approx(2 / 3)
    assert out["adults_asked"] == pytest.approx(2 / 5)        # 20 and 30 asked
    assert out["adults_25plus_asked"] == pytest.approx(1 / 3)  # 30, 40, 26 -> only 30 asked


def test_id_check_legal_age_is_a_boundary() -> None:
    out = id_check(np.array([17.99, 18.0]), np.array([30.0, 30.0]), legal_age=18, threshold=25)
    assert out["n_minors"] == 1 and out["n_adults"] == 1
    assert out["minors_not_asked"] == 1.0
    assert out["adults_asked"] == 0.0


def test_id_check_counts_minors_from_youngest_minor_only() -> None:
    # A child of 5 predicted 40 is no teenager at the till: with youngest_minor=13 it counts in neither rate.
    true = np.array([5.0, 14.0, 16.0, 30.0])
    pred = np.array([40.0, 20.0, 30.0, 20.0])
    out = id_check(true, pred, legal_age=18, threshold=25, youngest_minor=13)
    assert out["n_minors"] == 2 and out["n_adults"] == 1
    assert out["minors_not_asked"] == pytest.approx(1 / 2)  # 16 predicted 30
    everyone = id_check(true, pred, legal_age=18, threshold=25)
    assert everyone["n_minors"] == 3 and everyone["minors_not_asked"] == pytest.approx(2 / 3)


def test_wilson_upper_bound_known_values() -> None:
    assert wilson_upper(0, 10) == pytest.approx(0.2775, abs=1e-4)
    assert wilson_upper(1, 80) == pytest.approx(0.0675, abs=1e-4)  # 1 of 80 teenagers missed: up to 6.7%
    assert wilson_upper(5, 10) > 0.5 and wilson_upper(10, 10) == pytest.approx(1.0)
    assert math.isnan(wilson_upper(0, 0))


def test_id_check_nan_without_minors() -> None:
    out = id_check(np.array([30.0, 40.0]), np.array([20.0, 50.0]), legal_age=18, threshold=25)
    assert out["n_minors"] == 0
    assert math.isnan(out["minors_not_asked"])
    assert out["adults_asked"] == pytest.approx(0.5)


def test_id_check_nan_without_adults() -> None:
    out = id_check(np.array([10.0, 15.0]), np.array([20.0, 30.0]), legal_age=18, threshold=25)
    assert out["minors_not_asked"] == pytest.approx(0.5)
    assert math.isnan(out["adults_asked"]) and math.isnan(out["adults_25plus_asked"])


@pytest.mark.parametrize(
    ("age", "label"),
    [(0, "0-12"), (12, "0-12"), (12.99, "0-12"), (13, "13-17"), (17.9, "13-17"), (18, "18-24"), (24.5, "18-24"),
     (25, "25-34"), (34, "25-34"), (35, "35-44"), (45, "45-54"), (55, "55-64"), (64, "55-64"), (65, "65+"),
     (120, "65+")],
)
def test_age_group_edges(age: float, label: str) -> None:
    assert age_group([age]).tolist() == [label]


def test_age_group_vectorised() -> None:
    out = age_group(np.array([12, 13, 17.9, 18, 64, 65]))
    assert out.tolist() == ["0-12", "13-17", "13-17", "18-24", "55-64", "65+"]
    assert set(age_group(np.arange(0, 121))) == set(GROUP_LABELS)


def test_json_safe_reaches_into_nested_lists() -> None:
    from faceage.evaluate import json_safe

    report = {"a": [np.float32(1.23456), {"b": [float("nan"), np.int64(3)]}], "c": (np.float64(2.0),), "d": "x"}
    out = json_safe(report)
    assert out == {"a": [1.2346, {"b": [None, 3]}], "c": [2.0], "d": "x"}
    assert type(out["a"][1]["b"][1]) is int
    json.dumps(out, allow_nan=False)   # valid JSON: no NaN, no numpy types
