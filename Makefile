# graphc: `make demo` and `make test` each set up .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test test-cuda bench bench-quick fuzz clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,plot,progress]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m graphc demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not cuda"
	$(MAKE) --no-print-directory test-cuda

# CUDA kernels in Numba's simulator: its own process, the variable set before numba loads
test-cuda: $(STAMP)
	NUMBA_ENABLE_CUDASIM=1 $(BIN)/python -m pytest -q -m cuda

bench: $(STAMP)
	$(BIN)/python -m graphc bench

bench-quick: $(STAMP)
	$(BIN)/python -m graphc bench --quick

# property tests with many more generated cases than CI runs
fuzz: $(STAMP)
	GRAPHC_FUZZ=1 $(BIN)/python -m pytest -q tests/test_properties.py --hypothesis-show-statistics

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info
