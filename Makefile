# wsclose: the one entry point. `make help` lists the targets.
#
# Tool versions are pinned here and nowhere else. wasm-bindgen-cli must equal the
# wasm-bindgen library version in Cargo.lock exactly, so it is read from there.

WASM_PACK_VERSION   := 0.15.1
GECKODRIVER_VERSION := 0.37.1
# npm's binaryen ships a wasm-opt new enough for rustc's wasm (Debian's 108 is not); wasm-pack
# runs the one on PATH. Installed locally under target/ (npm registry only).
BINARYEN_VERSION    := 132.0.0
WASM_BINDGEN_VERSION := $(shell awk '/^name = "wasm-bindgen"$$/ { getline; gsub(/[^0-9.]/, ""); print }' Cargo.lock)
# WebKit: Debian's WebKitGTK WebDriver drives MiniBrowser, which has no headless mode, so it
# runs on a virtual X display (xvfb-run).
APT_PACKAGES        := chromium chromium-driver firefox-esr nginx webkit2gtk-driver xvfb xauth \
                       haproxy apache2 caddy
# The proxies e2e/tests/idle.rs starts in front of the servers (Debian's packages).
HAPROXY             := /usr/sbin/haproxy
APACHE              := /usr/sbin/apache2
CADDY               := /usr/bin/caddy
# The bench's peers (make bench only): Debian's Go and gorilla/websocket (built without module
# downloads), npm's ws, PyPI's websockets in a venv; all under target/peers.
PEER_APT_PACKAGES   := golang-go golang-github-gorilla-websocket-dev
NODE_WS_VERSION     := 8.23.0
PY_WEBSOCKETS_VERSION := 15.0.1
PEERS               := target/peers
NGINX               := /usr/sbin/nginx

BINARYEN_DIR := target/binaryen
WASM_OPT     := $(BINARYEN_DIR)/node_modules/.bin/wasm-opt
CHROMEDRIVER := /usr/bin/chromedriver
GECKODRIVER  := $(HOME)/.cargo/bin/geckodriver
WEBKITDRIVER := /usr/bin/WebKitWebDriver
XVFB_RUN     := /usr/bin/xvfb-run
ADDR         ?= 127.0.0.1:3030
WWW          := target/www
SERVER_DEBUG := target/debug/wsclose-server
SERVER_RELEASE := target/release/wsclose-server
# Runs a browser test command against a fresh server on a free port (e2e/src/bin/with-server.rs).
WITH_SERVER  := target/debug/with-server
# Seconds one wasm test binary may run. The fast suite needs ~10 s; the slow one waits
# for Chromium's 60 s closing-handshake timeout.
BROWSER_TEST_TIMEOUT := 60
SLOW_TEST_TIMEOUT    := 150

export PATH := $(HOME)/.cargo/bin:$(PATH)
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
WASM_PACK_TEST := wasm-pack --log-level warn test --headless --mode no-install
CHROME_TEST  := $(WASM_PACK_TEST) --chrome --chromedriver $(CHROMEDRIVER)
FIREFOX_TEST := $(WASM_PACK_TEST) --firefox --geckodriver $(GECKODRIVER)
# wasm-bindgen-test-runner's Safari mode speaks plain W3C WebDriver, which WebKitWebDriver
# serves; its default browser is MiniBrowser --automation. --safari selects the mode,
# --safaridriver the binary (wasm-pack needs both).
WEBKIT_TEST  := $(XVFB_RUN) -a $(WASM_PACK_TEST) --safari --safaridriver $(WEBKITDRIVER)

.DEFAULT_GOAL := help
.PHONY: help setup setup-wasm setup-browsers build build-wasm serve serve-cluster test lint unit e2e \
        test-browser test-chrome test-firefox test-webkit test-slow bench setup-peers check fmt clean

help: ## List the targets
	@awk 'BEGIN { FS = ":.*## " } /^[a-z0-9-]+:.*## / { printf "  make %-15s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

setup: setup-wasm setup-browsers ## Install everything missing (idempotent)

setup-wasm: ## Install the wasm32 target, wasm-pack, wasm-bindgen-cli and wasm-opt if missing
	@rustup target list --installed | grep -qx wasm32-unknown-unknown \
	  || rustup target add wasm32-unknown-unknown
	@wasm-pack --version 2>/dev/null | grep -qF " $(WASM_PACK_VERSION)" \
	  || cargo install --locked --force wasm-pack --version $(WASM_PACK_VERSION)
	@wasm-bindgen --version 2>/dev/null | grep -qF " $(WASM_BINDGEN_VERSION)" \
	  || cargo install --force wasm-bindgen-cli --version $(WASM_BINDGEN_VERSION)
	@$(WASM_OPT) --version 2>/dev/null | grep -qF "version $(firstword $(subst ., ,$(BINARYEN_VERSION)))" \
	  || npm install --prefix $(BINARYEN_DIR) --no-save --no-audit --no-fund binaryen@$(BINARYEN_VERSION)

setup-browsers: ## Install Chromium, ChromeDriver, Firefox ESR, WebKitGTK's driver, Xvfb, nginx, HAProxy, Apache, Caddy (apt), geckodriver
	@if ! command -v chromium >/dev/null || ! test -x $(CHROMEDRIVER) || ! command -v firefox-esr >/dev/null \
	    || ! test -x $(NGINX) || ! test -x $(WEBKITDRIVER) || ! test -x $(XVFB_RUN) \
	    || ! command -v xauth >/dev/null || ! test -x $(HAPROXY) || ! test -x $(APACHE) \
	    || ! test -x $(CADDY); then \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(APT_PACKAGES) >/dev/null; \
	fi
	@$(GECKODRIVER) --version 2>/dev/null | grep -qF " $(GECKODRIVER_VERSION)" \
	  || cargo install --locked --force geckodriver --version $(GECKODRIVER_VERSION) \
	  || cargo install --force geckodriver --version $(GECKODRIVER_VERSION)

build: setup-wasm build-wasm ## Build the server and the demo page (wasm) into target/www
	cargo build -p wsclose-server
	cargo build -p wsclose-e2e --bin with-server

# The most bytes the built wasm may have: every page view loads it. build-wasm fails past it;
# client-wasm/README.md says how it is built, what it measures and what twiggy showed.
WASM_MAX_BYTES := 150000
WASM_OUT       := $(WWW)/pkg/wsclose_client_bg.wasm

build-wasm:
	mkdir -p $(WWW)
	cp -R client-wasm/static/. $(WWW)/
	PATH="$(abspath $(BINARYEN_DIR))/node_modules/.bin:$$PATH" \
	  wasm-pack --log-level warn build client-wasm --mode no-install --target web --profile wasm-release \
	  --no-pack --out-dir ../$(WWW)/pkg --out-name wsclose_client
	@size=$$(wc -c < $(WASM_OUT)); \
	if [ "$$size" -gt $(WASM_MAX_BYTES) ]; then \
	  echo "$(WASM_OUT) is $$size bytes, over WASM_MAX_BYTES=$(WASM_MAX_BYTES) (client-wasm/README.md: what takes the room)" >&2; \
	  exit 1; \
	fi; \
	echo "$(WASM_OUT): $$size bytes (at most $(WASM_MAX_BYTES))"

serve: setup-wasm build-wasm ## Run the demo on http://127.0.0.1:3030 (ADDR=... to change)
	cargo run --release -p wsclose-server -- --addr $(ADDR) --static-dir $(WWW)

serve-cluster: setup build-wasm ## nginx on ADDR in front of two servers, restarted when they exit (Ctrl-C stops)
	cargo build --release -p wsclose-server
	ADDR=$(ADDR) deploy/serve-cluster.sh $(SERVER_RELEASE) --static-dir $(WWW)

test: setup build lint unit e2e test-browser ## Everything: clippy, unit, e2e, headless Chromium, Firefox, WebKit

# What the `wsclose` crate must never pull in with its default features.
NOT_IN_WSCLOSE := warp|hyper|hyper-util|clap|prometheus|tracing-subscriber

# `cargo package` builds the packaged crates without the workspace's profile: without debug info,
# as the workspace builds its dependencies, they reuse those builds instead of taking a second
# copy on the disk.
lint: ## rustfmt, clippy -D warnings (native, every wsclose feature, wasm), docs without warnings, the publishable crates packaged
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy -p wsclose --all-features --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" cargo doc -p wsclose --all-features --no-deps
	RUSTDOCFLAGS="-D warnings" cargo doc -p wsclose-server -p wsclose-check -p wsclose-backoff -p wsclose-bench -p wsclose-e2e --no-deps
	cargo clippy -p wsclose-client --target wasm32-unknown-unknown --all-targets -- -D warnings
	@if cargo tree -p wsclose -e normal --prefix none | grep -E '^($(NOT_IN_WSCLOSE)) '; then \
	  echo "wsclose's default features pull in the crates above"; exit 1; fi
	CARGO_PROFILE_DEV_DEBUG=false cargo package --quiet --allow-dirty -p wsclose -p wsclose-backoff -p wsclose-check

unit: ## Unit tests, no browser, no root (the lifecycle through real tungstenite under paused time; the client's pure logic, natively; the check's CLI)
	cargo test -p wsclose --all-features
	cargo test -p wsclose-server
	cargo test -p wsclose-check
	cargo test -p wsclose-backoff
	cargo test -p wsclose-bench
	cargo test -p wsclose-client --lib

e2e: build setup-peers ## End-to-end tests against the real server binary (and check against the peers)
	cargo test -p wsclose-e2e

test-browser: test-chrome test-firefox test-webkit ## The wasm probe tests in Chromium, Firefox and WebKit

test-chrome: setup build
	WASM_BINDGEN_TEST_TIMEOUT=$(BROWSER_TEST_TIMEOUT) $(WITH_SERVER) $(SERVER_DEBUG) -- \
	  $(CHROME_TEST) client-wasm --test browser -- --nocapture

test-firefox: setup build
	WASM_BINDGEN_TEST_TIMEOUT=$(BROWSER_TEST_TIMEOUT) $(WITH_SERVER) $(SERVER_DEBUG) -- \
	  $(FIREFOX_TEST) client-wasm --test browser -- --nocapture

test-webkit: setup build
	WASM_BINDGEN_TEST_TIMEOUT=$(BROWSER_TEST_TIMEOUT) $(WITH_SERVER) $(SERVER_DEBUG) -- \
	  $(WEBKIT_TEST) client-wasm --test browser -- --nocapture

test-slow: setup build ## The full-length no-drain and lingering-TCP cases in all three engines (~5 min)
	WASM_BINDGEN_TEST_TIMEOUT=$(SLOW_TEST_TIMEOUT) $(WITH_SERVER) $(SERVER_DEBUG) -- \
	  $(CHROME_TEST) client-wasm --test slow -- --nocapture
	WASM_BINDGEN_TEST_TIMEOUT=$(SLOW_TEST_TIMEOUT) $(WITH_SERVER) $(SERVER_DEBUG) -- \
	  $(FIREFOX_TEST) client-wasm --test slow -- --nocapture
	WASM_BINDGEN_TEST_TIMEOUT=$(SLOW_TEST_TIMEOUT) $(WITH_SERVER) $(SERVER_DEBUG) -- \
	  $(WEBKIT_TEST) client-wasm --test slow -- --nocapture
	cargo test -p wsclose-e2e --test check_browser -- --ignored --nocapture
	cargo test -p wsclose-e2e --test idle_browser -- --ignored --nocapture

setup-peers: ## Install and build the bench's peers if missing (gorilla, Node ws, Python websockets)
	@if ! command -v go >/dev/null || ! test -d /usr/share/gocode/src/github.com/gorilla/websocket; then \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(PEER_APT_PACKAGES) >/dev/null; \
	fi
	@test -x $(PEERS)/gorilla -a $(PEERS)/gorilla -nt bench/peers/gorilla.go \
	  || GOPATH=/usr/share/gocode GO111MODULE=off GOCACHE=$(abspath $(PEERS))/gocache \
	     go build -o $(PEERS)/gorilla bench/peers/gorilla.go
	@grep -qs '"version": "$(NODE_WS_VERSION)"' $(PEERS)/node/node_modules/ws/package.json \
	  || npm install --prefix $(PEERS)/node --no-save --no-audit --no-fund ws@$(NODE_WS_VERSION)
	@$(PEERS)/venv/bin/pip show websockets 2>/dev/null | grep -qx 'Version: $(PY_WEBSOCKETS_VERSION)' \
	  || { python3 -m venv $(PEERS)/venv && \
	       $(PEERS)/venv/bin/pip install -q websockets==$(PY_WEBSOCKETS_VERSION); }

bench: setup build setup-peers ## Close latency vs TCP RTT and peers, browser latency, scale to the open-file limit (BENCH_ARGS=--quick)
	cargo build --release -p wsclose-server -p wsclose-bench
	cargo build --release -p wsclose --features warp,env --example warp
	cargo run --release -p wsclose-bench -- $(BENCH_ARGS)

check: ## Diagnose any server: make check URL=ws://host:port/path [CHECK_ARGS="--json --max-size N"]
	@test -n "$(URL)" || { echo "usage: make check URL=ws://HOST:PORT/PATH [CHECK_ARGS=...]" >&2; exit 2; }
	@cargo run --quiet --release -p wsclose-check -- $(CHECK_ARGS) "$(URL)"

fmt: ## Format the whole workspace
	cargo fmt --all

clean: ## Remove build output
	cargo clean
	rm -rf client-wasm/pkg
