# nodeboot: two commands on a fresh machine.
#   make demo   installs what is missing, builds examples/hello, boots it, prints its URL
#   make test   installs what is missing, runs every test (QEMU end-to-end included)

GO      ?= go
BIN     := bin/nodeboot
VERSION := $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
# The module proxy the CLI fetches the kernel from when GOPROXY is unset at
# run time: this build host's (read from the go command's configuration).
GOPROXY_DEFAULT := $(shell $(GO) env GOPROXY)
RELEASE_LDFLAGS := -X github.com/nodeboot/nodeboot/internal/cli.Version=$(VERSION) \
           -X 'github.com/nodeboot/nodeboot/internal/goproxy.DefaultProxy=$(GOPROXY_DEFAULT)'
LDFLAGS := $(RELEASE_LDFLAGS) \
           -X github.com/nodeboot/nodeboot/internal/initbuild.SourceDir=$(CURDIR)
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Debian packages the tests and the demo need, each checked by a file it
# installs: QEMU and OVMF to boot images, systemd-boot for disk images,
# qemu-img for the VM and cloud formats, QEMU's arm64 emulator and UEFI
# firmware for arm64 images, gcc
# for the native-addon test, iproute2 for the network tests, and the
# independent readers the image-writer tests compare against; dmsetup for
# the store's I/O-error tests; chromium for the status page's browser test;
# busybox-static for the shell of apps with "shell": true; g++, make and
# python3 for the compatibility suite's better-sqlite3, which npm compiles
# (node-gyp) when no prebuilt binary can be fetched; chrony as the NTP
# server the clock test runs on the host (it never sets the host clock: -x).
NEED := qemu-system-x86:/usr/bin/qemu-system-x86_64 \
        qemu-utils:/usr/bin/qemu-img \
        qemu-system-arm:/usr/bin/qemu-system-aarch64 \
        qemu-efi-aarch64:/usr/share/qemu-efi-aarch64/QEMU_EFI.fd \
        ovmf:/usr/share/ovmf/OVMF.fd \
        systemd-boot-efi:/usr/lib/systemd/boot/efi/systemd-bootx64.efi \
        gcc:/usr/bin/gcc \
        iproute2:/usr/sbin/ip \
        fdisk:/usr/sbin/sfdisk \
        mtools:/usr/bin/mtype \
        dosfstools:/usr/sbin/fsck.vfat \
        squashfs-tools:/usr/bin/unsquashfs \
        e2fsprogs:/usr/sbin/e2fsck \
        dmsetup:/usr/sbin/dmsetup \
        chromium:/usr/bin/chromium \
        busybox-static:/bin/busybox \
        g++:/usr/bin/g++ \
        make:/usr/bin/make \
        python3:/usr/bin/python3 \
        chrony:/usr/sbin/chronyd

.PHONY: all build init-binaries release npm demo test test-long node-tests fuzz deps kernel-deps check bench clean

all: build

# PID 1 for every supported architecture, embedded into the CLI by the
# nodeboot_embed tag (internal/initbuild). The flags are initbuild's own
# (a test checks), so the same source gives the same init either way.
INIT_DIR    ?= internal/initbuild/embedded
INIT_ARCHES ?= amd64 arm64
init-binaries:
	@mkdir -p $(INIT_DIR)
	@set -e; for a in $(INIT_ARCHES); do \
		CGO_ENABLED=0 GOOS=linux GOARCH=$$a $(GO) build -trimpath -ldflags='-s -w -buildid=' -o $(INIT_DIR)/nodeboot-init-$$a ./cmd/nodeboot-init; \
	done

build: init-binaries
	$(GO) build -tags nodeboot_embed -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/nodeboot

# npm packs the launcher package and one package per platform (npm/pack.js)
# into dist/npm/*.tgz; nothing is published.
NPM_VERSION ?= 0.0.0-dev
NPM_OUT     ?= dist/npm
npm: release
	rm -rf $(NPM_OUT)
	node npm/pack.js $(NPM_VERSION) dist/bin $(NPM_OUT)

# release cross-compiles the self-contained CLI (inits embedded, no source
# path stamped) for every platform the npm package ships.
RELEASE_PLATFORMS := linux/amd64 linux/arm64 darwin/arm64 darwin/amd64
release: init-binaries
	@set -e; for p in $(RELEASE_PLATFORMS); do \
		echo "release $$p"; \
		CGO_ENABLED=0 GOOS=$${p%/*} GOARCH=$${p#*/} $(GO) build -tags nodeboot_embed -trimpath \
			-ldflags "-s -w $(RELEASE_LDFLAGS)" -o dist/bin/$${p%/*}-$${p#*/}/nodeboot ./cmd/nodeboot; \
	done

# deps installs what is missing, and only that.
deps:
	@missing=""; \
	for n in $(NEED); do [ -e "$${n#*:}" ] || missing="$$missing $${n%%:*}"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		$(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	fi
	@command -v node >/dev/null || { echo "node is missing: install Node.js (it also brings npm, whose registry configuration nodeboot uses)"; exit 1; }

demo: deps build
	./$(BIN) run examples/hello

check:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	@# The CLI also runs on macOS: it must compile for darwin (its
	@# packages' tests import Linux-only ones, so vet runs on linux only).
	GOOS=darwin GOARCH=arm64 $(GO) build -o /dev/null ./cmd/nodeboot
	@# and vet, for darwin, the packages the CLI is made of (the code paths
	@# that differ there: the library source, file identities), but
	@# internal/cli and internal/client, whose tests start a node's
	@# Linux-only packages (the build line above compiles them for darwin).
	GOOS=darwin GOARCH=arm64 $(GO) vet $$(GOOS=darwin GOARCH=arm64 $(GO) list -deps ./cmd/nodeboot | grep '^github.com/nodeboot/nodeboot' | grep -v -e '/internal/client$$' -e '/internal/cli$$')

test: deps check fuzz
	NODEBOOT_E2E=1 $(GO) test -timeout 80m ./...

# test-long runs the series too long for `make test` (many power cuts per
# scenario, soak cycles): the same tests, with NODEBOOT_LONG=1 asking each for
# its full count. Their last figures are in docs/reliability.md.
test-long: deps kernel-deps check
	NODEBOOT_E2E=1 NODEBOOT_LONG=1 $(GO) test -timeout 600m ./...

# node-tests measures nodeboot from outside with Node's own tests (the
# OS-boundary part of test/parallel and a wider sample, from the nodejs
# source package of the Debian archive apt is configured for), run by the
# same node on the host and in a booted image; figures in
# docs/node-tests.md. An hour or more under TCG; test-long runs it too.
node-tests: deps
	NODEBOOT_E2E=1 NODEBOOT_LONG=1 $(GO) test -timeout 300m -run '^TestNodeSuite$$' -v ./e2e

# fuzz gives every FuzzXxx a short run beyond its checked-in corpus
# (testdata/fuzz/), on tmpfs so that targets writing files (the bundle
# extractor) run at memory speed. FUZZTIME=1m for a longer look. A run
# that ends in "context deadline exceeded" without a failing input is the
# fuzzer's own deadline firing mid-minimisation (a Go fuzzing flake, seen
# here with FuzzParseMemory), so it is tried once more;
# a real failure writes its input to testdata/fuzz/ and stops the build.
FUZZTIME ?= 4s
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
		for fn in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "fuzz $$pkg $$fn"; \
			for try in 1 2; do \
				TMPDIR=/dev/shm $(GO) test -run '^$$' -fuzz "^$$fn$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 2s $$pkg >/dev/shm/nodeboot-fuzz.log 2>&1 && break; \
				if [ $$try = 1 ] && grep -q 'context deadline exceeded' /dev/shm/nodeboot-fuzz.log && ! grep -q 'Failing input written' /dev/shm/nodeboot-fuzz.log; then \
					echo "  (the fuzzer's own deadline fired with no failing input: once more)"; continue; fi; \
				cat /dev/shm/nodeboot-fuzz.log; exit 1; \
			done; \
		done; \
	done

# npm-js packs the nodeboot JS module (js/nodeboot; docs/js.md) for npm,
# into bin/npm/; `npm publish bin/npm/nodeboot-*.tgz` publishes it.
npm-js:
	mkdir -p bin/npm && cd js/nodeboot && npm pack --pack-destination $(CURDIR)/bin/npm

# The benchmark also builds a Debian peer (debootstrap, mkfs.ext4) and loads
# each guest with wrk.
BENCH_NEED := debootstrap:/usr/sbin/debootstrap e2fsprogs:/usr/sbin/mkfs.ext4 wrk:/usr/bin/wrk

bench: deps kernel-deps build
	@missing=""; \
	for n in $(BENCH_NEED); do [ -e "$${n#*:}" ] || missing="$$missing $${n%%:*}"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		$(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	fi
	@# The tag: the inits `build` embedded, as the CLI a user runs has them
	@# (the warm rebuild times them; compiling PID 1 is not part of a build).
	$(GO) run -tags nodeboot_embed ./bench -o docs/benchmarks.md $(BENCH_FLAGS)

# nodeboot's own kernel (`nodeboot kernel build`, --kernel nodeboot-vm|pc) is
# built from Debian's linux-source with the kernel's build tools. Only the
# long tests and the benchmark build it: the first build compiles about
# 1,300 files (hours on a loaded 2-core machine, docs/performance.md), then
# it is cached.
KERNEL_NEED := linux-source:/usr/share/doc/linux-source flex:/usr/bin/flex bison:/usr/bin/bison \
               bc:/usr/bin/bc libelf-dev:/usr/include/gelf.h make:/usr/bin/make zstd:/usr/bin/zstd

kernel-deps:
	@missing=""; \
	for n in $(KERNEL_NEED); do [ -e "$${n#*:}" ] || missing="$$missing $${n%%:*}"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		$(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	fi

clean:
	rm -rf bin out dist $(INIT_DIR)/nodeboot-init-*
