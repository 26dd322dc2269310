# Two commands on a fresh machine: `make demo` (set up + run the pipeline on the embedded demo data)
# and `make test` (the whole test suite; .ci/run calls exactly this).
VENV ?= .venv
PYTHON ?= python3
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)
export MPLBACKEND := Agg

.PHONY: demo test install repro mlflow-ui bench-quality bench-speed bench-id-check bench-compare bench-ensemble bench-behaviour bench-tta bench-precision

$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q uv==0.13.9   # uv installs the project ~7x faster than pip (20 s vs 150 s here)
	@# --compile-bytecode: where PYTHONDONTWRITEBYTECODE is set (this machine), no .pyc is ever cached otherwise
	@# and every process recompiles TensorFlow (imports ~28 s instead of ~15)
	$(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python -e '.[dev]'
	@touch $@

install: $(VENV)/.installed

demo: install
	faceage demo-data --out data
	dvc add -q data   # cache the data, so queued experiments (temporary copies) can check it out
	dvc repro
	@echo
	@$(BIN)/python -c "import json; m = json.load(open('results/evaluate/metrics.json')); print(f\"\nDemo test MAE: {m['mae']:.2f} years (constant train-median baseline: {m['baseline_mae']:.2f}) on {m['n_test']} SYNTHETIC faces.\")"
	@echo "Open the MLflow UI on this store:  .venv/bin/mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db  (then http://127.0.0.1:5000)"

test: install
	$(BIN)/python -m pytest -n 2 --dist loadgroup --durations=15

repro: install
	dvc repro

mlflow-ui: install
	mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db --host 127.0.0.1 --port 5000

# Benchmarks (not tests: they measure; each writes its JSON report to results/bench/, see BENCHMARKS.md).
bench-quality: install
	$(BIN)/python bench/quality.py

bench-speed: install
	$(BIN)/python bench/speed.py

bench-id-check: install
	$(BIN)/python bench/id_check.py

# Two bench/quality.py runs' predictions: make bench-compare A=results/bench/x-work B=results/bench/y-work
bench-compare: install
	$(BIN)/python bench/compare.py $(A) $(B)

# The mean of several runs' estimates: make bench-ensemble MEMBERS="results/bench/x-work results/bench/y-work"
bench-ensemble: install
	$(BIN)/python bench/ensemble.py $(MEMBERS)

bench-behaviour: install
	$(BIN)/python bench/behaviour.py

bench-tta: install
	$(BIN)/python bench/tta.py

bench-precision: install
	$(BIN)/python bench/precision.py
