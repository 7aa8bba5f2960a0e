# Fulcrum load-balancer appliance. `make lab` builds the image and boots it in
# the QEMU lab; `make test` runs every test (unit, namespace and QEMU). Both
# install what they need on a fresh Debian machine first (as root).

GO       ?= go
CONFIG   ?= qemu/configs/lb1.yaml
OUT      ?= out
CACHE    ?= .cache
GOFLAGS  ?=
export GOFLAGS

.PHONY: all deps image lab lab-down test unit qemu-test bench vet fmt clean check-config import-keepalived

all: image

# Debian packages the build and tests need (idempotent; skipped when present).
DEB_PKGS = qemu-system-x86 qemu-utils iputils-ping socat ipxe-qemu ovmf iproute2 nftables dpkg kmod keepalived nginx-light ipvsadm tcpdump libdevmapper1.02.1
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
	@bad=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$bad" ]; then echo "not gofmt-clean: $$bad"; exit 1; fi

# Unit and namespace tests, then the QEMU suite against the freshly built image.
test: image vet
	$(GO) test -count=1 -timeout 20m ./...

bench: image
	$(GO) test -run '^$$' -bench . -benchtime 1x ./...

clean:
	rm -rf $(OUT) $(CACHE)/build-*
