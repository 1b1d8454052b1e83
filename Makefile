# One command runs the lifecycle demo, one runs the tests; both bootstrap .venv
# from the pinned lock when it is missing or older than the lock.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-lock

.PHONY: demo test lint lock clean

$(STAMP): requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	@cp requirements.lock $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m devstack demo

test: $(STAMP)
	$(BIN)/python -m pytest

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
