# `make demo` and `make test` work on a fresh machine with only Python 3.11.
# Set-up: a venv with pip, uv installed into it with pip, and every package from requirements.lock
# (pinned, transitive ones included). `make lock` refreshes the lock after pyproject.toml's
# dependencies change; `make` refuses a lock that no longer matches them.
# --compile-bytecode: uv, unlike pip, writes no .pyc files, and where PYTHONDONTWRITEBYTECODE is set
# (as on the CI machines) every process (each Ray worker, each `lavie` subprocess) would compile
# torch, diffusers and ray from source again: twice the import time, the suite ~1.4x slower.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
UV     := $(VENV)/bin/uv
LOCK   := requirements.lock
STAMP  := $(VENV)/.installed
# The platforms the lock is resolved for (uv's universal resolution, limited to these).
LOCK_PYTHON := 3.10

.PHONY: demo test install lock browser clean

$(STAMP): pyproject.toml $(LOCK) Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) scripts/lockfile.py check $(LOCK)
	@if $(PY) -m pip install --quiet --disable-pip-version-check uv; then \
		$(UV) pip install --python $(PY) --quiet --compile-bytecode -r $(LOCK) && \
		$(UV) pip install --python $(PY) --quiet --no-deps -e . ; \
	else \
		echo "make: uv could not be installed; installing the same lock with pip (slower)"; \
		$(PY) -m pip install --quiet -r $(LOCK) && $(PY) -m pip install --quiet --no-deps -e . ; \
	fi
	@touch $(STAMP)

install: $(STAMP)

lock:
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check uv
	$(UV) pip compile pyproject.toml --extra dev --universal --python-version $(LOCK_PYTHON) \
		--custom-compile-command "make lock" --quiet -o $(LOCK)
	@$(PY) scripts/lockfile.py stamp $(LOCK)

# Debian's Chromium, for the tests that open the stats report in a real browser.
browser:
	@bash scripts/ensure_chromium.sh

demo: $(STAMP)
	$(PY) -m lavie.demo --workdir demo_output

test: $(STAMP) browser
	LAVIE_REQUIRE_BROWSER=1 $(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf demo_output .pytest_cache
