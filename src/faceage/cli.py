"""The `faceage` command line: one command per pipeline stage (called by dvc.yaml) plus helpers.

User mistakes (bad params, missing or broken data) end with one red line and exit code 2, no traceback.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from enum import Enum
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
    from faceage.policy import POLICY_FILE, Policy
    from faceage.prepare import OUT_DIR as PREPARE_DIR
    from faceage.train import MODEL_FILE, OUT_DIR as TRAIN_DIR

    with user_errors():
        cfg = load_params(params)
        if data is None:
            metrics = run_evaluate(cfg.evaluate, cfg.policy, cfg.predict, PREPARE_DIR, TRAIN_DIR, OUT_DIR)
            where = OUT_DIR
        else:
            where = out_dir or Path("results/external") / data.resolve().name
            policy_file = OUT_DIR / POLICY_FILE
            policy = Policy.load(policy_file) if policy_file.is_file() else None
            metrics = evaluate_external(data, model or TRAIN_DIR / MODEL_FILE, cfg.evaluate, where, layout,
                                        cfg.prepare.target, policy=policy)
        check = metrics["id_check"]
        baseline = f" (constant baseline {metrics['baseline_mae']:.2f})" if "baseline_mae" in metrics else ""
        out.print(f"[bold]test MAE {metrics['mae']:.2f} years[/]{baseline} on {metrics['n_test']} faces; "
                  f"CS@5 {metrics['cs5']:.1%}; store rule (ask under {check['threshold']:g}): "
                  f"minors not asked {_pct(check['minors_not_asked'])}, adults asked {_pct(check['adults_asked'])}. "
                  f"Details: {where}/")
        registry = metrics.get("registry")
        if registry:
            verdict = "now the champion" if registry["promoted"] else f"champion stays version {registry['champion_version']}"
            out.print(f"registered model faceage version {registry['version']}: {verdict} ({registry['reason']})")
        policy_metrics = metrics.get("policy")
        if policy_metrics:
            out.print(f"calibrated rule: {policy_metrics['rule']} -> minors not asked "
                      f"{_pct(policy_metrics['minors_not_asked'])}, adults 25+ asked {_pct(policy_metrics['adults_25plus_asked'])}")
            if not policy_metrics["met_on_val"]:
                err.print(f"[bold red]warning:[/] no threshold meets policy.max_minors_not_asked="
                          f"{policy_metrics['max_minors_not_asked']:g} on the validation split; the safest one found "
                          f"({policy_metrics['rule']}) is used. Do not rely on this model for the ID check.")


@app.command()
def tune(
    params: ParamsOption = DEFAULT_PARAMS,
    n_trials: Annotated[int | None, typer.Option(help="Override tune.n_trials.", min=1)] = None,
    timeout: Annotated[float | None, typer.Option(help="Override tune.timeout_minutes, in SECONDS.", min=0)] = None,
    apply: Annotated[bool, typer.Option("--apply", help="Write results/tune/best_params.yaml into params.yaml and stop.")] = False,
) -> None:
    """Optuna search over train.* params (tune.space); resumable; one MLflow run per trial."""
    _quiet_backends()
    import dataclasses

    from faceage.config import load_params
    from faceage.prepare import OUT_DIR as PREPARE_DIR
    from faceage.tune import BEST_FILE, OUT_DIR, apply_best, run_tune

    with user_errors("Kept: every finished trial in the study storage; rerun `faceage tune` to resume."):
        if apply:
            best = apply_best(params, OUT_DIR / BEST_FILE)
            out.print(f"wrote {len(best)} tuned value(s) into {params}: " + ", ".join(f"{k}={v}" for k, v in best.items()))
            return
        cfg = load_params(params)
        tune_cfg = cfg.tune
        if n_trials is not None:
            tune_cfg = dataclasses.replace(tune_cfg, n_trials=n_trials)
        if timeout is not None:
            tune_cfg = dataclasses.replace(tune_cfg, timeout_minutes=timeout / 60)
        summary = run_tune(cfg.train, tune_cfg, PREPARE_DIR, OUT_DIR)
        out.print(f"study {summary['study']}: best val MAE {summary['best_value']:.2f} (trial {summary['best_trial']}) "
                  f"with {summary['params']}; trials {summary['states']}; {summary['epochs_trained']} epochs trained. "
                  f"Apply with `faceage tune --apply`.")


class OutputFormat(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


@app.command()
def predict(
    paths: Annotated[list[str], typer.Argument(help="Photos: files, folders or glob patterns.")],
    params: ParamsOption = DEFAULT_PARAMS,
    model: Annotated[Path, typer.Option(help="Trained model (.keras).")] = Path("results/train/model.keras"),
    policy: Annotated[Path, typer.Option(help="Calibrated ID-check rule.")] = Path("results/evaluate/policy.json"),
    fmt: Annotated[OutputFormat, typer.Option("--format", help="Output format.")] = OutputFormat.table,
    all_faces: Annotated[bool, typer.Option("--all-faces", help="Score every face, not only the largest.")] = False,
    no_detect: Annotated[bool, typer.Option("--no-detect", help="Inputs are face crops: skip face detection.")] = False,
) -> None:
    """Estimate age, age group and the ID-check decision for each face; exit 1 if any file failed."""
    _quiet_backends()
    import csv as csv_module
    import dataclasses
    import json

    from rich.table import Table

    from faceage.config import load_params
    from faceage.inference import load_model
    from faceage.policy import Policy
    from faceage.predict import expand_inputs, predict_files

    with user_errors():
        cfg = load_params(params)
        predict_cfg = dataclasses.replace(cfg.predict, detect=False) if no_detect else cfg.predict
        if policy.is_file():
            rule, source = Policy.load(policy), f"calibrated rule from {policy}"
        else:
            rule = Policy(cfg.evaluate.id_check_threshold, cfg.evaluate.legal_age)
            source = "store rule evaluate.id_check_threshold (no calibrated policy found)"
            err.print(f"[yellow]note:[/] {policy} not found; using {source}")
        keras_model = load_model(model)
        files, missing = expand_inputs(paths)
        rows = missing + predict_files(files, keras_model, rule, predict_cfg, all_faces, cfg.evaluate.tta_flip)
    records = [r.as_dict() for r in rows]
    if fmt is OutputFormat.json:
        print(json.dumps({"id_check": f"{rule.rule} ({source})", "faces": records}, indent=2))
    elif fmt is OutputFormat.csv:
        writer = csv_module.DictWriter(sys.stdout, fieldnames=list(records[0]) if records else ["file"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
    else:
        table = Table(title=f"ID check: {rule.rule}")
        for column in ("file", "face", "box", "age", "group", "ID?", "note"):
            table.add_column(column)
        for r in rows:
            decision = "" if r.ask_id is None else ("[bold red]ASK ID[/]" if r.ask_id else "no")
            note = f"[red]{r.reason}[/]" if r.status == "error" else r.reason
            table.add_row(r.file, "" if r.face is None else str(r.face), r.box, "" if r.age is None else f"{r.age:.1f}",
                          r.group, decision, note)
        out.print(table)
    if any(r.status == "error" for r in rows):
        raise typer.Exit(1)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
