# fishcount front door. `make demo` and `make test` work on a fresh Debian machine with Python 3.11
# (root, nothing else installed): they create .venv, install what they need, then run.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.fishcount-installed
PLUGIN := plugins/napari-fishcount
# Debian packages: Xvfb + GL/xcb libraries for the headless napari tests (shared/reference/napari.md),
# Chromium for rendering report.html in a real browser.
APT_PACKAGES := libgl1 libegl1 libglib2.0-0 libfontconfig1 libdbus-1-3 libxkbcommon-x11-0 \
	libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-shape0 xvfb xauth chromium
OUT ?= results

.PHONY: setup apt demo test bench clean

$(STAMP): pyproject.toml $(wildcard $(PLUGIN)/pyproject.toml)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	if [ -f $(PLUGIN)/pyproject.toml ]; then $(BIN)/pip install --quiet -e '$(PLUGIN)[testing]'; fi
	touch $(STAMP)

setup: $(STAMP)

apt:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

# The main job on the bundled sample study: a resumable batch run ending in report.html.
demo: setup
	$(BIN)/fishcount run sample_images --out $(OUT)

# The whole test suite (unit, property, end-to-end, real-data and headless napari tests).
test: setup apt
	$(BIN)/python -m pytest -n 2 -q

# The headline benchmarks (by hand, minutes; results and commands in docs/benchmarks.md). The Big-FISH
# comparison of bench_detection.py needs its own venv: see the script's docstring.
bench: setup
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/bench_segment.py all
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/bench_robustness.py --fields 2 --only defaults

clean:
	rm -rf $(VENV) $(OUT)
