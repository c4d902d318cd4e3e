# Two entry points: `make run` launches the app, `make test` runs the tests. Both set up .venv.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint format bench screenshots clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/imgfinder gui

test: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check imgfinder tests benchmarks
	$(BIN)/ruff format --check imgfinder tests benchmarks

format: $(STAMP)
	$(BIN)/ruff format imgfinder tests benchmarks
	$(BIN)/ruff check --fix imgfinder tests benchmarks

bench: $(STAMP)
	for b in indexing descriptors rerank search gui_latency explain dupes_scan dupes_first_scan duplicates training formats cli_startup faults; do \
		QT_QPA_PLATFORM=offscreen $(BIN)/python benchmarks/$$b.py || exit 1; done

screenshots: $(STAMP)  # the README's pictures, from the app under Xvfb (apt-get install xvfb)
	xvfb-run -a -s "-screen 0 1400x900x24" $(BIN)/python packaging/screenshots.py docs/screenshots

clean:
	rm -rf $(VENV) build dist *.egg-info
