# `make reproduce`: install into .venv and run every experiment (source sweep, the two 7-width x 100-seed
# MLP presets, the two conv presets, the ResNet blocks, the MNIST-1D baselines, classifiers, autoencoders and
# 1-D ResNet blocks, low-rank compression), then every figure and table; prints the total time.
# `make test`: install into .venv, lint, and run the whole test suite (what CI runs).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install reproduce figures test lint benchmark clean

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

reproduce: install
	@start=$$(date +%s); set -e; \
	$(PY) run.py -m width=8,32,128; \
	$(PY) run.py -m experiment=mlp_sweep; \
	$(PY) run.py -m experiment=mlp_relu; \
	$(PY) run.py -m experiment=conv_sweep; \
	$(PY) run.py -m experiment=conv_relu_sweep; \
	$(PY) run.py -m experiment=resnet_sweep; \
	$(PY) run.py -m experiment=mnist1d_baselines; \
	$(PY) run.py -m experiment=mnist1d_mlp_sweep; \
	$(PY) run.py -m experiment=mnist1d_cnn_sweep; \
	$(PY) run.py -m experiment=autoencoder_sweep; \
	$(PY) run.py -m experiment=mnist1d_resnet_sweep; \
	$(PY) run.py experiment=compression; \
	$(PY) -m analysis.figures; \
	echo "make reproduce: experiments, figures and tables in $$(( $$(date +%s) - start )) s"

figures: install
	$(PY) -m analysis.figures

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

benchmark: install
	$(PY) benchmarks/sweep_throughput.py
	$(PY) benchmarks/conv_ensemble.py
	$(PY) benchmarks/mnist1d_replicates.py

clean:
	rm -rf results/runs results/weights results/logs
