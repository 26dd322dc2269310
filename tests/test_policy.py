"""Calibration of the ID-check rule on generated predictions with a known answer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from faceage.config import EvaluateConfig
from faceage.errors import DataError
from faceage.evaluate import score
from faceage.policy import SEARCH_MAX, Policy, calibrate, tradeoff

# 3 minors predicted 10, 20 and 30; 4 adults predicted 22, 26, 35, 50.
TRUE = np.array([15, 16, 17, 19, 30, 40, 60], dtype=float)
PRED = np.array([10, 20, 30, 22, 26, 35, 50], dtype=float)


def test_zero_tolerance_picks_the_lowest_threshold_that_asks_every_minor() -> None:
    policy = calibrate(TRUE, PRED, legal_age=18, max_minors_not_asked=0.0)
    assert policy.threshold == pytest.approx(30.25)  # first grid point above the oldest-looking minor (30)
    assert policy.met_on_val and policy.val_minors_not_asked == 0.0
    assert policy.val_adults_asked == pytest.approx(2 / 4)  # 22 and 26 are asked
    assert policy.val_n_minors == 3


def test_a_looser_target_is_cheaper_for_adults() -> None:
    strict = calibrate(TRUE, PRED, 18, 0.0)
    loose = calibrate(TRUE, PRED, 18, 0.34)  # one minor in three may pass
    assert loose.threshold == pytest.approx(20.25)
    assert loose.val_minors_not_asked == pytest.approx(1 / 3)
    assert loose.val_adults_asked < strict.val_adults_asked
    # Cheapest: one grid step lower no longer meets the target.
    assert tradeoff(TRUE, PRED, 18, np.array([loose.threshold - 0.25]))["minors_not_asked"][0] > 0.34


def test_unreachable_target_is_flagged_and_the_safest_rule_returned() -> None:
    pred = PRED.copy()
    pred[0] = SEARCH_MAX + 5  # a minor who looks older than any threshold searched
    policy = calibrate(TRUE, pred, 18, 0.0)
    assert not policy.met_on_val
    assert policy.threshold == pytest.approx(SEARCH_MAX)


def test_no_minors_in_validation_is_a_clear_error() -> None:
    with pytest.raises(DataError, match="no minors"):
        calibrate(np.array([30.0, 40.0]), np.array([31.0, 39.0]), 18, 0.02)


def test_children_below_youngest_minor_do_not_drive_the_threshold() -> None:
    true = np.append(TRUE, 4.0)
    pred = np.append(PRED, 45.0)  # a toddler who looks 45 would force T above 45 if counted
    assert calibrate(true, pred, 18, 0.0).threshold > 45
    policy = calibrate(true, pred, 18, 0.0, youngest_minor=13)
    assert policy.threshold == pytest.approx(30.25) and policy.youngest_minor == 13 and policy.val_n_minors == 3
    with pytest.raises(DataError, match="no minors \\(aged 13-17\\)"):
        calibrate(np.array([4.0, 30.0]), np.array([5.0, 31.0]), 18, 0.02, youngest_minor=13)


def test_tradeoff_is_monotonic_in_the_threshold() -> None:
    rng = np.random.default_rng(0)
    true = rng.uniform(5, 70, 500)
    pred = true + rng.normal(0, 6, 500)
    table = tradeoff(true, pred, 18)
    assert list(table["threshold"]) == list(range(18, 41))
    assert (np.diff(table["minors_not_asked"]) <= 0).all()
    assert (np.diff(table["adults_asked"]) >= 0).all()


def test_policy_round_trips_and_applies_its_rule(tmp_path: Path) -> None:
    policy = calibrate(TRUE, PRED, 18, 0.0)
    loaded = Policy.load(policy.save(tmp_path / "policy.json"))
    assert loaded == policy
    assert "under 30.25" in loaded.rule
    np.testing.assert_array_equal(loaded.ask(np.array([30.0, 30.25, 31.0])), [True, False, False])
    with pytest.raises(DataError, match="no calibrated"):
        Policy.load(tmp_path / "missing.json")


def test_score_reports_the_calibrated_rule_per_gender_and_race() -> None:
    policy = calibrate(TRUE, PRED, 18, 0.0)
    rows = pd.DataFrame({"gender": ["0", "1", "0", "1", "0", "1", None], "race": ["0", "0", "1", "1", "2", "2", "2"]})
    metrics, _ = score(TRUE, PRED, EvaluateConfig(), baseline_age=29.0, policy=policy, rows=rows)
    assert metrics["policy"]["threshold"] == pytest.approx(30.25)
    assert metrics["policy"]["minors_not_asked"] == 0.0
    by_gender = metrics["policy"]["by_gender"]
    assert by_gender["male"]["n"] == 3 and by_gender["female"]["n"] == 3
    assert set(metrics["policy"]["by_race"]) == {"White", "Black", "Asian"}
