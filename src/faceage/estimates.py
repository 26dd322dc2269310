"""What the model says about a batch of faces: the age and, for a dex head, the distribution over whole ages."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Estimates:
    ages: np.ndarray                    # (n,) float32: the age, or the expected age of the distribution
    probs: np.ndarray | None = None     # (n, 121) for a dex head: P(age = 0, 1, ..., 120); None for regression

    def p_under(self, age: float) -> np.ndarray | None:
        """P(true age < `age`) per face (the bins of the whole ages below it); None without a distribution."""
        if self.probs is None:
            return None
        return self.probs[:, : int(np.ceil(age))].sum(axis=1)
