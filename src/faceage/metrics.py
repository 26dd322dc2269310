"""Evaluation metrics: overall errors, errors per age group, and the store's alcohol ID check."""

from __future__ import annotations

import numpy as np
import pandas as pd

from faceage.ages import GROUP_LABELS, age_group


def regression_metrics(true: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    err = pred - true
    return {
        "mae": float(np.mean(np.abs(err))),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "median_ae": float(np.median(np.abs(err))),
        "cs5": float(np.mean(np.abs(err) <= 5)),
        "mean_signed_error": float(np.mean(err)),
    }


def per_group(true: np.ndarray, pred: np.ndarray) -> pd.DataFrame:
    """n, MAE and mean signed error (pred - true) per age group, in group order; empty groups omitted."""
    groups = age_group(true)
    rows = []
    for label in GROUP_LABELS:
        mask = groups == label
        if mask.any():
            err = pred[mask] - true[mask]
            rows.append({"group": label, "n": int(mask.sum()), "mae": float(np.mean(np.abs(err))),
                         "mean_signed_error": float(np.mean(err))})
    return pd.DataFrame(rows, columns=["group", "n", "mae", "mean_signed_error"])


def minor_mask(true: np.ndarray, legal_age: float, youngest_minor: float = 0) -> np.ndarray:
    """Who counts as a minor in the ID-check rates: aged `youngest_minor` to `legal_age` - 1."""
    return (true >= youngest_minor) & (true < legal_age)


def id_rates(true: np.ndarray, asked: np.ndarray, legal_age: float, youngest_minor: float = 0) -> dict[str, float | int]:
    """The rates of an ID-check decision (`asked`: True = this buyer is asked for ID).

    minors_not_asked: share of buyers aged `youngest_minor` to `legal_age` - 1 (e.g. 13-17: the ones who might
    try to buy) who are NOT asked (the dangerous error). Younger children count in neither rate.
    adults_asked: share of buyers of legal age who are asked; adults_25plus_asked: the same from 25.
    minors_not_asked_upper95: the 95% upper confidence bound of minors_not_asked (Wilson score), because a
    share measured on a few dozen teenagers is itself uncertain.
    A rate is NaN when its group has nobody in the data.
    """
    asked = np.asarray(asked, dtype=bool)
    minors = minor_mask(true, legal_age, youngest_minor)
    adults = true >= legal_age
    adults25 = true >= 25

    def share(mask: np.ndarray, values: np.ndarray) -> float:
        return float(np.mean(values[mask])) if mask.any() else float("nan")

    return {
        "minors_not_asked": share(minors, ~asked),
        "minors_not_asked_upper95": wilson_upper(int(np.sum(minors & ~asked)), int(minors.sum())),
        "adults_asked": share(adults, asked),
        "adults_25plus_asked": share(adults25, asked),
        "n_minors": int(minors.sum()),
        "n_adults": int(adults.sum()),
    }


def id_check(true: np.ndarray, pred: np.ndarray, legal_age: float, threshold: float,
             youngest_minor: float = 0) -> dict[str, float | int]:
    """The rates of the store's rule "ask for ID when the estimated age is under `threshold`" (see id_rates)."""
    return id_rates(true, np.asarray(pred) < threshold, legal_age, youngest_minor)


def wilson_upper(k: int, n: int, z: float = 1.96) -> float:
    """Upper end of the Wilson score interval for k successes in n trials (NaN when n is 0)."""
    if n == 0:
        return float("nan")
    p = k / n
    centre = p + z * z / (2 * n)
    spread = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return float(min(1.0, (centre + spread) / (1 + z * z / n)))


def by_attribute(true: np.ndarray, pred: np.ndarray, asked: np.ndarray, labels: np.ndarray, names: dict[str, str],
                 legal_age: float, youngest_minor: float = 0) -> dict[str, dict[str, float | int | None]]:
    """MAE and the rates of the ID-check decision `asked` per value of a demographic attribute (e.g. UTKFace
    gender or race)."""
    out: dict[str, dict[str, float | int | None]] = {}
    for code, name in names.items():
        mask = labels == code
        if mask.any():
            check = id_rates(true[mask], asked[mask], legal_age, youngest_minor)
            out[name] = {"n": int(mask.sum()), "mae": float(np.mean(np.abs(pred[mask] - true[mask]))),
                         "minors_not_asked": check["minors_not_asked"],
                         "minors_not_asked_upper95": check["minors_not_asked_upper95"],
                         "adults_asked": check["adults_asked"], "adults_25plus_asked": check["adults_25plus_asked"],
                         "n_minors": check["n_minors"]}
    return out
