# `make reproduce`: install into .venv and run every experiment (source sweep, the two 7-width x 100-seed
# MLP presets, the two conv presets, the ResNet blocks, the MNIST-1D baselines, classifiers, autoencoders and
# 1-D ResNet blocks, low-rank compression), then every figure and table; prints the total time.
# `make test`: install into .venv, lint, and run the whole test suite (what CI runs).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install reproduce figures test time-test lint benchmark clean

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

# Each step is timed; the times go to results/tables/timings.csv (analysis/timings.py), which the report cites.
STEPS := "run.py -m width=8,32,128" "run.py -m experiment=mlp_sweep" "run.py -m experiment=mlp_relu" \
	"run.py -m experiment=conv_sweep" "run.py -m experiment=conv_relu_sweep" "run.py -m experiment=resnet_sweep" \
	"run.py -m experiment=mnist1d_baselines" "run.py -m experiment=mnist1d_mlp_sweep" \
	"run.py -m experiment=mnist1d_cnn_sweep" "run.py -m experiment=autoencoder_sweep" \
	"run.py -m experiment=mnist1d_resnet_sweep" "run.py experiment=compression" "-m analysis.figures"
reproduce: install
	@set -e; start=$$(date +%s); times=$$(mktemp); trap 'rm -f "$$times"' EXIT; \
	for step in $(STEPS); do \
	  t=$$(date +%s); $(PY) $$step; printf '%s\t%s\n' "$$(( $$(date +%s) - t ))" "python $$step" >> "$$times"; \
	done; \
	$(PY) -m analysis.timings "make reproduce" "$$times"; \
	$(PY) -m analysis.report; \
	echo "make reproduce: experiments, figures, tables and the report in $$(( $$(date +%s) - start )) s"

figures: install
	$(PY) -m analysis.figures
	$(PY) -m analysis.report

lint: install
	$(VENV)/bin/ruff check .

# The whole suite on this CPU's kernels, then the float32 numerics tests (marker `numerics`) once more under
# every other ATEN_CPU_CAPABILITY the CPU supports, so that a tolerance that only holds for one kernel fails here.
# Two pytest-xdist workers (one torch thread each, tests/conftest.py), a test file per worker at a time so that
# module fixtures are built once: most tests wait on process start-up, which two workers overlap.
PYTEST := MPLBACKEND=Agg $(PY) -m pytest -n 2 --dist loadfile
test: lint
	$(PYTEST)
	@for cap in $$(env -u ATEN_CPU_CAPABILITY $(PY) scripts/cpu_capabilities.py --others-than "$$ATEN_CPU_CAPABILITY"); do \
	  echo "== numerics tests under ATEN_CPU_CAPABILITY=$$cap"; \
	  ATEN_CPU_CAPABILITY=$$cap $(PYTEST) -q -m numerics || exit 1; \
	done

# `make time-test`: `make test`, timed, with the time recorded in results/tables/timings.csv for the report.
time-test: install
	@set -e; times=$$(mktemp); trap 'rm -f "$$times"' EXIT; t=$$(date +%s); $(MAKE) --no-print-directory test; \
	printf '%s\t%s\n' "$$(( $$(date +%s) - t ))" "make test" >> "$$times"; $(PY) -m analysis.timings "make test" "$$times"

benchmark: install
	$(PY) benchmarks/sweep_throughput.py
	$(PY) benchmarks/conv_ensemble.py
	$(PY) benchmarks/mnist1d_replicates.py
	$(PY) benchmarks/step_speed.py
	$(PY) benchmarks/functional_share.py

clean:
	rm -rf results/runs results/weights results/logs

# `make notebooks`: JupyterLab on notebooks/ (open the .ipynb; its paired jupytext .py is saved with it).
# `make sync-notebooks`: regenerate every notebooks/*.ipynb from its .py (the source to edit; cell ids and outputs of
# unchanged cells kept) and execute it in place on results/, kernel python3, outputs stored. The figures the notebooks
# make go to a temporary folder, so that nothing but the .ipynb is written.
.PHONY: notebooks sync-notebooks
notebooks: $(STAMP)
	$(VENV)/bin/jupyter lab $$([ "$$(id -u)" = 0 ] && echo --allow-root) notebooks/

sync-notebooks: $(STAMP)
	@set -e; figs=$$(mktemp -d); trap 'rm -rf "$$figs"' EXIT; \
	$(VENV)/bin/jupytext --to ipynb --update notebooks/*.py; \
	MPLBACKEND=Agg BOTTLENECK_FIGURES="$$figs" $(VENV)/bin/jupyter nbconvert --to notebook --execute --inplace \
	  --ExecutePreprocessor.kernel_name=python3 --ExecutePreprocessor.timeout=1200 \
	  --ExecutePreprocessor.record_timing=False notebooks/*.ipynb
