package cli

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"time"

	"github.com/spf13/cobra"

	"github.com/nodeboot/nodeboot/internal/disk"
	"github.com/nodeboot/nodeboot/internal/goproxy"
	"github.com/nodeboot/nodeboot/internal/noderuntime"
	"github.com/nodeboot/nodeboot/internal/usercache"
	"github.com/nodeboot/nodeboot/internal/vm"
)

// doctorHost is what doctor asks of the machine; tests pass fakes.
type doctorHost struct {
	goos        string
	findQEMU    func() (string, error)
	kvmUsable   func() bool
	firmware    func() (string, error)
	exists      func(path string) bool
	cacheDir    func() (string, error)
	freeBytes   func(path string) (int64, error)
	cacheBytes  func(root string) (int64, error)
	registryURL func(ctx context.Context) (string, error)
	proxyURLs   func() ([]string, error)
	reach       func(ctx context.Context, url string) error
}

// minFree is the free space a build and a run image want in the cache: an
// initramfs of a typical app is ~110 MiB, a disk image writes ~300 MiB of
// its 2 GiB, node and kernel ~150 MiB.
const minFree = 2 << 30

func realDoctorHost() doctorHost {
	client := &http.Client{Timeout: 15 * time.Second}
	return doctorHost{
		goos:      runtime.GOOS,
		findQEMU:  func() (string, error) { return vm.FindQEMU("amd64") },
		kvmUsable: vm.KVMUsable,
		firmware:  vm.FindFirmware,
		exists:    func(p string) bool { _, err := os.Stat(p); return err == nil },
		cacheDir:  usercache.Root,
		freeBytes: freeBytes,
		cacheBytes: func(root string) (int64, error) {
			ents, err := usercache.List(root)
			var n int64
			for _, e := range ents {
				n += e.Bytes
			}
			return n, err
		},
		registryURL: func(ctx context.Context) (string, error) {
			r, err := noderuntime.FindRegistry(ctx)
			return r.URL, err
		},
		proxyURLs: (&goproxy.Fetcher{}).ProxyURLs,
		reach: func(ctx context.Context, url string) error {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			if err != nil {
				return err
			}
			resp, err := client.Do(req)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode >= 500 {
				return fmt.Errorf("%s", resp.Status)
			}
			return nil
		},
	}
}

func newDoctor(stdout, stderr io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "doctor",
		Short: "Check what building and running images needs on this machine",
		Long: `Checks QEMU, KVM, the UEFI firmware and systemd-boot (for disk images),
free disk space in the cache, that the npm registry (for node) and the Go
module proxy (for the kernel) answer, and the cache's size. Each line is OK or
says what to do; the exit status is 1 when something needed is missing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return doctor(cmd.Context(), realDoctorHost(), stdout)
		},
	}
}

// doctor prints one line per check. Missing QEMU, firmware or systemd-boot
// only stops `run` or disk images, and KVM only makes boots slower, so they
// are warnings; what stops every build (no disk, no registry, no proxy) is
// a failure.
func doctor(ctx context.Context, h doctorHost, w io.Writer) error {
	failed := 0
	line := func(ok bool, fatal bool, what, msg string) {
		tag := "ok  "
		if !ok {
			tag = "warn"
			if fatal {
				tag = "FAIL"
				failed++
			}
		}
		fmt.Fprintf(w, "%s %-14s %s\n", tag, what, msg)
	}
	if p, err := h.findQEMU(); err != nil {
		line(false, false, "QEMU", "missing, needed by `nodeboot run` (build works without): "+err.Error())
	} else {
		line(true, false, "QEMU", p)
	}
	switch {
	case h.goos != "linux":
		line(true, false, "KVM", "not on "+h.goos+": QEMU runs guests under TCG (slower); build works the same")
	case h.kvmUsable():
		line(true, false, "KVM", "/dev/kvm is usable")
	default:
		line(false, false, "KVM", "/dev/kvm is missing or not writable: guests run under TCG, several times slower; enable virtualisation (or nested virtualisation) and add yourself to the kvm group (sudo usermod -aG kvm $USER)")
	}
	if p, err := h.firmware(); err != nil {
		line(false, false, "UEFI firmware", "needed to run disk images with --boot uefi: "+err.Error())
	} else {
		line(true, false, "UEFI firmware", p)
	}
	if h.exists(disk.DefaultSystemdBoot) {
		line(true, false, "systemd-boot", disk.DefaultSystemdBoot)
	} else {
		line(false, false, "systemd-boot", "missing "+disk.DefaultSystemdBoot+", needed by --format disk: install it (Debian/Ubuntu: sudo apt-get install systemd-boot-efi)")
	}
	root, err := h.cacheDir()
	if err != nil {
		line(false, true, "cache", err.Error())
	} else {
		free, err := h.freeBytes(root)
		switch {
		case err != nil:
			line(false, false, "free disk", fmt.Sprintf("cannot tell for %s: %v", root, err))
		case free < minFree:
			line(false, true, "free disk", fmt.Sprintf("%s free where %s lives: builds need about %s; free some space (nodeboot cache prune) or set XDG_CACHE_HOME to a bigger disk", humanBytes(free), root, humanBytes(minFree)))
		default:
			line(true, false, "free disk", humanBytes(free)+" free for "+root)
		}
		if n, err := h.cacheBytes(root); err != nil {
			line(false, false, "cache size", err.Error())
		} else {
			line(true, false, "cache size", humanBytes(n)+" in "+root+" (nodeboot cache ls, nodeboot cache prune)")
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if u, err := h.registryURL(ctx); err != nil {
		line(false, true, "npm registry", err.Error())
	} else if err := h.reach(ctx, u); err != nil {
		line(false, true, "npm registry", fmt.Sprintf("%s does not answer (%v): node versions other than the host's cannot be fetched; check the network, or npm's registry setting (npm config get registry)", u, err))
	} else {
		line(true, false, "npm registry", u)
	}
	if urls, err := h.proxyURLs(); err != nil {
		line(false, true, "module proxy", err.Error())
	} else if len(urls) == 0 {
		line(false, true, "module proxy", "GOPROXY names no proxy: the default kernel cannot be fetched; set GOPROXY to a module proxy, or pass --kernel PATH")
	} else if err := h.reach(ctx, urls[0]+"/"); err != nil {
		line(false, true, "module proxy", fmt.Sprintf("%s does not answer (%v): the default kernel cannot be fetched the first time; check the network and GOPROXY, or pass --kernel PATH", urls[0], err))
	} else {
		line(true, false, "module proxy", urls[0])
	}
	if failed > 0 {
		return fmt.Errorf("%d check(s) failed: see the FAIL lines above", failed)
	}
	return nil
}

func parentDir(p string) string {
	for i := len(p) - 1; i > 0; i-- {
		if os.IsPathSeparator(p[i]) {
			return p[:i]
		}
	}
	return p
}
