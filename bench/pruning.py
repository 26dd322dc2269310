"""Does pruning pay for itself? The same study (data, search space, sampler seed, trial count) run twice,
without a pruner and with one, through `faceage.tune.run_tune`: total epochs trained, wall time and best
validation MAE of each, measured in one run.

    .venv/bin/python bench/pruning.py                 # 8 trials x 4 epochs on the demo data at 32 px
    .venv/bin/python bench/pruning.py --tiny          # CI smoke mode

Writes results/bench/pruning.json; each study is one MLflow parent run in the experiment "faceage-bench".
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--pruners", default="none,median", help="comma-separated; the first is the baseline")
    ap.add_argument("--tiny", action="store_true", help="smoke mode: 1 trial x 2 epochs per study on 120 demo faces, the tiny backbone")
    ap.add_argument("--out", type=Path, default=Path("results/bench/pruning.json"))
    ap.add_argument("--work-dir", type=Path, default=Path("results/bench/pruning-work"))
    args = ap.parse_args(argv)
    if args.tiny:
        args.trials, args.epochs = 1, 2   # each trial pays ~20 s to build and trace a model: keep CI short

    from faceage.config import PrepareConfig, TuneConfig, load_params
    from faceage.data.demo import generate_demo
    from faceage.prepare import run_prepare
    from faceage.tune import run_tune

    params = load_params()
    train = dataclasses.replace(params.train, backbone="tiny_cnn") if args.tiny else params.train
    shutil.rmtree(args.work_dir, ignore_errors=True)
    data_dir = args.work_dir / "data"
    generate_demo(data_dir, n=120 if args.tiny else 1200, progress=False)
    prepare_dir = args.work_dir / "prepare"
    run_prepare(PrepareConfig(data_dir=str(data_dir), image_size=args.image_size), prepare_dir, progress=False)
    os.environ.setdefault("MLFLOW_EXPERIMENT_NAME", "faceage-bench")

    results = {}
    for pruner in args.pruners.split(","):
        cfg = dataclasses.replace(params.tune, n_trials=args.trials, epochs=args.epochs, pruner=pruner, timeout_minutes=0.0,
                                  storage=f"sqlite:///{(args.work_dir / f'{pruner}.db').resolve()}",
                                  study_name=f"pruning-bench-{pruner}-{int(time.time())}")
        start = time.perf_counter()
        summary = run_tune(train, cfg, prepare_dir, args.work_dir / f"tune-{pruner}")
        results[pruner] = {"wall_seconds": round(time.perf_counter() - start, 1), "epochs_trained": summary["epochs_trained"],
                           "best_val_mae": round(summary["best_value"], 4), "states": summary["states"],
                           "best_params": summary["params"]}
        print(f"pruner={pruner}: {results[pruner]}", flush=True)

    base, *others = args.pruners.split(",")
    report = {
        "trials": args.trials, "epochs_per_trial": args.epochs, "image_size": args.image_size, "tiny": args.tiny,
        "backbone": train.backbone, "data": "synthetic demo faces", "sampler_seed": params.tune.sampler_seed, "results": results,
        "ratios_vs_" + base: {p: {"epochs": round(results[p]["epochs_trained"] / results[base]["epochs_trained"], 3),
                                  "wall_time": round(results[p]["wall_seconds"] / results[base]["wall_seconds"], 3),
                                  "best_val_mae_delta": round(results[p]["best_val_mae"] - results[base]["best_val_mae"], 4)}
                              for p in others},
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["ratios_vs_" + base], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
