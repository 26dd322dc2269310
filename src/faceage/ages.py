"""Age groups shared by the split (strata), the reports and the store's analytics."""

from __future__ import annotations

import numpy as np

MIN_AGE, MAX_AGE = 0, 120
# Lower edges of the report groups: 0-12, 13-17, 18-24, 25-34, 35-44, 45-54, 55-64, 65+.
GROUP_EDGES: tuple[int, ...] = (0, 13, 18, 25, 35, 45, 55, 65)
GROUP_LABELS: tuple[str, ...] = ("0-12", "13-17", "18-24", "25-34", "35-44", "45-54", "55-64", "65+")


def age_group(ages: np.ndarray | list[float] | float) -> np.ndarray:
    """Label of the age group of each age (ages are rounded down to whole years)."""
    idx = np.searchsorted(GROUP_EDGES, np.floor(np.asarray(ages, dtype=float)), side="right") - 1
    return np.asarray(GROUP_LABELS, dtype=object)[np.clip(idx, 0, len(GROUP_LABELS) - 1)]
