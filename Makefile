# `make demo` and `make test` work on a fresh machine with only Python 3.11.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test install browser clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

# Debian's Chromium, for the tests that open the stats report in a real browser.
browser:
	@bash scripts/ensure_chromium.sh

demo: $(STAMP)
	$(PY) -m lavie.demo --workdir demo_output

test: $(STAMP) browser
	LAVIE_REQUIRE_BROWSER=1 $(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf demo_output .pytest_cache
