# The one place torch is pinned. It is installed before the project, so that
# resolving attnkit's "torch>=2.4" finds it and never pulls a multi-GB CUDA build.
TORCH_VERSION ?= 2.13.0
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export NO_MKDOCS_2_WARNING := 1

.PHONY: install test docs docs-assets lint site clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile \
		$(wildcard examples/attnkit-window/pyproject.toml examples/attnkit-window/README.md \
			examples/attnkit-window/src/attnkit_window/*.py \
			examples/attnkit-window/src/attnkit_window/py.typed)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "torch==$(TORCH_VERSION)"
	$(BIN)/python -m pip install --quiet -e ".[docs,test,bench,examples,transformers]"
# The example third-party plugin: a regular (not editable) install, as from PyPI, so
# the tests find it through its entry point exactly as they would a published plugin.
# Its build backend is installed first, so the build itself needs no download; a stale
# build folder is removed first, so that a deleted source file cannot linger in the wheel.
	$(BIN)/python -m pip install --quiet "setuptools>=77"
	rm -rf examples/attnkit-window/build
	$(BIN)/python -m pip install --quiet --no-build-isolation --no-deps --force-reinstall ./examples/attnkit-window
	touch $(STAMP)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# KaTeX, which the site serves itself so that its math renders offline: installed from
# npm at the version docs/_assets/package-lock.json pins; docs/_hooks.py copies the
# files the pages load into the site.
KATEX := docs/_assets/node_modules/katex/dist/katex.min.js

docs-assets: $(KATEX)

$(KATEX): docs/_assets/package.json docs/_assets/package-lock.json
	@command -v npm >/dev/null || { echo "npm is needed for the docs' KaTeX: apt-get install -y npm" >&2; exit 1; }
	npm ci --prefix docs/_assets --no-audit --no-fund
	touch $@

# The strict build runs first: the browser tests read the site it writes.
site: install docs-assets
	$(BIN)/mkdocs build --strict --site-dir site

test: lint site
	ATTNKIT_SITE_DIR=site $(BIN)/python -m pytest

docs: install docs-assets
	$(BIN)/mkdocs serve --dev-addr 127.0.0.1:8000

clean:
	rm -rf $(VENV) site .pytest_cache .ruff_cache build *.egg-info docs/_assets/node_modules
