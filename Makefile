# The two commands a newcomer needs:  `make run`  and  `make test`.
# Every target sets up what it needs itself (virtual environment, packages, database schema).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup run test test-fast lint typecheck pytest lock clean frontend frontend-check

# Test processes (pytest-xdist). Four on two cores: three drill lanes that mostly wait (on
# Bitrix24's rate, on outages; tests/conftest.py DRILL_LANES) beside the ordinary tests.
JOBS ?= 4

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements.lock
	$(BIN)/pip install -q --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

## Run everything on one machine: SQLite, the development portal, web and worker.
run: $(STAMP)
	$(BIN)/python -m devportal.devrun

## Lint, type-check and run the whole test suite (SQLite; PostgreSQL too when TEST_DATABASE_URL is set).
test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check b24app devportal tests benchmarks migrations
	$(BIN)/ruff format --check b24app devportal tests benchmarks migrations
	$(BIN)/lint-imports  # the import contracts in pyproject.toml: arrows one way, no cycles

typecheck: $(STAMP)
	$(BIN)/mypy

# Then the tests marked `alone` (the database restart drill, the timeout outage drills), one at a
# time; pytest's 5 is "none of them selected" (a PYTEST_ARGS naming other tests).
pytest: $(STAMP)
	$(BIN)/pytest -n $(JOBS) --dist loadgroup -m "not alone" $(PYTEST_ARGS)
	$(BIN)/pytest -m alone $(PYTEST_ARGS) || [ $$? -eq 5 ]

## The edit loop, about 2 minutes: lint, types and the tests on SQLite, without drills and browser.
test-fast: lint typecheck
	$(BIN)/pytest -n $(JOBS) -q -m "not postgresql" --ignore tests/drills --ignore tests/browser $(PYTEST_ARGS)

## Rebuild the settings page (frontend/, Vue 3 on Bitrix24's UI kit) into static/settings-page/.
## Needs Node.js 20.19+ and npm; the built files are committed, so `make run` needs neither.
frontend:
	cd frontend && npm ci --no-audit --no-fund && npm run build

## CI: rebuild the settings page and fail when the committed static/ differs from the build.
frontend-check: frontend
	@git diff --quiet -- static/ && test -z "$$(git status --porcelain -- static/)" \
	  || { git status --short -- static/; echo "static/ differs from what frontend/ builds: run make frontend and commit static/" >&2; exit 1; }

## Re-pin the dependencies after editing pyproject.toml.
lock: $(STAMP)
	$(BIN)/pip-compile -q --no-emit-index-url --no-emit-find-links --extra dev --strip-extras -o requirements.lock pyproject.toml

clean:
	rm -rf $(VENV) instance .pytest_cache .mypy_cache .ruff_cache
