"""The alcohol ID-check decision: "ask for ID when the estimated age is under T".

MAE hides what matters here, so the rule is chosen, not assumed: `calibrate` picks on the VALIDATION split the
lowest threshold T (the fewest adults asked) whose share of minors not asked is at most the target, and the
test split then shows what that rule really reaches. The chosen rule is saved beside the model (policy.json) so
that evaluation, prediction and serving apply the same one.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from faceage.errors import DataError
from faceage.metrics import id_check, minor_mask

POLICY_FILE = "policy.json"
REPORT_THRESHOLDS = np.arange(18, 41, 1.0)     # the trade-off table people read
SEARCH_STEP = 0.25                              # calibration grid (years)
SEARCH_MAX = 90.0


@dataclass(frozen=True)
class Policy:
    threshold: float            # ask for ID when the estimated age is under this
    legal_age: int
    max_minors_not_asked: float
    met_on_val: bool            # False: no threshold up to SEARCH_MAX met the target on validation
    val_minors_not_asked: float
    val_adults_asked: float
    val_adults_25plus_asked: float
    val_n_minors: int
    youngest_minor: int = 0     # minors counted in the rates: youngest_minor .. legal_age - 1

    @property
    def rule(self) -> str:
        return f"ask for ID when the estimated age is under {self.threshold:g}"

    def ask(self, predicted_ages: np.ndarray) -> np.ndarray:
        return np.asarray(predicted_ages) < self.threshold

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


def tradeoff(true: np.ndarray, pred: np.ndarray, legal_age: float, thresholds: np.ndarray = REPORT_THRESHOLDS,
             youngest_minor: float = 0) -> pd.DataFrame:
    """Per threshold T: share of minors not asked, of adults (18+) asked and of adults 25+ asked."""
    rows = []
    for t in thresholds:
        rates = id_check(true, pred, legal_age, float(t), youngest_minor)
        rows.append({"threshold": float(t), "minors_not_asked": rates["minors_not_asked"],
                     "adults_asked": rates["adults_asked"], "adults_25plus_asked": rates["adults_25plus_asked"]})
    return pd.DataFrame(rows)


def calibrate(true_val: np.ndarray, pred_val: np.ndarray, legal_age: int, max_minors_not_asked: float,
              youngest_minor: int = 0) -> Policy:
    """The cheapest rule (lowest T) that meets the target on validation; the safest one if none does."""
    n_minors = int(np.sum(minor_mask(true_val, legal_age, youngest_minor)))
    if n_minors == 0:
        raise DataError(f"the validation split has no minors (aged {youngest_minor}-{legal_age - 1}): the ID-check "
                        "rule cannot be calibrated; use data with minors or a larger prepare.val_fraction")
    grid = np.arange(legal_age, SEARCH_MAX + SEARCH_STEP / 2, SEARCH_STEP)
    table = tradeoff(true_val, pred_val, legal_age, grid, youngest_minor)
    ok = table[table["minors_not_asked"] <= max_minors_not_asked]
    met = not ok.empty
    row = ok.iloc[0] if met else table.iloc[-1]
    return Policy(threshold=float(row["threshold"]), legal_age=legal_age, max_minors_not_asked=max_minors_not_asked,
                  met_on_val=met, val_minors_not_asked=float(row["minors_not_asked"]),
                  val_adults_asked=float(row["adults_asked"]), val_adults_25plus_asked=float(row["adults_25plus_asked"]),
                  val_n_minors=n_minors, youngest_minor=youngest_minor)
