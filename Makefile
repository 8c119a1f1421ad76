# aortagw build. `make demo` and `make test` are the two set-up commands the
# README promises: each installs what it needs (via `make deps`) first.
GO       ?= go
BIN      := bin/aortagw
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
# Debian packages the tests and the demo need.
APT_PKGS := softhsm2 opensc xmlsec1 slapd ldap-utils libxml2-utils
DEMO_DIR ?= $(CURDIR)/.demo
# Count-based: time-based -fuzztime can end in a spurious "context deadline exceeded" (golang/go#75804).
FUZZTIME ?= 3000x
TEST_TIMEOUT ?= 40m

.PHONY: all build test test-nocgo demo bench fuzz lint deps clean

all: build

deps:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then echo "deps: all present ($(APT_PKGS))"; exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then \
	  echo "deps: missing Debian packages:$$missing" >&2; \
	  echo "deps: not root; run: sudo apt-get update && sudo apt-get install -y$$missing" >&2; exit 1; fi; \
	echo "deps: installing$$missing"; \
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null

build:
	CGO_ENABLED=1 $(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/aortagw

# Everything but pkcs11 must build without cgo (CONVENTIONS.md 5).
test-nocgo:
	CGO_ENABLED=0 $(GO) build ./...
	CGO_ENABLED=0 $(GO) vet ./...

test: deps test-nocgo
	$(GO) vet ./...
	CGO_ENABLED=1 AORTAGW_REQUIRE_ALL=1 $(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...

demo: deps build
	./$(BIN) demo --dir $(DEMO_DIR)

# Benchmarks behind docs/benchmarks.md.
bench: deps
	CGO_ENABLED=1 $(GO) test -run '^$$' -bench . -benchmem -count=1 -timeout 60m ./...

# A short run of every fuzz target.
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
	  for f in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/func //'); do \
	    echo "fuzz $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; done

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@latest ./...
	@$(GO) run golang.org/x/vuln/cmd/govulncheck@latest ./... || \
	  { echo "govulncheck failed (it needs the vulnerability database at vuln.go.dev; offline machines cannot reach it)"; exit 1; }

clean:
	rm -rf bin $(DEMO_DIR)
