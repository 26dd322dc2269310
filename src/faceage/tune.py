"""Optuna tuning of train.* params (learning rate, augmentation, any other listed key).

Each trial calls `faceage.train.fit`, the one training function, on the prepared train/val splits (never the
test split), reports val MAE every epoch to the pruner, and is one nested MLflow run under one parent run
per study. The study lives in an SQLAlchemy storage, so it resumes after an interruption and several workers
(a GPU host too) can share it; a trial whose worker died is marked FAIL by Optuna's heartbeat and not counted.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import optuna
import yaml
from tqdm import tqdm

from faceage.config import TrainConfig, TuneConfig, with_overrides
from faceage.errors import ConfigError, DataError

OUT_DIR = Path("results/tune")
BEST_FILE = "best_params.yaml"
COUNTED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
MAX_FAILURES_IN_A_ROW = 3


@dataclass(frozen=True)
class Dimension:
    """One key of the search space."""

    key: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    choices: tuple[Any, ...] | None = None

    def suggest(self, trial: optuna.Trial) -> Any:
        if self.choices is not None:
            return trial.suggest_categorical(self.key, list(self.choices))
        if isinstance(self.low, int) and isinstance(self.high, int):
            return trial.suggest_int(self.key, self.low, self.high, log=self.log)
        return trial.suggest_float(self.key, float(self.low), float(self.high), log=self.log)


def parse_space(space: dict[str, Any], base: TrainConfig) -> list[Dimension]:
    """Check the search space before any training: known keys, sane bounds, values train accepts."""
    if not space:
        raise ConfigError("tune.space: empty search space; list at least one train.* key")
    dims = []
    for key, spec in space.items():
        where = f"tune.space.{key}"
        if not isinstance(spec, dict):
            raise ConfigError(f"{where}: expected {{low, high[, log]}} or {{choices: [...]}}, got {spec!r}")
        unknown = set(spec) - {"low", "high", "log", "choices"}
        if unknown:
            raise ConfigError(f"{where}: unknown field {sorted(unknown)[0]!r}; use low, high, log or choices")
        if "choices" in spec:
            choices = spec["choices"]
            if not isinstance(choices, list) or not choices:
                raise ConfigError(f"{where}.choices: expected a non-empty list")
            dim = Dimension(key, choices=tuple(choices))
            values = list(choices)
        else:
            low, high, log = spec.get("low"), spec.get("high"), spec.get("log", False)
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)):
                raise ConfigError(f"{where}: low and high must both be numbers, got {low!r} and {high!r}")
            if low > high:
                raise ConfigError(f"{where}: low ({low}) is above high ({high})")
            if not isinstance(log, bool) or (log and low <= 0):
                raise ConfigError(f"{where}: log scale needs log: true|false and low > 0")
            dim = Dimension(key, low=low, high=high, log=log)
            values = [low, high]
        for value in values:
            with_overrides(base, {key: value})  # raises ConfigError naming the key if train would refuse it
        dims.append(dim)
    return dims


def make_storage(cfg: TuneConfig) -> optuna.storages.RDBStorage:
    """The study's storage; a bad URL is one clear line, and a local SQLite file gets its folder."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(cfg.storage)
    except ArgumentError as exc:
        raise ConfigError(f"tune.storage: not a valid SQLAlchemy URL: {cfg.storage!r} ({exc})") from None
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    try:
        return optuna.storages.RDBStorage(
            cfg.storage, heartbeat_interval=cfg.heartbeat_seconds, grace_period=3 * cfg.heartbeat_seconds,
            heartbeat_stale_trial_callback=_close_mlflow_run_of_dead_trial)
    except Exception as exc:  # noqa: BLE001 (SQLAlchemy raises many types for unreachable/bad databases)
        raise ConfigError(f"tune.storage: cannot open {cfg.storage!r}: {exc}") from None


def make_pruner(cfg: TuneConfig) -> optuna.pruners.BasePruner:
    if cfg.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
    if cfg.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=cfg.epochs)
    return optuna.pruners.NopPruner()


def _close_mlflow_run_of_dead_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Optuna found a trial whose worker died: mark its MLflow run failed too."""
    import mlflow

    run_id = trial.user_attrs.get("mlflow_run_id")
    if run_id:
        client = mlflow.MlflowClient()
        client.set_tag(run_id, "optuna.state", "FAIL")
        client.set_tag(run_id, "error", "worker died (no heartbeat); trial marked FAIL on resume")
        client.set_terminated(run_id, status="FAILED")


def _study_parent_run(study: optuna.Study, experiment_id: str, storage_url: str):
    """One MLflow parent run per study, reused when the study is resumed."""
    import mlflow

    found = mlflow.search_runs([experiment_id], output_format="list",
                               filter_string=f"tags.`optuna.study` = '{study.study_name}' and tags.`faceage.role` = 'study'")
    if found:
        return mlflow.start_run(run_id=found[0].info.run_id)
    from faceage.tracking import run_tags

    return mlflow.start_run(experiment_id=experiment_id, run_name=f"tune-{study.study_name}",
                            tags=run_tags({"optuna.study": study.study_name, "optuna.storage": storage_url,
                                           "faceage.role": "study"}))


def objective_for(base: TrainConfig, cfg: TuneConfig, dims: list[Dimension], train, val, verbose: int = 0):
    """The objective: best val MAE of a `fit` with the trial's params, one nested MLflow run per trial."""
    import mlflow
    from optuna_integration import KerasPruningCallback

    from faceage.config import to_flat_dict
    from faceage.train import fit

    def objective(trial: optuna.Trial) -> float:
        values = {d.key: d.suggest(trial) for d in dims}
        train_cfg = replace(with_overrides(base, values), epochs=cfg.epochs, time_budget_minutes=0.0)
        run = mlflow.start_run(run_name=f"trial-{trial.number}", nested=True,
                               tags={"optuna.study": trial.study.study_name, "optuna.trial": str(trial.number)})
        trial.set_user_attr("mlflow_run_id", run.info.run_id)
        mlflow.log_params(to_flat_dict(train_cfg, "train."))
        try:
            result = fit(train_cfg, train, val, verbose=verbose,
                         callbacks=[KerasPruningCallback(trial, "val_mae"), mlflow.keras.MlflowCallback()])
        except optuna.TrialPruned:
            mlflow.set_tag("optuna.state", "PRUNED")
            mlflow.end_run("KILLED")
            raise
        except Exception as exc:
            mlflow.set_tag("optuna.state", "FAIL")
            mlflow.set_tag("error", f"{type(exc).__name__}: {exc}"[:4000])
            mlflow.end_run("FAILED")
            raise
        trial.set_user_attr("epochs_run", int(len(result.history)))
        mlflow.log_metrics({"best_val_mae": result.best_val_mae, "best_epoch": result.best_epoch})
        mlflow.set_tag("optuna.state", "COMPLETE")
        mlflow.end_run("FINISHED")
        return result.best_val_mae

    return objective


def run_tune(train_base: TrainConfig, cfg: TuneConfig, prepare_dir: Path, out_dir: Path = OUT_DIR,
             verbose: int = 0) -> dict[str, Any]:
    """Run (or resume) the study until n_trials are completed or pruned, or the timeout; write the best."""
    import mlflow

    from faceage.data.prepared import load_prepared
    from faceage.tracking import configure_tracking

    dims = parse_space(cfg.space, train_base)
    storage = make_storage(cfg)
    data = load_prepared(prepare_dir)
    train, val = data.split("train"), data.split("val")
    study = optuna.create_study(storage=storage, study_name=cfg.study_name, direction="minimize", load_if_exists=True,
                                sampler=optuna.samplers.TPESampler(seed=cfg.sampler_seed), pruner=make_pruner(cfg))
    experiment_id = configure_tracking()
    optuna.storages.fail_stale_trials(study)  # a trial killed mid-run: FAIL, and not counted
    done = sum(t.state in COUNTED for t in study.get_trials(deepcopy=False))
    remaining = max(0, cfg.n_trials - done)
    out_dir.mkdir(parents=True, exist_ok=True)
    with _study_parent_run(study, experiment_id, cfg.storage):
        if remaining:
            bar = tqdm(total=cfg.n_trials, initial=done, desc=f"study {cfg.study_name}", unit="trial", disable=verbose != 0)
            # Failed trials (a crash, out of memory) are recorded and not counted: run until n_trials are
            # completed or pruned (by any worker of the study), the timeout, or too many failures in a row.
            study.optimize(objective_for(train_base, cfg, dims, train, val, verbose), n_trials=None,
                           timeout=cfg.timeout_minutes * 60 or None, catch=(Exception,),
                           callbacks=[optuna.study.MaxTrialsCallback(cfg.n_trials, states=COUNTED),
                                      stop_after_failures(MAX_FAILURES_IN_A_ROW), progress_bar(bar)])
            bar.close()
        summary = summarize(study, out_dir)
        _log_study(study, summary, out_dir)
    return summary


def progress_bar(bar: tqdm):
    """An Optuna callback that advances a tqdm bar per counted trial and shows the best value so far."""
    def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if trial.state in COUNTED:
            bar.update(1)
        if any(t.state == optuna.trial.TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
            bar.set_postfix(best_val_mae=f"{study.best_value:.2f}", last=trial.state.name)

    return callback


def stop_after_failures(limit: int):
    """An Optuna callback that stops the study after `limit` failed trials in a row (a systematic error)."""
    failures = 0

    def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        nonlocal failures
        failures = failures + 1 if trial.state == optuna.trial.TrialState.FAIL else 0
        if failures >= limit:
            study.stop()

    return callback


def summarize(study: optuna.Study, out_dir: Path) -> dict[str, Any]:
    """best_params.yaml, trials.csv and the counts per state."""
    trials = study.get_trials(deepcopy=False)
    states = {s.name: sum(t.state == s for t in trials) for s in optuna.trial.TrialState}
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise DataError(f"study {study.study_name!r}: no completed trial yet ({states}); see the MLflow runs for errors")
    best = study.best_trial
    summary = {"study": study.study_name, "best_value": float(best.value), "best_trial": best.number,
               "params": {k: _plain(v) for k, v in best.params.items()},
               "states": {k: v for k, v in states.items() if v},
               "epochs_trained": int(sum(t.user_attrs.get("epochs_run", len(t.intermediate_values)) for t in trials))}
    (out_dir / BEST_FILE).write_text(yaml.safe_dump(summary, sort_keys=False))
    study.trials_dataframe().to_csv(out_dir / "trials.csv", index=False)
    return summary


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _log_study(study: optuna.Study, summary: dict[str, Any], out_dir: Path) -> None:
    """Best params/value and Optuna's figures on the parent run."""
    import matplotlib

    matplotlib.use("Agg")
    import mlflow
    from optuna.visualization import matplotlib as ovm

    mlflow.log_params({f"best.{k}": v for k, v in summary["params"].items()})
    mlflow.log_metrics({"best_val_mae": summary["best_value"], "epochs_trained": summary["epochs_trained"],
                        **{f"trials_{k.lower()}": v for k, v in summary["states"].items()}})
    plots = out_dir / "plots"
    plots.mkdir(exist_ok=True)
    for name, plot in (("optimization_history", ovm.plot_optimization_history),
                       ("param_importances", ovm.plot_param_importances),
                       ("parallel_coordinate", ovm.plot_parallel_coordinate)):
        try:
            ax = plot(study)
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:  # e.g. importances need 2+ finished trials
            (plots / f"{name}.txt").write_text(f"not drawn: {exc}\n")
            continue
        figure = (ax[0] if hasattr(ax, "__len__") else ax).figure
        figure.set_size_inches(9, 5)
        figure.tight_layout()
        figure.savefig(plots / f"{name}.png", dpi=100)
        matplotlib.pyplot.close(figure)
    mlflow.log_artifacts(str(plots), artifact_path="optuna")
    mlflow.log_artifact(str(out_dir / BEST_FILE))


def apply_best(params_file: Path, best_file: Path) -> dict[str, Any]:
    """Write the best params into params.yaml, changing only the tuned keys (comments and order kept)."""
    from ruamel.yaml import YAML

    if not best_file.is_file():
        raise DataError(f"{best_file}: no tuning result yet; run `faceage tune` first")
    best = yaml.safe_load(best_file.read_text())["params"]
    rt = YAML()
    rt.preserve_quotes = True
    rt.representer.add_representer(type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null"))
    doc = rt.load(params_file.read_text())
    for key, value in best.items():
        node = doc
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        if leaf not in node:
            raise ConfigError(f"{key}: not in {params_file}; cannot apply")
        node[leaf] = float(f"{value:.6g}") if isinstance(value, float) else value
    with open(params_file, "w") as fh:
        rt.dump(doc, fh)
    return best

