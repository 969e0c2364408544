# cruncan — `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help
STACK := scripts/stack.sh
# Programs and tests read these; the defaults in code are the same, this just makes them visible.
ENV := eval "$$($(STACK) env)"
# scripts/tools.sh installs it there (pinned); it lists dependencies no code uses.
MACHETE := $(HOME)/.cache/cruncan/cargo-machete/bin/cargo-machete

PHONY_EXTRA := bench-flow bench-reference bench-notes fuzz-api stack-observability flow-docker bench bench-quick bench-durable bench-publish check-collector up-temporal down-temporal
.PHONY: $(PHONY_EXTRA) help up down status env run demo test fmt lint unit book book-serve tools

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

up: ## start PostgreSQL, Kafka, Redis, NATS on loopback (idempotent) and print their addresses
	@$(STACK) up

down: ## stop everything `make up` started
	@$(STACK) down
	@scripts/temporal.sh down

up-temporal: ## start the Temporal dev server on 127.0.0.1:17233 (CLI built once, ~4–8 min, cached)
	@scripts/temporal.sh up

down-temporal: ## stop the Temporal dev server
	@scripts/temporal.sh down

status: ## one line per service
	@$(STACK) status
	@scripts/temporal.sh status || true  # optional: only reference/temporal needs it

env: ## the environment variables programs and tests read (eval "$(make -s env)")
	@$(STACK) env
	@scripts/temporal.sh env

run: ## the whole flow: stack, one (:8080), two (:8081), stub (:8090); Ctrl-C stops it
	@scripts/run-flow.sh

demo: ## one request end to end (starts the flow if it is not running); exits 0 only if it arrived
	@scripts/demo.sh

bench: ## the flow beside its limits, then the reference systems → target/bench/{report.md,summary.json,reference.md}
	@scripts/bench.sh
	@scripts/bench-reference.sh

bench-flow: ## only the flow's scenarios (scripts/bench.sh)
	@scripts/bench.sh

bench-reference: ## only the reference systems' benchmarks (email, saga, services, temporal, notes)
	@scripts/bench-reference.sh

bench-quick: ## the flow's scenarios in about two minutes (8 and 32 connections, 3 s steps), for iterating
	@BENCH_ARGS="--quick $${BENCH_ARGS:-}" scripts/bench.sh

bench-durable: ## the flow's bench against a PostgreSQL that really flushes commits (fsync, synchronous_commit on) → target/bench-durable/report.md
	@CRUNCAN_PG_DURABLE=1 scripts/stack.sh up >/dev/null && { BENCH_OUT=target/bench-durable scripts/bench.sh; rc=$$?; CRUNCAN_PG_DURABLE=0 scripts/stack.sh up >/dev/null; exit $$rc; }

bench-notes: ## notes gateway: 500 WebSocket clients at 100 events/s beside NATS core fan-out → target/notes-bench/report.md
	@$(STACK) up >/dev/null
	$(ENV); cargo run --release --example notes_bench

bench-publish: ## copy the last report into the book's performance chapter (a deliberate step)
	@test -f target/bench/report.md || { echo "no target/bench/report.md: run make bench first" >&2; exit 1; }
	cp target/bench/report.md book/src/ops/bench-report.md
	@if [ -f target/bench/reference.md ]; then cp target/bench/reference.md book/src/ops/bench-reference.md; fi
	@if [ -f target/bench-durable/report.md ]; then cp target/bench-durable/report.md book/src/ops/bench-durable.md; fi

stack-observability: ## collector, Tempo, Loki, Prometheus, Grafana (:3000) — needs a Docker engine
	@if docker info >/dev/null 2>&1; then \
	  docker compose -f grafanastack/docker-compose.yaml up -d --wait && \
	  echo "Grafana: http://127.0.0.1:3000 — export OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 before make run"; \
	else \
	  echo "make stack-observability needs a Docker engine (docker info does not answer here)." >&2; \
	  echo "Its configuration is still checked by make test (grafanastack/check)." >&2; exit 1; \
	fi

fuzz-api: ## Schemathesis against service one's OpenAPI document (bounded; also part of make test)
	@scripts/schemathesis.sh

check-collector: ## validate the collector config with a real collector (built once with the Collector Builder)
	@scripts/check-collector.sh

flow-docker: ## the whole flow in containers: stack + one + two + stub (needs a Docker engine)
	docker compose -f deploy/compose.yaml --profile flow up --build --wait

tools: ## install protoc, mdbook, mdbook-mermaid and cargo-machete when missing
	@scripts/tools.sh

test: up tools ## the one test command: fmt, clippy, unused dependencies, every test against the real stack, the book
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	$(MACHETE)
	@scripts/temporal.sh up
	@$(ENV); cargo run -q -p cruncan-testkit --bin prune-test-topics
	$(ENV); cargo test --workspace --no-fail-fast
	@scripts/schemathesis.sh
	@scripts/check-collector.sh
	@$(MAKE) --no-print-directory book

unit: ## only the tests that need no running service
	cargo test --workspace --lib

fmt: ## format the code
	cargo fmt --all

lint: tools ## clippy (warnings are errors) and cargo-machete (no unused dependency)
	cargo clippy --workspace --all-targets -- -D warnings
	$(MACHETE)

book: tools ## check every include, build the book into book/book, render every page in headless Chromium
	cargo run -q -p book-check
	@[ -f book/mermaid.min.js ] || mdbook-mermaid install book >/dev/null
	mdbook build book
	cargo run -q -p book-check --bin book-browser

book-serve: tools ## serve the book on http://127.0.0.1:3001 with live reload (Grafana has :3000)
	@[ -f book/mermaid.min.js ] || mdbook-mermaid install book >/dev/null
	mdbook serve book --hostname 127.0.0.1 --port 3001
