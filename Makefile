# make demo: create .venv, train + evaluate the embedded digits_add1 config, print metrics.
# make test: create .venv and run the test suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEMO_DIR ?= runs/demo

.PHONY: demo test test-all install clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	rm -rf $(DEMO_DIR)
	$(PY) train.py --config=configs/digits_add1.py --workdir=$(DEMO_DIR)
	@echo "Metrics: $(DEMO_DIR)/metrics.json  Figures: $(DEMO_DIR)/figures/  TensorBoard: $(DEMO_DIR)/tensorboard"

test: $(VENV)/.installed
	$(PY) -m pytest -q -n 2 --dist worksteal --durations=15 -m "not heavy"

# Everything, including the whole-config training runs on fixtures (CUB, image pairs, sweep).
test-all: $(VENV)/.installed
	$(PY) -m pytest -q -n 2 --dist worksteal --durations=15

clean:
	rm -rf $(VENV) runs .pytest_cache
