# graphc: `make demo` and `make test` each set up .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test test-cuda bench bench-quick fuzz conformance clean

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
	GRAPHC_FUZZ=1 $(BIN)/python -m pytest -q tests/test_properties.py \
		tests/test_conformance.py::test_random_tree_matches_numpy_and_torch --hypothesis-show-statistics

# conformance suite with torch autograd as a second gradient reference, on the full edge grids
# (the CUDA simulator's too, and parallel's row ops); torch is installed by name, as the extra says
conformance: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[conformance]'
	GRAPHC_CONFORMANCE_FULL=1 $(BIN)/python -m pytest -q -m "not cuda" tests/test_conformance.py
	GRAPHC_CONFORMANCE_FULL=1 NUMBA_ENABLE_CUDASIM=1 $(BIN)/python -m pytest -q -m cuda tests/test_conformance.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info
