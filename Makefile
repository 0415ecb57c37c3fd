# alignvar-edge developer tasks. `make test` is what CI runs (.ci/run).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
HOST_STAMP := $(VENV)/.installed-host
# Editable installs in setuptools' compat mode: a plain path in site-packages, which mypy follows, so
# that code outside the checkout type-checks against the package (the default import-hook finder
# is invisible to mypy: every name of the package was Any there).
EDITABLE := --config-settings editable_mode=compat
# tensorrt-stubs depends on `tensorrt`, which PyPI cannot deliver (placeholder wheel that
# downloads from NVIDIA's index). Install only the stubs, outside site-packages, for mypy.
STUBS  := $(VENV)/typing-stubs

.PHONY: venv test demo lint constraints clean-venv

# The pins (constraints.txt) are for Python 3.11 or newer; an older one fails in pip's resolver with
# a conflict that never names the Python, and a .venv made with one would be reused by every later run.
NEEDS_311 := import sys; sys.exit(sys.version_info < (3, 11))
CHECK_PYTHON = if test -x $(PY); then $(PY) -c '$(NEEDS_311)' || { echo "$(VENV) was made with $$($(PY) -V 2>&1); alignvar-edge needs Python 3.11 or newer: run make clean-venv, then make PYTHON=python3.11" >&2; exit 1; }; \
	elif ! command -v $(PYTHON) >/dev/null; then echo "$(PYTHON) not found: pass PYTHON=python3.11 (or newer)" >&2; exit 1; \
	else $(PYTHON) -c '$(NEEDS_311)' 2>/dev/null || { echo "alignvar-edge needs Python 3.11 or newer; $(PYTHON) is $$($(PYTHON) -V 2>&1): pass PYTHON=python3.11 (or newer)" >&2; exit 1; }; fi

venv: $(STAMP)

# Re-runs whenever the dependency declarations or the pins change.
$(STAMP): pyproject.toml constraints.txt
	@$(CHECK_PYTHON)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c constraints.txt $(EDITABLE) -e '.[all]'
	$(PIP) install -q --no-deps --upgrade --target $(STUBS) -c constraints.txt tensorrt-stubs
	$(PY) scripts/patch_tensorrt_stubs.py $(STUBS)          # so that mypy parses them
	touch $@

# Test files spread over the cores; at most 4 workers, since each holds its own models in memory.
# -rs lists every skip with its reason, so that a CI log says what this host did not test.
test: venv
	$(PY) -m pytest -q -rs --durations=20 -n auto --maxprocesses 4 --dist loadfile --no-loadscope-reorder

# The demo needs the host side only (PyTorch, ONNX tooling): no test runner, type stubs or backends.
$(HOST_STAMP): pyproject.toml constraints.txt
	@$(CHECK_PYTHON)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c constraints.txt $(EDITABLE) -e '.[host]'
	touch $@

demo: $(HOST_STAMP)
	$(VENV)/bin/alignvar-edge demo --force

lint: venv
	$(PY) -m mypy alignvar_edge

# Regenerate the exact pins from a working venv. torch's local label (+cpu) is dropped so the
# pin also matches other builds of the same release; the stubs are pinned by hand.
constraints: venv
	{ echo "# Exact pins of the tested working set (Python 3.11, x86-64). Regenerate: make constraints"; \
	  $(PIP) freeze --exclude alignvar-edge | sed -E 's/^(torch==[^+]+)\+.*/\1/'; \
	  echo "tensorrt-stubs==$$(sed -n 's/^Version: //p' $(STUBS)/tensorrt_stubs-*.dist-info/METADATA)"; \
	} > constraints.txt.new && mv constraints.txt.new constraints.txt

clean-venv:
	rm -rf $(VENV)
