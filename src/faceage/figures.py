"""Figures for people to look at (PNG): EDA in prepare, diagnostics in evaluate.

Uses matplotlib's object API (no pyplot global state) so it works headless and in threads.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from faceage.ages import GROUP_LABELS


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def age_histogram(manifest: pd.DataFrame, path: Path) -> Path:
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    sns.histplot(data=manifest, x="age", hue="split", hue_order=["train", "val", "test"], bins=range(0, 122, 2),
                 multiple="stack", ax=ax)
    ax.set(title=f"Age distribution ({len(manifest)} images)", xlabel="age (years)", ylabel="images")
    return _save(fig, path)


def group_counts(manifest: pd.DataFrame, path: Path) -> Path:
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    sns.countplot(data=manifest, x="group", hue="split", order=list(GROUP_LABELS), hue_order=["train", "val", "test"], ax=ax)
    ax.set(title="Images per age group and split", xlabel="age group", ylabel="images")
    return _save(fig, path)


def sample_grid(images: np.ndarray, ages: np.ndarray, path: Path, n: int = 24, seed: int = 0) -> Path:
    n = min(n, len(images))
    pick = np.sort(np.random.default_rng(seed).choice(len(images), size=n, replace=False)) if n else []
    cols = 8
    rows = max(1, int(np.ceil(n / cols)))
    fig = Figure(figsize=(cols * 1.3, rows * 1.5))
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, i in zip(axes, pick):
        ax.imshow(images[i])
        ax.set_title(f"{ages[i]:g}", fontsize=9)
    fig.suptitle("Sample faces (title: labelled age)")
    return _save(fig, path)


def image_sizes(manifest: pd.DataFrame, path: Path) -> Path:
    fig = Figure(figsize=(5, 4))
    ax = fig.subplots()
    sns.scatterplot(data=manifest, x="width", y="height", hue="format", alpha=0.5, s=12, ax=ax)
    ax.set(title="Original image sizes (pixels)")
    return _save(fig, path)


def predicted_vs_true(true: np.ndarray, pred: np.ndarray, path: Path) -> Path:
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    ax.scatter(true, pred, s=6, alpha=0.4)
    hi = float(max(np.max(true, initial=1), np.max(pred, initial=1))) + 2
    ax.plot([0, hi], [0, hi], color="black", lw=1, ls="--", label="perfect")
    ax.set(xlim=(0, hi), ylim=(0, hi), xlabel="true age", ylabel="predicted age", title="Predicted vs true age (test)")
    ax.legend(loc="upper left")
    return _save(fig, path)


def error_by_group(per_group: pd.DataFrame, path: Path) -> Path:
    """Bars: MAE and mean signed error per age group."""
    long = per_group.melt(id_vars="group", value_vars=["mae", "mean_signed_error"], var_name="metric", value_name="years")
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    sns.barplot(data=long, x="group", y="years", hue="metric", order=[g for g in GROUP_LABELS if g in set(per_group["group"])], ax=ax)
    ax.axhline(0, color="black", lw=0.8)
    ax.set(title="Error by age group (test; signed error > 0 means too old)", xlabel="age group")
    return _save(fig, path)


def learning_curve(history: pd.DataFrame, path: Path) -> Path:
    """Train and validation MAE per epoch."""
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for column, label in (("mae", "train MAE"), ("val_mae", "validation MAE")):
        if column in history:
            ax.plot(history["epoch"], history[column], marker="o", label=label)
    ax.set(title="MAE learning curve", xlabel="epoch", ylabel="MAE (years)")
    ax.legend()
    return _save(fig, path)


def id_tradeoff(table: pd.DataFrame, operating_points: dict[str, float], path: Path,
                minors: str = "minors (<18)", title: str = "ID check trade-off (test split)",
                decide_on: str = "age") -> Path:
    """Share of minors not asked and of adults asked, per rule threshold (an age T, or a chance p on a log axis
    for decide_on chance), with the rules in use marked."""
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    ax.plot(table["threshold"], table["minors_not_asked"] * 100, marker="o", ms=3, color="tab:red",
            label=f"{minors} NOT asked")
    ax.plot(table["threshold"], table["adults_asked"] * 100, marker="o", ms=3, color="tab:blue", label="adults (18+) asked")
    ax.plot(table["threshold"], table["adults_25plus_asked"] * 100, ls="--", color="tab:blue", label="adults 25+ asked")
    for (name, t), color in zip(operating_points.items(), ("grey", "black")):
        ax.axvline(t, color=color, ls=":", lw=1.2)
        ax.text(t, ax.get_ylim()[1] * 0.95, f" {name}\n " + (f"p={t:.3g}" if decide_on == "chance" else f"T={t:g}"), fontsize=8, va="top")
    if decide_on == "chance":
        ax.set_xscale("log")
        ax.invert_xaxis()  # cheaper (fewer adults asked) on the left, as for T
        ax.set(xlabel="p: ask for ID when the chance of being a minor is at least p", ylabel="% of the group", title=title)
    else:
        ax.set(xlabel="threshold T: ask for ID when the estimated age is under T", ylabel="% of the group",
               title=title)
    ax.legend(loc="center right", fontsize=8)
    return _save(fig, path)
