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

# The tests not marked cuda run on pytest-xdist workers, one for each core this process may use
# (nproc honours taskset and affinity, which -n auto does not; one worker on a one-core CI);
# loadfile keeps a file on one worker, so its compiled fixtures are built once, and
# tests/conftest.py hands the most expensive files out first. `make test XDIST=` runs them in
# one process. The CUDA simulator's tests (their own process: see test-cuda) run at the same
# time; their output is kept and printed after the others'. Fails if either process fails.
WORKERS ?= $(shell nproc 2>/dev/null || echo auto)
XDIST ?= -n $(WORKERS) --dist loadfile --no-loadscope-reorder

test: $(STAMP)
	@log=$$(mktemp); trap 'kill $$cuda 2>/dev/null; rm -f $$log' INT TERM; \
	echo "NUMBA_ENABLE_CUDASIM=1 $(BIN)/python -m pytest -q -m cuda  (in the background; its output comes last)"; \
	NUMBA_ENABLE_CUDASIM=1 $(BIN)/python -m pytest -q -m cuda >$$log 2>&1 & cuda=$$!; \
	echo '$(BIN)/python -m pytest -q -m "not cuda" $(XDIST)'; \
	$(BIN)/python -m pytest -q -m "not cuda" $(XDIST); rest=$$?; \
	wait $$cuda; sim=$$?; \
	echo; echo "---- NUMBA_ENABLE_CUDASIM=1 $(BIN)/python -m pytest -q -m cuda (exit $$sim) ----"; \
	cat $$log; rm -f $$log; \
	if [ $$rest -ne 0 ] || [ $$sim -ne 0 ]; then \
		echo "make test: FAILED (tests not marked cuda: exit $$rest; cuda tests in the simulator: exit $$sim)" >&2; \
		exit 1; \
	fi

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
