# One command runs the lifecycle demo, one runs the tests; both bootstrap .venv
# from the pinned lock when it is missing or older than the lock.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-lock

.PHONY: demo test lint lock clean up down chromium

$(STAMP): requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	@cp requirements.lock $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m devstack demo

# The browser tests drive Debian's Chromium with Playwright (which never downloads a browser).
CHROMIUM := /usr/bin/chromium

chromium:
	@test -x $(CHROMIUM) || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; }

test: $(STAMP) chromium
	$(BIN)/python -m pytest

# The same stack as docker-compose.yaml, as native processes on 127.0.0.1: the devstack plus
# Airflow (api-server, scheduler, dag-processor, triggerer) on :8080. `make down` stops it all.
up: $(STAMP)
	$(BIN)/python -m devstack up --with-airflow

down: $(STAMP)
	$(BIN)/python -m devstack down

lint: $(STAMP)
	$(BIN)/ruff check .

# Re-resolve requirements.txt into requirements.lock in a throwaway venv.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade pip
	.lock-venv/bin/python -m pip install --quiet -r requirements.txt
	{ echo "# Fully pinned install set, generated from requirements.txt by \`make lock\`."; \
	  echo "# Python 3.11. Do not edit by hand."; \
	  .lock-venv/bin/python -m pip freeze --exclude-editable; } > requirements.lock
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) .devstack test-artifacts
