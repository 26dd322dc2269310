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


def id_check(true: np.ndarray, pred: np.ndarray, legal_age: float, threshold: float) -> dict[str, float | int]:
    """The store's rule "ask for ID when the estimated age is under `threshold`".

    minors_not_asked: share of buyers under `legal_age` whom the rule would NOT ask (the dangerous error).
    adults_asked: share of buyers of legal age who would be asked; adults_25plus_asked: the same from 25.
    A rate is NaN when its group has nobody in the data.
    """
    asked = pred < threshold
    minors = true < legal_age
    adults = ~minors
    adults25 = true >= 25

    def share(mask: np.ndarray, values: np.ndarray) -> float:
        return float(np.mean(values[mask])) if mask.any() else float("nan")

    return {
        "minors_not_asked": share(minors, ~asked),
        "adults_asked": share(adults, asked),
        "adults_25plus_asked": share(adults25, asked),
        "n_minors": int(minors.sum()),
        "n_adults": int(adults.sum()),
    }


def by_attribute(true: np.ndarray, pred: np.ndarray, labels: np.ndarray, names: dict[str, str],
                 legal_age: float, threshold: float) -> dict[str, dict[str, float | int | None]]:
    """MAE and the ID-check rates per value of a demographic attribute (e.g. UTKFace gender or race)."""
    out: dict[str, dict[str, float | int | None]] = {}
    for code, name in names.items():
        mask = labels == code
        if mask.any():
            check = id_check(true[mask], pred[mask], legal_age, threshold)
            out[name] = {"n": int(mask.sum()), "mae": float(np.mean(np.abs(pred[mask] - true[mask]))),
                         "minors_not_asked": check["minors_not_asked"], "adults_asked": check["adults_asked"],
                         "n_minors": check["n_minors"]}
    return out
