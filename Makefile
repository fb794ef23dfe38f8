# Developer and CI entry points. `make` lists the targets.

PYTEST_ARGS ?=
# Every Python service folder, and every Go one (deploy/service_registry.py reads the same
# folders' service.yml; a Go service's holds `language: go`).
SERVICE_NAMES := $(patsubst services/%/pyproject.toml,%,$(wildcard services/*/pyproject.toml))
GO_SERVICE_NAMES := $(patsubst services/%/go.mod,%,$(wildcard services/*/go.mod))
# staticcheck on PATH, else where `go install` puts it (.ci/run builds it so).
STATICCHECK ?= $(shell command -v staticcheck 2>/dev/null || echo "$$(go env GOPATH 2>/dev/null | cut -d: -f1)/bin/staticcheck")
UNIT_TEST_PATHS := libs/common/tests $(SERVICE_NAMES:%=services/%/tests) tests/bench
# The slow suites: a whole stack per session (e2e), the deploy files, the docs' own commands.
STACK_TEST_PATHS := tests/e2e tests/deploy tests/docs
# Parallel pytest workers for the unit suites (pytest-xdist); 0 runs them in one process.
JOBS ?= auto
BOOKS_PORT ?= 8001
DATABASE_URL ?= sqlite:///$(CURDIR)/.dev/books.db
SERVICE ?= books
FAULT ?=
SCOPE ?= catalog:write
AUDIENCE ?= books
TOKEN_SECONDS ?= 3600
STACK ?= dev
LOAD_USERS ?= 20
LOAD_SECONDS ?= 60
# compose.yaml (the infrastructure, the templates) and what generate.py makes of the service
# folders: every compose target writes generated/ first (COMPOSE_GENERATE), so it is never stale.
# OFFLINE=1: the stand-ins `make offline-images` builds instead of the official images, and no
# Grafana (it has none).
OFFLINE ?=
COMPOSE := docker compose $(if $(OFFLINE),--env-file deploy/offline/images.env) \
	-f deploy/compose/compose.yaml -f deploy/compose/generated/services.yaml
# It needs PyYAML only: run apart from the workspace, so `make up` installs nothing else.
COMPOSE_GENERATE = uv run --quiet --no-project --with pyyaml python deploy/compose/generate.py
CHART := deploy/helm/bookshop
# helm on PATH, else where `go install` puts it (.ci/run builds it so).
HELM ?= $(shell command -v helm 2>/dev/null || echo "$$(go env GOPATH 2>/dev/null | cut -d: -f1)/bin/helm")
HELM_KUBE_VERSION ?= 1.37.0
GIT_COMMIT ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
# First recipe line of every target that runs uv: what to do when it is missing.
REQUIRE_UV = @command -v uv >/dev/null 2>&1 || { echo "make $@ needs uv (https://docs.astral.sh/uv/), \
which is not on PATH. Debian 12 / Ubuntu 24.04: sudo apt-get install pipx && pipx install uv \
&& pipx ensurepath (then open a new shell); elsewhere: pipx install uv, or python3 -m pip install \
--user uv" >&2; exit 127; }
# Recipe line of the compose targets: a clear message instead of Docker's when Compose is absent.
REQUIRE_COMPOSE = @docker compose version >/dev/null 2>&1 || { echo "make $@ needs Docker \
Engine with Compose v2 ('docker compose version' failed here); without Docker: make dev" >&2; \
exit 1; }

.DEFAULT_GOAL := help
.PHONY: help install lint fmt check go-check gateway test bench books token dev break heal e2e load up \
	down logs ps helm new-service offline-images compose-check k8s-up k8s-down

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z][a-z0-9-]*:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

install: ## Install every workspace package and the dev tools from uv.lock into .venv
	$(REQUIRE_UV)
	uv sync --locked --all-packages

lint: ## Check lint, formatting and types
	$(REQUIRE_UV)
	uv run ruff check .
	uv run ruff format --check .
	uv run mypy libs/common/src $(SERVICE_NAMES:%=services/%/src)

fmt: ## Format the code and apply safe lint fixes
	$(REQUIRE_UV)
	uv run ruff format .
	uv run ruff check --fix .

check: install ## The quick loop: lint, types, chassis and service tests in parallel (JOBS=auto), then go-check
	@$(MAKE) --no-print-directory lint
	uv run pytest $(if $(filter-out 0,$(JOBS)),-n $(JOBS)) $(PYTEST_ARGS) $(UNIT_TEST_PATHS)
	@$(MAKE) --no-print-directory go-check

go-check: ## The Go services (the gateway): gofmt, go vet, go test -race, staticcheck
	@command -v go >/dev/null 2>&1 || { echo "make $@ needs Go (https://go.dev/dl/) on PATH" >&2; exit 127; }
	@for service in $(GO_SERVICE_NAMES); do \
		echo "==> services/$$service"; \
		unformatted=$$(cd services/$$service && gofmt -l .); \
		if [ -n "$$unformatted" ]; then echo "gofmt: $$unformatted" >&2; exit 1; fi; \
		(cd services/$$service && go vet ./... && go test -race -count=1 ./... \
			&& "$(STATICCHECK)" ./...) || exit 1; \
	done

gateway: ## Build the Go gateway: services/gateway/gateway (run it: services/gateway/gateway serve)
	cd services/gateway && go build -trimpath -ldflags "-X github.com/bookshop/gateway/internal/server.Commit=$(GIT_COMMIT)" -o gateway .

test: check ## Everything that can run here: check, e2e, deploy and docs, then compose-check if an engine answers
	uv run pytest $(PYTEST_ARGS) $(STACK_TEST_PATHS)
	@$(MAKE) --no-print-directory compose-check

bench: ## Run the benchmarks: chassis throughput (needs wrk), shop during a books outage, the order-capacity knee
	$(REQUIRE_UV)
	uv run --all-packages python bench/run.py
	uv run python bench/breaker_outage.py
	uv run --all-packages python bench/order_capacity.py

books: ## Run the books service alone on :8001 (SQLite in .dev/ unless DATABASE_URL is set)
	$(REQUIRE_UV)
	mkdir -p .dev
	uv run python -m chassis.dev_issuer keys .dev/auth >/dev/null
	export DATABASE_URL='$(DATABASE_URL)' AUTH__PUBLIC_KEY_FILE=.dev/auth/issuer.pub \
		&& uv run --all-packages books migrate && uv run books seed \
		&& uv run books serve --port $(BOOKS_PORT)

token: ## Print a token for books' writes: SCOPE=catalog:write (or stock:reserve); STACK=compose for make up
ifeq ($(STACK),compose)
	$(REQUIRE_COMPOSE)
	$(REQUIRE_UV)
	@$(COMPOSE_GENERATE)
	@$(COMPOSE) run --rm --no-deps -T auth-init python -m chassis.dev_issuer mint /run/auth \
		--scope '$(SCOPE)' --audience '$(AUDIENCE)' --ttl $(TOKEN_SECONDS)
else
	$(REQUIRE_UV)
	@uv run python -m chassis.dev_issuer mint "$${DEV_DIR:-.dev}/auth" --scope '$(SCOPE)' \
		--audience '$(AUDIENCE)' --ttl $(TOKEN_SECONDS)
endif

dev: ## Run every service (+ Prometheus) locally, each on its service.yml port (BOOKS_PORT=... etc.; DATABASE_URL=postgresql://... optional)
	$(REQUIRE_UV)
	uv run --all-packages python deploy/dev/run.py start

break: ## Inject a fault into a running stack: SERVICE=books, FAULT='{"error_rate":0.5}' (default outage)
	$(REQUIRE_UV)
	uv run python deploy/dev/run.py break $(SERVICE) $(if $(FAULT),--fault '$(FAULT)')

heal: ## Remove the faults of SERVICE=books in a running stack
	$(REQUIRE_UV)
	uv run python deploy/dev/run.py heal $(SERVICE)

e2e: ## End-to-end tests: own stack on free ports, or a running one via E2E_*_URL (PYTEST_ARGS=...)
	$(REQUIRE_UV)
	uv run --all-packages pytest $(PYTEST_ARGS) tests/e2e

load: ## Headless locust run (LOAD_USERS=20, LOAD_SECONDS=60) against the stack on :8001-8003
	$(REQUIRE_UV)
	LOAD_USERS=$(LOAD_USERS) LOAD_SECONDS=$(LOAD_SECONDS) uv run --all-packages python tests/load/run.py

up: ## Build the images and start the compose stack (Docker Compose v2), then print its URLs
	$(REQUIRE_COMPOSE)
	$(REQUIRE_UV)
	$(COMPOSE_GENERATE)
	GIT_COMMIT=$(GIT_COMMIT) $(COMPOSE) build
	$(COMPOSE) up -d --wait --remove-orphans \
		$(if $(OFFLINE),$$($(COMPOSE) config --services | grep -vx grafana))
	@echo "bookshop is up (make logs, make ps, make down):"
	@$(COMPOSE_GENERATE) --urls
	@echo "  Jaeger      http://localhost:16686"
	@echo "  Prometheus  http://localhost:9090         alerts http://localhost:9090/alerts"
	@$(if $(OFFLINE),echo "  Grafana     not started: no offline stand-in (OFFLINE=1)",echo \
		"  Grafana     http://localhost:3000         (anonymous viewer; admin/admin to edit)")
	@echo "  locust      http://localhost:8089         after: $(COMPOSE) --profile load up -d locust"

down: ## Stop the compose stack and remove its containers (VOLUMES=1 deletes its data too)
	$(REQUIRE_COMPOSE)
	$(REQUIRE_UV)
	@$(COMPOSE_GENERATE)
	$(COMPOSE) --profile load down --remove-orphans $(if $(VOLUMES),--volumes)

logs: ## Follow the logs of the compose stack
	$(REQUIRE_COMPOSE)
	$(REQUIRE_UV)
	@$(COMPOSE_GENERATE)
	$(COMPOSE) logs --follow --tail=100

ps: ## List the containers of the compose stack and their health
	$(REQUIRE_COMPOSE)
	$(REQUIRE_UV)
	@$(COMPOSE_GENERATE)
	$(COMPOSE) --profile load ps --all

compose-check: ## make up, then e2e, locust, stop and down against it under a real engine (OFFLINE=1 for the stand-ins)
	$(REQUIRE_UV)
	OFFLINE=$(OFFLINE) uv run --all-packages python tests/compose/run.py

offline-images: ## Build stand-ins of the official images from Debian packages and Go modules (root; for OFFLINE=1)
	bash deploy/offline/build-images.sh

helm: ## Lint (--strict) and render the Helm chart, with its default, ci/ and minikube values
	@test -x "$(HELM)" || { echo "make helm needs helm: go install \
helm.sh/helm/v3/cmd/helm@v3.22.0 (.ci/run shows the build flags)" >&2; exit 1; }
	$(HELM) lint --strict --kube-version $(HELM_KUBE_VERSION) $(CHART)
	$(HELM) lint --strict --kube-version $(HELM_KUBE_VERSION) $(CHART) -f $(CHART)/ci/full-values.yaml
	$(HELM) template bookshop $(CHART) --kube-version $(HELM_KUBE_VERSION) >/dev/null
	$(HELM) template bookshop $(CHART) --kube-version $(HELM_KUBE_VERSION) \
		-f $(CHART)/ci/full-values.yaml >/dev/null
	$(HELM) lint --strict --kube-version $(HELM_KUBE_VERSION) $(CHART) -f $(CHART)/values-minikube.yaml
	@echo "chart OK; objects validated against the Kubernetes schemas, kube-score and promtool by: \
uv run pytest tests/deploy/test_helm.py tests/deploy/test_minikube.py"

k8s-up: ## The whole stack on minikube: images built in it, the chart with PostgreSQL, Jaeger, Prometheus, Grafana, compose's ports forwarded (OFFLINE=1)
	$(REQUIRE_UV)
	uv run python deploy/minikube/run.py up $(if $(OFFLINE),--offline)

k8s-down: ## Stop k8s-up's port-forwards and uninstall the release (VOLUMES=1 deletes its namespace: data and passwords)
	$(REQUIRE_UV)
	uv run python deploy/minikube/run.py down $(if $(VOLUMES),--volumes)

new-service: ## Make services/NAME from the template: NAME=reviews [PORT=8004] [DEPENDS=books,chat]
	$(REQUIRE_UV)
	@test -n "$(NAME)" || { echo "usage: make new-service NAME=reviews [PORT=8004] [DEPENDS=books]" >&2; exit 2; }
	uv run python deploy/new_service.py '$(NAME)' $(if $(PORT),--port '$(PORT)') \
		$(if $(DEPENDS),--depends '$(DEPENDS)')
