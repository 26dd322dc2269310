"""The alcohol ID-check decision, on one of two things the model says (`policy.decide_on`):

- `age`:    "ask for ID when the estimated age is under T" (any model);
- `chance`: "ask for ID when the chance of being under the legal age is at least p" (a model that knows when it
            is unsure: a dex head gives a distribution over ages, a gaussian head a spread around the age).

MAE hides what matters here, so the rule is chosen, not assumed: `calibrate` picks on the VALIDATION split the
cheapest rule (the fewest adults asked: the lowest T, or the highest p) whose share of minors not asked is at
most the target, and the test split then shows what that rule really reaches. The chosen rule is saved beside
the model (policy.json) so that evaluation, prediction and serving apply the same one.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from faceage.errors import DataError
from faceage.estimates import Estimates
from faceage.metrics import id_rates, minor_mask

POLICY_FILE = "policy.json"
DECIDE_ON = ("age", "chance")
REPORT_THRESHOLDS = np.arange(18, 41, 1.0)     # the age trade-off table people read
REPORT_CHANCES = np.array([0.5, 0.3, 0.2, 0.1, 0.05, 0.03, 0.02, 0.01, 0.005, 0.002, 0.001])
SEARCH_STEP = 0.25                              # age calibration grid (years)
SEARCH_MAX = 90.0
CHANCE_GRID = np.geomspace(0.99, 1e-5, 500)     # chance calibration grid, cheapest (highest p) first


@dataclass(frozen=True)
class Policy:
    threshold: float            # decide_on age: ask when the estimated age is under this;
                                # decide_on chance: ask when P(age < legal_age) is at least this
    legal_age: int
    decide_on: str = "age"
    max_minors_not_asked: float | None = None  # the target it was calibrated for (None: a fixed, uncalibrated rule)
    met_on_val: bool = False    # False: no rule on the search grid met the target on validation (or not calibrated)
    val_minors_not_asked: float | None = None
    val_adults_asked: float | None = None
    val_adults_25plus_asked: float | None = None
    val_n_minors: int = 0
    youngest_minor: int = 0     # minors counted in the rates: youngest_minor .. legal_age - 1

    def __post_init__(self) -> None:
        if self.decide_on not in DECIDE_ON:
            raise DataError(f"policy: decide_on {self.decide_on!r} is not one of {', '.join(DECIDE_ON)}")

    @property
    def rule(self) -> str:
        if self.decide_on == "chance":
            return f"ask for ID when the chance of being under {self.legal_age} is at least {self.threshold:.3g}"
        return f"ask for ID when the estimated age is under {self.threshold:g}"

    def ask(self, estimates: Estimates) -> np.ndarray:
        """One decision per face: True = ask for ID."""
        if self.decide_on == "age":
            return np.asarray(estimates.ages) < self.threshold
        p_minor = estimates.p_under(self.legal_age)
        if p_minor is None:
            raise DataError("the ID-check rule decides on the chance of being a minor, but this model does not say how "
                            "sure it is (train.head: regression); use a train.head: dex or gaussian model or "
                            "policy.decide_on: age")
        return p_minor >= self.threshold

    def save(self, path: Path) -> Path:
        path.write_text(json.dumps({**asdict(self), "rule": self.rule}, indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: Path) -> Policy:
        if not path.is_file():
            raise DataError(f"{path}: no calibrated ID-check policy; run `dvc repro evaluate` first")
        raw = json.loads(path.read_text())
        raw.pop("rule", None)
        return cls(**raw)


def search_grid(decide_on: str, legal_age: int) -> np.ndarray:
    """The rule thresholds calibration searches, cheapest first: ages T upwards, or chances p downwards."""
    return CHANCE_GRID if decide_on == "chance" else np.arange(legal_age, SEARCH_MAX + SEARCH_STEP / 2, SEARCH_STEP)


def tradeoff(true: np.ndarray, estimates: Estimates, legal_age: int, decide_on: str = "age",
             thresholds: np.ndarray | None = None, youngest_minor: float = 0) -> pd.DataFrame:
    """Per rule threshold (an age T or a chance p): share of minors not asked, of adults (18+) asked and of
    adults 25+ asked. Default thresholds: the report's (T = 18..40, or p = 50% .. 0.1%)."""
    if thresholds is None:
        thresholds = REPORT_CHANCES if decide_on == "chance" else REPORT_THRESHOLDS
    rows = []
    for t in thresholds:
        asked = Policy(float(t), legal_age, decide_on).ask(estimates)
        rates = id_rates(true, asked, legal_age, youngest_minor)
        rows.append({"threshold": float(t), "minors_not_asked": rates["minors_not_asked"],
                     "adults_asked": rates["adults_asked"], "adults_25plus_asked": rates["adults_25plus_asked"]})
    return pd.DataFrame(rows)


def calibrate(true_val: np.ndarray, estimates_val: Estimates, legal_age: int, max_minors_not_asked: float,
              youngest_minor: int = 0, decide_on: str = "age") -> Policy:
    """The cheapest rule that meets the target on validation; the safest one searched if none does."""
    n_minors = int(np.sum(minor_mask(true_val, legal_age, youngest_minor)))
    if n_minors == 0:
        raise DataError(f"the validation split has no minors (aged {youngest_minor}-{legal_age - 1}): the ID-check "
                        "rule cannot be calibrated; use data with minors or a larger prepare.val_fraction")
    table = tradeoff(true_val, estimates_val, legal_age, decide_on, search_grid(decide_on, legal_age), youngest_minor)
    ok = table[table["minors_not_asked"] <= max_minors_not_asked]
    met = not ok.empty
    row = ok.iloc[0] if met else table.iloc[-1]
    return Policy(threshold=float(row["threshold"]), legal_age=legal_age, decide_on=decide_on,
                  max_minors_not_asked=max_minors_not_asked, met_on_val=met,
                  val_minors_not_asked=float(row["minors_not_asked"]), val_adults_asked=float(row["adults_asked"]),
                  val_adults_25plus_asked=float(row["adults_25plus_asked"]), val_n_minors=n_minors,
                  youngest_minor=youngest_minor)
