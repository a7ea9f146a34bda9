# Two commands on a fresh machine: `make demo` and `make test` (see README.md).
# Both create .venv with Python 3.10 and the pinned dependencies once, then reuse it.
SHELL := /bin/bash
PY310 := $(firstword $(wildcard $(HOME)/.pyenv/versions/3.10.13/bin/python3.10) \
                     $(shell command -v python3.10) python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell md5sum requirements.lock | cut -c1-12)
DATA_ROOT ?= data
SERVING_ROOT ?= outputs/serving
MODEL_CONFIG ?= deploy/models.config
ROWS ?= 20000
export PYTHONPATH := $(CURDIR)
export TF_CPP_MIN_LOG_LEVEL := 1

.PHONY: venv chromium data demo tune test test-quick bench serve rollback label schema \
        check-csv kfp kfp-batch monitor score clean

venv: $(STAMP)
$(STAMP): requirements.lock
	@$(PY310) -c 'import sys; assert sys.version_info[:2] == (3, 10), \
	  "Python 3.10 is required (pyenv 3.10.13, see .python-version); got " + sys.version'
	test -x $(PY) || $(PY310) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip==24.2
	$(PY) -m pip install -q -r requirements.lock
	rm -f $(VENV)/.installed-* && touch $@

# Debian's chromium: the tests render the monitoring and evaluation reports in it (only the
# tests need it, not `make demo`). Installed once; afterwards this is one `command -v`.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
chromium:
	@command -v chromium >/dev/null || { $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

# Two monthly spans, so the latest one is also checked for drift against its predecessor.
$(DATA_ROOT)/span-2/ads.csv: | $(STAMP)
	$(PY) -m datagen.generate --root $(DATA_ROOT) --rows $(ROWS) --spans 1 2

data: $(DATA_ROOT)/span-2/ads.csv

demo: venv data
	$(PY) local_runner.py --data-root $(DATA_ROOT) --output-root outputs $(RUN_ARGS)

# A bounded hyperparameter search; later `make demo` runs reuse its best values.
tune: venv data
	$(PY) local_runner.py --data-root $(DATA_ROOT) --output-root outputs --tune $(RUN_ARGS)

# Both cores: pytest-xdist sends whole files to 2 workers (a file's module fixtures run once);
# the slowest 15 tests are listed last, so every CI log shows where the time goes.
test: venv chromium
	$(PY) -m pytest -q -n 2 --dist loadfile --durations=15 tests

# The edit loop: everything but the end-to-end pipeline runs and the KFP spec run.
test-quick: venv chromium
	$(PY) -m pytest -q -n 2 --dist loadfile -m "not slow and not kfp" tests

# Gate vs next month at 20,000 and 100,000 rows a month; the cost per component, row and byte
# of runs reading 300,000, 1,000,000 and 3,000,000 rows (the default window of 3 months) and
# the largest one's next-month AUC; ExampleGen alone at 300,000 and 1,000,000 rows read (its
# own peak RSS per Beam stage); serving, batch scoring and the edge model; the real logs of
# ../shared/data held out against a tuned LR and a GBDT (issue 22) (docs/benchmarks.md).
bench: venv
	$(PY) -m benchmarks.model_bench
	$(PY) -m benchmarks.model_bench --scale
	$(PY) -m benchmarks.example_gen_bench --trace
	$(PY) -m benchmarks.serving_bench
	$(PY) -m benchmarks.batch_bench
	$(PY) -m benchmarks.distributed_bench
	$(PY) -m benchmarks.real_logs --out bench_out/real_logs.md

# Scores the latest span of $(DATA_ROOT) with the newest model `make demo` pushed:
# outputs/scores/span-<N>/ (scores-*.csv, rejected_rows/, manifest.json). SCORE_ARGS: more flags.
score: venv
	$(PY) -m batch.score --data-root $(DATA_ROOT) --output outputs/scores \
	  --model-base-path $(SERVING_ROOT)/adclick $(SCORE_ARGS)

# The batch scoring pipeline for KFP; KFP_ARGS="--gcs-root gs://B/adclick --image IMG
# [--dataflow --project P] [--schedule --host H]" (docs/kubeflow.md).
kfp-batch: venv
	$(PY) -m batch.kfp_batch $(KFP_ARGS)

# TF Serving's REST API on 127.0.0.1:8501 for the models `make demo` pushed, from the local
# stand-in for tensorflow_model_server (serving/emulator/; production runs the image, deploy/).
serve: venv
	$(PY) -m serving.emulator.model_server --model-base-path $(SERVING_ROOT) \
	  --model-name adclick $(SERVE_ARGS)

# Serves an earlier version again: make rollback REASON="why" [TO=VERSION] [SERVING_ROOT=gs://B/serving]
rollback: venv
	@test -n "$(REASON)" || { echo 'usage: make rollback REASON="why" [TO=VERSION]'; exit 1; }
	$(PY) -m serving.rollback --model-base-path $(SERVING_ROOT) --model-name adclick \
	  $(if $(TO),--to $(TO),--previous) --reason "$(REASON)"

# Version labels: make label ARGS="set canary 1795360000" [MODEL_CONFIG=outputs/models.config]
label: venv
	$(PY) -m serving.labels $(ARGS) --config $(MODEL_CONFIG)

# Compiles the KFP v2 spec; KFP_ARGS="--gcs-root gs://B/adclick --image IMG" (docs/kubeflow.md).
kfp: venv
	$(PY) kubeflow_runner.py $(KFP_ARGS)

# Checks the served model on the latest captured span (skew, drift, prediction drift, decay
# once the month's labels are in $(DATA_ROOT)); writes outputs/monitoring/report.html.
# Exit status 1 when a threshold is broken. MONITOR_ARGS="--span N --capture-root gs://..."
monitor: venv
	$(PY) -m monitoring.check --output-root outputs --data-root $(DATA_ROOT) $(MONITOR_ARGS)

schema: venv
	$(PY) -m schema.generate

# Checks a CSV against models/features.py before a run: make check-csv CSV=data/span-2/ads.csv
check-csv: venv
	$(PY) -m pipeline.check_csv $(CSV)

clean:
	rm -rf outputs bench_out
