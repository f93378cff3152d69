# The two quick-start commands: `make demo` and `make test`.
# Each creates .venv if missing and installs graphc with its test extras (with
# the venv's own pip: any pip from Python 3.11's installs it, and an upgrade
# cost 5 s of every fresh setup).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test fuzz bench clean

# pip byte-compiles what it installs one file at a time (25 of its 47 s
# here); compileall -j 0 does the same on every core (16 s on two). A file
# that does not compile (a package's Python 2 example) stays source only,
# as pip leaves it, rather than failing the setup. Packages' own test suites
# and the installers are left out: nothing imports them (9.6 s against 17.8).
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --no-compile -e ".[test]"
	$(BIN)/python -m compileall -q -j 0 -x 'site-packages/(pip|setuptools|pkg_resources|.*/tests)/' $(VENV)/lib \
		> /dev/null || true
	touch $(STAMP)

# Bytecode for graphc's own sources, brought up to date before each run: an
# editable install gets none from pip, and where PYTHONDONTWRITEBYTECODE is
# set Python never writes it, so every process compiled them again (0.15 s
# of `import graphc` here, in each of the test suite's processes).
BYTECODE = $(BIN)/python -m compileall -q graphc kernels benchmarks

demo: $(STAMP)
	$(BYTECODE)
	$(BIN)/graphc demo

# One worker per core (a test file stays on one worker, so the functions it
# compiles are compiled once): Numba's compile time is most of the suite.
# (Compiling graphc's kernels first with `graphc warm`, 48 s on both cores,
# saved the suite 26-62 s in the runs tried: about what it cost, so it is left out.)
test: $(STAMP)
	$(BYTECODE)
	$(BIN)/python -m pytest -n auto --dist loadfile

# The hypothesis suites with many more examples (random programs, shapes, pytrees, picks).
fuzz: $(STAMP)
	$(BYTECODE)
	GRAPHC_FUZZ_EXAMPLES=$${GRAPHC_FUZZ_EXAMPLES:-300} HYPOTHESIS_PROFILE=fuzz \
		$(BIN)/python -m pytest tests/test_fuzz.py tests/test_random_shapes.py tests/test_random_pytrees.py tests/test_picks.py \
		-p no:cacheprovider

bench: $(STAMP)
	$(BYTECODE)
	$(BIN)/graphc bench

clean:
	rm -rf $(VENV) .graphc-test-cache .pytest_cache build *.egg-info
