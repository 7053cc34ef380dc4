# The one place torch is pinned. It is installed before the project, so that
# resolving attnkit's "torch>=2.4" finds it and never pulls a multi-GB CUDA build.
TORCH_VERSION ?= 2.13.0
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export NO_MKDOCS_2_WARNING := 1

.PHONY: install test docs lint site clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "torch==$(TORCH_VERSION)"
	$(BIN)/python -m pip install --quiet -e ".[docs,test,bench,examples]"
	touch $(STAMP)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The strict build runs first: the browser tests read the site it writes.
site: install
	$(BIN)/mkdocs build --strict --site-dir site

test: lint site
	ATTNKIT_SITE_DIR=site $(BIN)/python -m pytest

docs: install
	$(BIN)/mkdocs serve --dev-addr 127.0.0.1:8000

clean:
	rm -rf $(VENV) site .pytest_cache .ruff_cache build *.egg-info
