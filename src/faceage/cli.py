"""The `faceage` command line: one command per pipeline stage (called by dvc.yaml) plus helpers.

User mistakes (bad params, missing or broken data) end with one red line and exit code 2, no traceback.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from faceage.errors import FaceageError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Age estimation from face photos: a reproducible DVC + MLflow pipeline.")
err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)

ParamsOption = Annotated[Path, typer.Option("--params", help="Parameter file (YAML).")]
DEFAULT_PARAMS = Path("params.yaml")


def _quiet_backends() -> None:
    """Keep TensorFlow's C++ start-up chatter out of the stage logs (must run before keras is imported)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@contextlib.contextmanager
def user_errors(kept: str = "") -> Iterator[None]:
    """Turn FaceageError into one line + exit 2, and Ctrl-C into a note of what was kept + exit 130."""
    try:
        yield
    except FaceageError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        err.print(f"[yellow]interrupted.[/] {kept}".rstrip(), highlight=False, soft_wrap=True)
        raise typer.Exit(130) from None


@app.command("demo-data")
def demo_data(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write (course layout).")] = Path("data"),
    n: Annotated[int, typer.Option(help="Number of synthetic faces.")] = 0,
    force: Annotated[bool, typer.Option(help="Overwrite an existing folder.")] = False,
) -> None:
    """Write the embedded SYNTHETIC demo dataset (deterministic; matches data.dvc with the default size)."""
    from faceage.data.demo import DEMO_COUNT, generate_demo

    with user_errors():
        if (out_dir / "labels.csv").exists() and not force:
            out.print(f"{out_dir} already holds a dataset; nothing to do (use --force to regenerate)")
            return
        count = generate_demo(out_dir, n or DEMO_COUNT)
        out.print(f"wrote {count} synthetic faces to {out_dir}/ (labels.csv + final_files/)")


@app.command()
def prepare(params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Stage prepare: validate, quarantine, split, decode once and cache; EDA figures."""
    from faceage.config import load_params
    from faceage.prepare import OUT_DIR, run_prepare

    with user_errors(f"Raw data untouched; partial outputs in {OUT_DIR} are incomplete, rerun the stage."):
        report = run_prepare(load_params(params).prepare, OUT_DIR)
        out.print(f"prepared {report['n_images']} images ({report['layout']} layout): split {report['split']}; "
                  f"{report['n_quarantined']} quarantined (see {OUT_DIR / 'quarantine.csv'})")


@app.command()
def train(params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Stage train: fit the model on the prepared data; log the run to MLflow."""
    _quiet_backends()
    from faceage.config import load_params
    from faceage.prepare import OUT_DIR as PREPARE_DIR
    from faceage.train import OUT_DIR, run_train

    with user_errors(f"Kept: the best weights so far in {OUT_DIR / 'best.weights.h5'} and the per-epoch log in "
                     f"{OUT_DIR / 'history.csv'}; the MLflow run is marked failed."):
        result = run_train(load_params(params), PREPARE_DIR, OUT_DIR)
        out.print(f"trained {len(result.history)} epochs in {result.seconds / 60:.1f} min; best val MAE "
                  f"{result.best_val_mae:.2f} at epoch {result.best_epoch}")


@app.command()
def evaluate(
    params: ParamsOption = DEFAULT_PARAMS,
    data: Annotated[Path | None, typer.Option(help="Evaluate on this dataset instead of the test split.")] = None,
    model: Annotated[Path | None, typer.Option(help="Model file (.keras) for --data.")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Output folder for --data.")] = None,
    layout: Annotated[str, typer.Option(help="Layout of --data: auto, course, appa, utkface.")] = "auto",
) -> None:
    """Stage evaluate: test metrics, per-group errors, the ID check; or score a model on another dataset."""
    _quiet_backends()
    from faceage.config import load_params
    from faceage.evaluate import OUT_DIR, evaluate_external, run_evaluate
    from faceage.prepare import OUT_DIR as PREPARE_DIR
    from faceage.train import MODEL_FILE, OUT_DIR as TRAIN_DIR

    with user_errors():
        cfg = load_params(params)
        if data is None:
            metrics = run_evaluate(cfg.evaluate, PREPARE_DIR, TRAIN_DIR, OUT_DIR)
            where = OUT_DIR
        else:
            where = out_dir or Path("results/external") / data.resolve().name
            metrics = evaluate_external(data, model or TRAIN_DIR / MODEL_FILE, cfg.evaluate, where, layout,
                                        cfg.prepare.target)
        check = metrics["id_check"]
        baseline = f" (constant baseline {metrics['baseline_mae']:.2f})" if "baseline_mae" in metrics else ""
        out.print(f"[bold]test MAE {metrics['mae']:.2f} years[/]{baseline} on {metrics['n_test']} faces; "
                  f"CS@5 {metrics['cs5']:.1%}; ID check (ask under {check['threshold']:g}): "
                  f"minors not asked {_pct(check['minors_not_asked'])}, adults asked {_pct(check['adults_asked'])}. "
                  f"Details: {where}/")


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
