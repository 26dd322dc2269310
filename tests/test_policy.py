"""Calibration of the ID-check rule (on the age, or on the chance of being a minor) on generated predictions
with a known answer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from faceage.config import EvaluateConfig
from faceage.config import parse_params
from faceage.errors import ConfigError, DataError
from faceage.estimates import Estimates
from faceage.model import AGE_BINS
from faceage.evaluate import score
from faceage.policy import CHANCE_GRID, SEARCH_MAX, Policy, calibrate, tradeoff

# 3 minors predicted 10, 20 and 30; 4 adults predicted 22, 26, 35, 50.
TRUE = np.array([15, 16, 17, 19, 30, 40, 60], dtype=float)
PRED = np.array([10, 20, 30, 22, 26, 35, 50], dtype=float)
EST = Estimates(PRED)


def est(pred: np.ndarray) -> Estimates:
    return Estimates(np.asarray(pred, dtype=float))


def test_zero_tolerance_picks_the_lowest_threshold_that_asks_every_minor() -> None:
    policy = calibrate(TRUE, EST, legal_age=18, max_minors_not_asked=0.0)
    assert policy.threshold == pytest.approx(30.25)  # first grid point above the oldest-looking minor (30)
    assert policy.met_on_val and policy.val_minors_not_asked == 0.0
    assert policy.val_adults_asked == pytest.approx(2 / 4)  # 22 and 26 are asked
    assert policy.val_n_minors == 3


def test_a_looser_target_is_cheaper_for_adults() -> None:
    strict = calibrate(TRUE, EST, 18, 0.0)
    loose = calibrate(TRUE, EST, 18, 0.34)  # one minor in three may pass
    assert loose.threshold == pytest.approx(20.25)
    assert loose.val_minors_not_asked == pytest.approx(1 / 3)
    assert loose.val_adults_asked < strict.val_adults_asked
    # Cheapest: one grid step lower no longer meets the target.
    assert tradeoff(TRUE, EST, 18, thresholds=np.array([loose.threshold - 0.25]))["minors_not_asked"][0] > 0.34


def test_unreachable_target_is_flagged_and_the_safest_rule_returned() -> None:
    pred = PRED.copy()
    pred[0] = SEARCH_MAX + 5  # a minor who looks older than any threshold searched
    policy = calibrate(TRUE, est(pred), 18, 0.0)
    assert not policy.met_on_val
    assert policy.threshold == pytest.approx(SEARCH_MAX)


def test_no_minors_in_validation_is_a_clear_error() -> None:
    with pytest.raises(DataError, match="no minors"):
        calibrate(np.array([30.0, 40.0]), est([31.0, 39.0]), 18, 0.02)


def test_children_below_youngest_minor_do_not_drive_the_threshold() -> None:
    true = np.append(TRUE, 4.0)
    pred = np.append(PRED, 45.0)  # a toddler who looks 45 would force T above 45 if counted
    assert calibrate(true, est(pred), 18, 0.0).threshold > 45
    policy = calibrate(true, est(pred), 18, 0.0, youngest_minor=13)
    assert policy.threshold == pytest.approx(30.25) and policy.youngest_minor == 13 and policy.val_n_minors == 3
    with pytest.raises(DataError, match="no minors \\(aged 13-17\\)"):
        calibrate(np.array([4.0, 30.0]), est([5.0, 31.0]), 18, 0.02, youngest_minor=13)


def test_tradeoff_is_monotonic_in_the_threshold() -> None:
    rng = np.random.default_rng(0)
    true = rng.uniform(5, 70, 500)
    pred = true + rng.normal(0, 6, 500)
    table = tradeoff(true, est(pred), 18)
    assert list(table["threshold"]) == list(range(18, 41))
    assert (np.diff(table["minors_not_asked"]) <= 0).all()
    assert (np.diff(table["adults_asked"]) >= 0).all()


def test_policy_round_trips_and_applies_its_rule(tmp_path: Path) -> None:
    policy = calibrate(TRUE, EST, 18, 0.0)
    loaded = Policy.load(policy.save(tmp_path / "policy.json"))
    assert loaded == policy
    assert "under 30.25" in loaded.rule
    np.testing.assert_array_equal(loaded.ask(est([30.0, 30.25, 31.0])), [True, False, False])
    with pytest.raises(DataError, match="no calibrated"):
        Policy.load(tmp_path / "missing.json")


def test_score_reports_the_calibrated_rule_per_gender_and_race() -> None:
    policy = calibrate(TRUE, EST, 18, 0.0)
    rows = pd.DataFrame({"gender": ["0", "1", "0", "1", "0", "1", None], "race": ["0", "0", "1", "1", "2", "2", "2"]})
    metrics, _ = score(TRUE, EST, EvaluateConfig(), baseline_age=29.0, policy=policy, rows=rows)
    assert metrics["policy"]["threshold"] == pytest.approx(30.25)
    assert metrics["policy"]["minors_not_asked"] == 0.0
    by_gender = metrics["policy"]["by_gender"]
    assert by_gender["male"]["n"] == 3 and by_gender["female"]["n"] == 3
    assert set(metrics["policy"]["by_race"]) == {"White", "Black", "Asian"}


def distributions(p_minor: list[float]) -> Estimates:
    """Age distributions with a given P(age < 18): that mass spread over 13-17, the rest over 25-40."""
    probs = np.zeros((len(p_minor), AGE_BINS))
    for i, p in enumerate(p_minor):
        probs[i, 13:18] = p / 5
        probs[i, 25:41] = (1 - p) / 16
    return Estimates((probs @ np.arange(AGE_BINS)).astype("float32"), probs)


# The same 3 minors and 4 adults; P(minor) 0.9, 0.3, 0.08 for the minors and 0.5, 0.05, 0.01, 0.001 for the adults.
CHANCES = distributions([0.9, 0.3, 0.08, 0.5, 0.05, 0.01, 0.001])


def test_chance_rule_asks_when_the_chance_of_being_a_minor_is_high_enough() -> None:
    np.testing.assert_allclose(CHANCES.p_under(18), [0.9, 0.3, 0.08, 0.5, 0.05, 0.01, 0.001], atol=1e-9)
    policy = Policy(threshold=0.08, legal_age=18, decide_on="chance")
    np.testing.assert_array_equal(policy.ask(CHANCES), [True, True, True, True, False, False, False])
    assert policy.rule == "ask for ID when the chance of being under 18 is at least 0.08"


def test_chance_calibration_picks_the_highest_p_that_asks_every_minor() -> None:
    policy = calibrate(TRUE, CHANCES, 18, 0.0, decide_on="chance")
    assert policy.decide_on == "chance" and policy.met_on_val
    # The least likely-looking minor has P = 0.08: the cheapest rule is the highest grid p at or below it.
    assert policy.threshold == pytest.approx(CHANCE_GRID[CHANCE_GRID <= 0.08].max())
    assert policy.val_adults_asked == pytest.approx(1 / 4)  # only the adult at 0.5
    loose = calibrate(TRUE, CHANCES, 18, 0.34, decide_on="chance")
    assert 0.08 < loose.threshold <= 0.3 and loose.val_minors_not_asked == pytest.approx(1 / 3)



def test_a_gaussian_spread_gives_the_chance_of_being_a_minor_and_the_chance_rule_uses_it() -> None:
    # Two faces estimated 30: the unsure one (sigma 10) may well be under 18, the sure one (sigma 2) hardly.
    est = Estimates(np.array([30.0, 30.0, 16.0], "float32"), spread=np.array([10.0, 2.0, 3.0], "float32"))
    np.testing.assert_allclose(est.p_under(18), [0.11507, 9.866e-10, 0.74751], rtol=1e-3)
    assert est.gives_chance and not Estimates(est.ages).gives_chance
    policy = Policy(threshold=0.1, legal_age=18, decide_on="chance")
    np.testing.assert_array_equal(policy.ask(est), [True, False, True])
    assert Estimates(np.zeros(0, "float32"), spread=np.zeros(0, "float32")).p_under(18).shape == (0,)
    assert parse_params({"train": {"head": "gaussian"}, "policy": {"decide_on": "chance"}}).train.head == "gaussian"

def test_chance_rule_needs_a_model_with_an_age_distribution(tmp_path: Path) -> None:
    policy = Policy(threshold=0.05, legal_age=18, decide_on="chance")
    with pytest.raises(DataError, match="train.head: dex"):
        policy.ask(EST)
    with pytest.raises(DataError, match="train.head: dex"):
        calibrate(TRUE, EST, 18, 0.02, decide_on="chance")
    assert Policy.load(policy.save(tmp_path / "policy.json")) == policy
    with pytest.raises(ConfigError, match="policy.decide_on: chance needs"):
        parse_params({"policy": {"decide_on": "chance"}})
    assert parse_params({"policy": {"decide_on": "chance"}, "train": {"head": "dex"}}).policy.decide_on == "chance"


def test_score_applies_a_chance_rule() -> None:
    policy = calibrate(TRUE, CHANCES, 18, 0.0, decide_on="chance")
    metrics, _ = score(TRUE, CHANCES, EvaluateConfig(), baseline_age=29.0, policy=policy)
    assert metrics["policy"]["decide_on"] == "chance" and "chance of being under 18" in metrics["policy"]["rule"]
    assert metrics["policy"]["minors_not_asked"] == 0.0 and metrics["policy"]["adults_asked"] == pytest.approx(0.25)


def test_evaluate_outputs_of_a_gaussian_model_carry_its_spread_and_chance(tmp_path: Path) -> None:
    from faceage.evaluate import write_outputs

    gauss = Estimates(PRED.astype("float32"), spread=np.linspace(2.0, 8.0, len(PRED)).astype("float32"))
    policy = calibrate(TRUE, gauss, 18, 0.0, decide_on="chance")
    assert policy.met_on_val
    cfg = EvaluateConfig()
    metrics, groups = score(TRUE, gauss, cfg, baseline_age=29.0, policy=policy)
    rows = pd.DataFrame({"file": [f"{i}.jpg" for i in range(len(TRUE))]})
    write_outputs(tmp_path, rows, TRUE, gauss, metrics, groups, None, cfg, policy)
    predictions = pd.read_csv(tmp_path / "predictions.csv")
    np.testing.assert_allclose(predictions["spread"], gauss.spread, atol=0.01)
    np.testing.assert_allclose(predictions["p_minor"], gauss.p_under(18), atol=1e-5)
    assert (tmp_path / "plots" / "id_tradeoff_chance.png").stat().st_size > 1000
