"""What the model says about a batch of faces: the age and, when the head gives one, how sure it is:
the distribution over whole ages (a dex head) or the spread of a Gaussian around the age (a gaussian head)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Estimates:
    ages: np.ndarray                    # (n,) float32: the age, or the expected age of the distribution
    probs: np.ndarray | None = None     # (n, 121) for a dex head: P(age = 0, 1, ..., 120); None otherwise
    spread: np.ndarray | None = None    # (n,) for a gaussian head: the standard deviation (years) around the age

    @property
    def gives_chance(self) -> bool:
        """True when the model says how sure it is, so `p_under` and the chance rule of the ID check work."""
        return self.probs is not None or self.spread is not None

    def p_under(self, age: float) -> np.ndarray | None:
        """P(true age < `age`) per face: the bins of the whole ages below it (dex), or the Gaussian's
        cumulative probability (gaussian); None for a plain regression head."""
        if self.probs is not None:
            return self.probs[:, : int(np.ceil(age))].sum(axis=1)
        if self.spread is not None:
            z = (age - np.asarray(self.ages, "float64")) / np.maximum(np.asarray(self.spread, "float64"), 1e-6)
            return 0.5 * np.vectorize(math.erfc, otypes=[np.float64])(-z / math.sqrt(2.0))
        return None
