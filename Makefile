# evalsuite — one command to set up and run the demo, one to set up and run the tests.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed-stamp
DEMO_WEIGHTS := evalsuite/models/weights/demo-clip

.PHONY: install demo demo-model test test-fast lint bench clean

# torch/torchvision are pinned to the builds available on the target machines (local wheels; see README).
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet torch==2.14.1 torchvision==0.29.1
	$(PIP) install --quiet -e '.[report,hf,dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/evalsuite run --model demo-clip --tasks demo --output-dir results/demo --no-resume

# Re-train the shipped demo model (a few minutes on 2 cores); the result is committed as package data.
demo-model: install
	$(PY) -m evalsuite.demo.train --out $(DEMO_WEIGHTS)

test: install
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check evalsuite tests benchmarks

test-fast: install
	$(PY) -m pytest -q -m "not slow"

bench: install
	$(PY) benchmarks/bench_classification.py
	$(PY) benchmarks/load_memory.py
	$(PY) benchmarks/bench_retrieval_memory.py
	$(PY) benchmarks/decode_speed.py
	$(PY) benchmarks/throughput.py
	$(PY) benchmarks/pixel_cache.py
	$(PY) benchmarks/vs_clip_benchmark.py

clean:
	rm -rf $(VENV) .pytest_cache results/demo
