# warden.fleet: toolchain, checks and packaging.
#
#   make venv     create .venv from requirements.txt (reinstalls only when it changes)
#   make lint     yamllint, ansible-lint (production profile), ruff
#   make sanity   ansible-test sanity on an exported copy of the tree
#   make unit     pytest tests/unit
#   make integration  tests with real files, git repositories, zstd and PostgreSQL (tests/integration)
#   make bench-backup backup benchmark (BENCH_ARGS="--size-mb 60" for a quick run)
#   make bench-fleet  no-op site.yml re-run with 1, 10 and 20 agents on stand-ins (root)
#   make plan     render the example inventory's plan (playbooks/validate.yml)
#   make build    build the collection and check ansible-doc renders every module from the artifact
#   make compat   unit tests and the example plan on Python 3.12 / ansible-core 2.21
#   make test     everything CI runs (lint sanity unit build compat integration standin-test molecule molecule-backup)
#   make clean    remove build and test output (keeps .venv; `make distclean` removes it too)

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := test
.DELETE_ON_ERROR:

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.requirements.stamp
# Tools run from the venv; collections resolve through ansible.cfg
# (./collections links back to this checkout).
export PATH := $(CURDIR)/$(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg

BUILD_DIR ?= build
NAMESPACE := warden
NAME := fleet

.PHONY: venv lint sanity unit plan build test clean distclean

venv: $(STAMP)

$(STAMP): requirements.txt
	@if [ ! -x $(BIN)/python ]; then $(PYTHON) -m venv $(VENV); fi
	$(BIN)/python -m pip install --quiet -r requirements.txt
	@touch $@

lint: $(STAMP)
	$(BIN)/yamllint --strict .
	$(BIN)/ansible-lint --profile production
	$(BIN)/ruff check .

# ansible-test needs the collection at .../ansible_collections/warden/fleet.
# Export the tracked and new (not ignored) files there, without collections/
# (the symlink loop), and run every sanity test on the venv's Python.
# ansible-test bootstraps pip in its per-test virtual environments with a
# get-pip script it downloads from outside the package index; install our
# offline equivalent as its cached copy first (a real cached copy is kept).
sanity: $(STAMP)
	@pipver=$$($(BIN)/python -c 'import sys, types; \
	  from ansible_test._internal.python_requirements import get_venv_packages as p; \
	  print(p(types.SimpleNamespace(version="%d.%d" % sys.version_info[:2]))["pip"])'); \
	cache="$${HOME}/.ansible/test/cache/get_pip_$${pipver//./_}.py"; \
	if [ ! -f "$$cache" ] || grep -q 'warden.fleet offline get-pip' "$$cache"; then \
	  install -D -m 0644 hacking/ansible_test_get_pip.py "$$cache"; fi
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	dest="$$tmp/ansible_collections/$(NAMESPACE)/$(NAME)"; mkdir -p "$$dest"; \
	git ls-files -z --cached --others --exclude-standard \
	  | grep -zv -e '^collections/' -e '^\.ci/' -e '^$(VENV)/' \
	  | tar --null --no-recursion --ignore-failed-read --files-from=- -cf - \
	  | tar -xf - -C "$$dest"; \
	pyver=$$($(BIN)/python -c 'import sys; print("%d.%d" % sys.version_info[:2])'); \
	cd "$$dest" && ansible-test sanity --color no --python "$$pyver" $(SANITY_ARGS)

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

# Root: real files, git repositories, tar/zstd and PostgreSQL (the machine's
# /usr/lib/postgresql/*/bin), with every FreeBSD command answered by the stand-in
# FreeBSD host (tests/standin): backup and restore, the playbooks, bastille_jail,
# the PostgreSQL role against a server of its own.
.PHONY: integration bench-backup
integration: $(STAMP)
	$(BIN)/python -m pytest -p no:cacheprovider tests/integration $(PYTEST_ARGS)

# Backup benchmark (not a test): BENCH_ARGS="--size-mb 60" for a quick run.
bench-backup: $(STAMP)
	$(BIN)/python bench/backup.py $(BENCH_ARGS)

# No-op re-run of site.yml with 1, 10 and 20 agents on stand-ins (root; not a test):
# calls_per_extra_agent and noop_20_vs_1. BENCH_ARGS="--reps 1" for a quick run.
.PHONY: bench-fleet
bench-fleet: $(STAMP)
	$(BIN)/python bench/fleet.py $(BENCH_ARGS)

plan: $(STAMP)
	$(BIN)/ansible-playbook -i inventories/example/hosts.yml playbooks/validate.yml

# Build the artifact, install it into a scratch collections path and check
# that every module's documentation renders from the installed copy.
build: $(STAMP)
	@rm -rf "$(BUILD_DIR)"; mkdir -p "$(BUILD_DIR)/collections"
	$(BIN)/ansible-galaxy collection build --force --output-path "$(BUILD_DIR)" .
	$(BIN)/ansible-galaxy collection install --force --no-deps --offline \
	  -p "$(BUILD_DIR)/collections" "$(BUILD_DIR)"/$(NAMESPACE)-$(NAME)-*.tar.gz
	@set -e; root="$(BUILD_DIR)/collections/ansible_collections/$(NAMESPACE)/$(NAME)"; \
	if tar -tzf "$(BUILD_DIR)"/$(NAMESPACE)-$(NAME)-*.tar.gz | grep -E '^(\./)?(\.venv|\.git|\.ci|collections|tests/output|build)/'; then \
	  echo "build: the artifact contains files that galaxy.yml build_ignore should drop" >&2; exit 1; fi; \
	modules=$$(find "$$root/plugins/modules" -maxdepth 1 -name '*.py' ! -name '__init__.py' -printf '%f\n' 2>/dev/null | sed 's/\.py$$//' | sort); \
	if [ -z "$$modules" ]; then echo "build: no modules in the artifact"; fi; \
	for m in $$modules; do \
	  echo "ansible-doc $(NAMESPACE).$(NAME).$$m"; \
	  (cd "$(BUILD_DIR)" && env -u ANSIBLE_CONFIG ANSIBLE_COLLECTIONS_PATH="$(CURDIR)/$(BUILD_DIR)/collections" \
	    "$(CURDIR)/$(BIN)/ansible-doc" -t module "$(NAMESPACE).$(NAME).$$m" > "doc-$$m.txt"); \
	  grep -q "$(NAMESPACE).$(NAME).$$m" "$(BUILD_DIR)/doc-$$m.txt"; \
	  grep -q "$$(realpath "$$root")" "$(BUILD_DIR)/doc-$$m.txt" || { echo "build: $$m was not documented from the artifact" >&2; exit 1; }; \
	done

# The stand-in FreeBSD host (tests/standin; needs root): its own tests, the
# Molecule scenario that converges site.yml on it, and the demo.
#   make standin-test   pytest tests/standin (doubles, processes, leak-free down)
#   make molecule       molecule test -s default (converge, idempotence, verify)
#   make demo           site.yml with the example inventory on a stand-in "demo", then the fleet
.PHONY: standin-test molecule demo
# Its test modules are independent (each brings up stand-ins of its own under a
# unique name): pytest-xdist runs them on STANDIN_TEST_JOBS workers, a whole
# module per worker (--dist loadfile), so a module's stand-in is set up once.
STANDIN_TEST_JOBS ?= 2
standin-test: $(STAMP)
	$(BIN)/python -m pytest -p no:cacheprovider -n $(STANDIN_TEST_JOBS) --dist loadfile tests/standin $(PYTEST_ARGS)

molecule: $(STAMP)
	$(BIN)/molecule test -s default

# Backup, listing and restore end to end on the stand-in, with PostgreSQL in
# the db jails (the machine's /usr/lib/postgresql/*/bin; about a minute).
.PHONY: molecule-backup
molecule-backup: $(STAMP)
	$(BIN)/molecule test -s backup

demo: $(STAMP)
	$(BIN)/python tests/standin/demo.py

# The unit tests and the example plan again on Python 3.12 with ansible-core
# 2.21 (requirements.txt picks it there), in a venv of its own.
PYTHON312 ?= $(firstword $(wildcard $(PYENV_ROOT)/versions/3.12*/bin/python3.12 $(HOME)/.pyenv/versions/3.12*/bin/python3.12 /root/.pyenv/versions/3.12*/bin/python3.12 /usr/bin/python3.12 /usr/local/bin/python3.12))
.PHONY: compat
compat:
	@if [ -z "$(PYTHON312)" ]; then echo "compat: no Python 3.12 on this machine; set PYTHON312=/path/to/python3.12" >&2; exit 1; fi
	$(MAKE) VENV=.venv-3.12 PYTHON="$(PYTHON312)" unit plan

# Fast checks first; the stand-in and Molecule last.
test: lint sanity unit build compat integration standin-test molecule molecule-backup

clean:
	rm -rf "$(BUILD_DIR)" tests/output .pytest_cache .ruff_cache .cache
	find . -path ./.venv -prune -o -path ./collections -prune -o -name __pycache__ -type d -print0 | xargs -0 rm -rf

distclean: clean
	rm -rf $(VENV)
