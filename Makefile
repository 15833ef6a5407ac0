# The two quickstart commands of the README: `make demo` and `make test`.
# Each creates .venv with the system python3, installs mec-eval into it, then runs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo demo-quick test test-all bench install clean

install: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch and torchvision come from PyPI together (a lone local torch wheel can break torchvision).
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch torchvision
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/mec-eval demo --out demo_out

demo-quick: $(STAMP)
	$(VENV)/bin/mec-eval demo --quick --out demo_out

test: $(STAMP)
	$(PY) -m pytest -q -m "not gpu"

test-all: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/bench_mec_loss.py
	$(PY) benchmarks/bench_pretrain_cpu.py
	$(PY) benchmarks/bench_augment.py
	$(PY) benchmarks/bench_data_path.py --images 64 --repeats 3

clean:
	rm -rf $(VENV) demo_out .pytest_cache
