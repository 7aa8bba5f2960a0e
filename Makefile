# Fulcrum load-balancer appliance. `make lab` builds the image and boots it in
# the QEMU lab; `make test` runs every test (unit, namespace and QEMU). Both
# install what they need on a fresh Debian machine first (as root).

GO       ?= go
CONFIG   ?= qemu/configs/lb1.yaml
OUT      ?= out
CACHE    ?= .cache
GOFLAGS  ?=
export GOFLAGS
# Fuzzing time per Fuzz* target: `make fuzz` (long runs), `make fuzz-ci` (a
# short pass of every target on each CI run).
FUZZTIME    ?= 2m
FUZZTIME_CI ?= 8s
# The QEMU package; every other package is a unit package (host tests,
# network namespaces included).
QEMU_PKG = ./qemu

.PHONY: all deps image lab lab-down test unit qemu-test fuzz fuzz-ci bench bench-report vet fmt clean check-config import-keepalived

all: image

# Debian packages the build and tests need (idempotent; skipped when present).
DEB_PKGS = qemu-system-x86 qemu-utils iputils-ping socat ipxe-qemu ovmf iproute2 nftables dpkg kmod keepalived nginx-light wrk ipvsadm tcpdump libdevmapper1.02.1 chromium
deps:
	@missing=$$(for p in $(DEB_PKGS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

image: deps
	$(GO) run ./image/cmd/fulcrum-image -config $(CONFIG) -out $(OUT) -cache $(CACHE)

# Validate CONFIG with the appliance's own loader: every problem as
# `field.path (line N): reason`, non-zero exit when invalid. Downloads nothing.
check-config:
	$(GO) run ./image/cmd/fulcrum-image check-config $(CONFIG)

# Convert a keepalived.conf: make import-keepalived IN=keepalived.conf
# [BASE=config.yaml] [OUT=fulcrum.yaml] [ID=config-id]. Lists every directive
# it cannot convert; with BASE (our network section) the result is validated.
import-keepalived:
	@test -n "$(IN)" || { echo "usage: make import-keepalived IN=keepalived.conf [BASE=config.yaml] [OUT=fulcrum.yaml]"; exit 2; }
	$(GO) run ./image/cmd/fulcrum-image import-keepalived -in $(IN) $(if $(BASE),-base $(BASE)) $(if $(filter command line,$(origin OUT)),-out $(OUT)) $(if $(ID),-config-id $(ID))

lab: image
	$(GO) run ./qemu/cmd/fulcrum-lab up -out $(OUT)

lab-down:
	$(GO) run ./qemu/cmd/fulcrum-lab down

vet:
	$(GO) vet ./...
	$(GO) vet -tags guest,bench ./...   # the guest-only tests and the guest benchmark (build tags) too
	@bad=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$bad" ]; then echo "not gofmt-clean: $$bad"; exit 1; fi

# Everything CI runs: vet, unit and namespace tests with the race detector,
# a short pass of every fuzz target, then the QEMU suite against the freshly
# built image.
test: image vet unit fuzz-ci qemu-test

# Every package except the QEMU suite, with -race.
unit:
	$(GO) test -race -count=1 -timeout 15m $$($(GO) list ./... | grep -vx 'github.com/fulcrum-lb/fulcrum/qemu')

# The QEMU tests (boot guests; they use $(OUT) from `make image`).
qemu-test:
	$(GO) test -count=1 -timeout 40m $(QEMU_PKG)

# Every Fuzz* target for FUZZTIME each; a crash fails and leaves its input
# in the package's testdata/fuzz/<target>/ as a regression seed.
fuzz:
	FUZZTIME=$(FUZZTIME) GO=$(GO) .ci/fuzz

fuzz-ci:
	FUZZTIME=$(FUZZTIME_CI) GO=$(GO) .ci/fuzz

bench: image
	$(GO) test -run '^$$' -bench . -benchtime 1x ./...
	FULCRUM_IPVS_BENCH=$(abspath $(OUT))/ipvs-bench.md $(GO) test -tags bench -count=1 -timeout 30m -run '^TestIPVSBenchReport$$' $(QEMU_PKG)
	FULCRUM_SYNC_BENCH=$(abspath $(OUT))/sync-bench.md $(GO) test -tags bench -count=1 -timeout 15m -run '^TestSyncBenchReport$$' $(QEMU_PKG)
	FULCRUM_STALL_BENCH=$(abspath $(OUT))/stall-bench.md $(GO) test -tags bench -count=1 -timeout 15m -run '^TestStallBenchReport$$' $(QEMU_PKG)
	FULCRUM_DATAPLANE_BENCH=$(abspath $(OUT))/dataplane-bench.md $(GO) test -tags bench -count=1 -timeout 15m -run '^TestDataplaneBenchReport$$' $(QEMU_PKG)
	FULCRUM_BOOT_BENCH=$(abspath $(OUT))/boot-bench.md $(GO) test -tags bench -count=1 -timeout 10m -run '^TestBootBenchReport$$' $(QEMU_PKG)
	FULCRUM_L7_BENCH=$(abspath $(OUT))/l7-bench.md $(GO) test -tags bench -count=1 -timeout 10m -run '^TestL7BenchReport$$' ./services/l7/
	$(MAKE) --no-print-directory bench-report

# out/bench.md: every report of this run in one file (each figure beside its
# reference, measured in the same run).
bench-report:
	@{ echo "# Fulcrum benchmarks"; echo; echo "Generated $$(date -u '+%F %H:%M UTC') from:"; \
	  for f in $(OUT)/*bench*.md; do [ "$$f" = "$(OUT)/bench.md" ] || echo "- \`$$(basename $$f)\`"; done; \
	  for f in $(OUT)/*bench*.md; do [ "$$f" = "$(OUT)/bench.md" ] || { echo; sed 's/^#/##/' "$$f"; }; done; } > $(OUT)/bench.md
	@echo "wrote $(OUT)/bench.md"

clean:
	rm -rf $(OUT) $(CACHE)/build-*
