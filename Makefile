# Developer and CI entry points. `make` lists the targets.

PYTEST_ARGS ?=
TEST_PATHS := libs/common/tests services/books/tests services/shop/tests services/chat/tests
BOOKS_PORT ?= 8001
DATABASE_URL ?= sqlite:///$(CURDIR)/.dev/books.db

.DEFAULT_GOAL := help
.PHONY: help install lint fmt test bench books

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z][a-z-]*:.*## / {printf "  %-8s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

install: ## Install every workspace package and the dev tools from uv.lock into .venv
	uv sync --locked --all-packages

lint: ## Check lint, formatting and types
	uv run ruff check .
	uv run ruff format --check .
	uv run mypy libs/common/src

fmt: ## Format the code and apply safe lint fixes
	uv run ruff format .
	uv run ruff check --fix .

test: install ## Lint, then run every test that can run on this machine (PYTEST_ARGS=...)
	@$(MAKE) --no-print-directory lint
	uv run pytest $(PYTEST_ARGS) $(TEST_PATHS)

bench: ## Run the benchmarks
	uv run python bench/run.py

books: ## Run the books service alone on :8001 (SQLite in .dev/ unless DATABASE_URL is set)
	mkdir -p .dev
	export DATABASE_URL='$(DATABASE_URL)' && uv run books migrate && uv run books seed \
		&& uv run books serve --port $(BOOKS_PORT)
