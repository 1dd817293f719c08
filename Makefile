# Two commands set everything up: `make run` and `make test` (see README).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1

.PHONY: run test install browser-deps clean

install: $(STAMP)

# Reinstall only when requirements.txt changes. torch stays pinned in it: an
# unpinned torch would pull a multi-GB CUDA build.
$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(STAMP)

run: install
	$(PY) manage.py runstack

# Browser tests need Debian's chromium; installed when missing and we are
# root, skipped (with a reason) otherwise.
browser-deps:
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) >/dev/null \
		|| echo "could not install chromium: browser tests will be skipped"; \
	fi

test: install browser-deps
	$(PY) -m pytest

clean:
	rm -rf $(VENV) var .pytest_cache
