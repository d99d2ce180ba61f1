package cli

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
)

func fakeHost() doctorHost {
	return doctorHost{
		goos:        "linux",
		findQEMU:    func() (string, error) { return "/usr/bin/qemu-system-x86_64", nil },
		kvmUsable:   func() bool { return true },
		firmware:    func() (string, error) { return "/usr/share/ovmf/OVMF.fd", nil },
		exists:      func(string) bool { return true },
		cacheDir:    func() (string, error) { return "/home/u/.cache/nodeboot", nil },
		freeBytes:   func(string) (int64, error) { return 50 << 30, nil },
		cacheBytes:  func(string) (int64, error) { return 300 << 20, nil },
		registryURL: func(context.Context) (string, error) { return "http://registry.test/", nil },
		proxyURLs:   func() ([]string, error) { return []string{"http://proxy.test"}, nil },
		reach:       func(context.Context, string) error { return nil },
	}
}

func TestDoctor(t *testing.T) {
	for _, c := range []struct {
		name   string
		break_ func(*doctorHost)
		fail   bool
		want   string // the line about the broken thing
	}{
		{"all well", func(*doctorHost) {}, false, "ok   module proxy   http://proxy.test"},
		{"no QEMU", func(h *doctorHost) {
			h.findQEMU = func() (string, error) { return "", errors.New("qemu-system-x86_64 not found: install QEMU") }
		}, false, "warn QEMU           missing, needed by `nodeboot run` (build works without): qemu-system-x86_64 not found: install QEMU"},
		{"no KVM", func(h *doctorHost) { h.kvmUsable = func() bool { return false } }, false, "warn KVM            /dev/kvm is missing or not writable"},
		{"macOS", func(h *doctorHost) { h.goos = "darwin"; h.kvmUsable = func() bool { panic("KVM checked on macOS") } }, false, "ok   KVM            not on darwin"},
		{"no firmware", func(h *doctorHost) {
			h.firmware = func() (string, error) { return "", errors.New("no UEFI firmware (OVMF) found") }
		}, false, "warn UEFI firmware  needed to run disk images"},
		{"no systemd-boot", func(h *doctorHost) { h.exists = func(string) bool { return false } }, false, "sudo apt-get install systemd-boot-efi"},
		{"disk full", func(h *doctorHost) { h.freeBytes = func(string) (int64, error) { return 100 << 20, nil } }, true, "FAIL free disk      100 MiB free"},
		{"registry down", func(h *doctorHost) {
			h.reach = func(_ context.Context, u string) error {
				if strings.Contains(u, "registry") {
					return errors.New("connection refused")
				}
				return nil
			}
		}, true, "FAIL npm registry   http://registry.test/ does not answer (connection refused)"},
		{"proxy down", func(h *doctorHost) {
			h.reach = func(_ context.Context, u string) error {
				if strings.Contains(u, "proxy") {
					return errors.New("timeout")
				}
				return nil
			}
		}, true, "FAIL module proxy   http://proxy.test does not answer (timeout)"},
		{"GOPROXY=off", func(h *doctorHost) { h.proxyURLs = func() ([]string, error) { return nil, nil } }, true, "GOPROXY names no proxy"},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := fakeHost()
			c.break_(&h)
			var out bytes.Buffer
			err := doctor(context.Background(), h, &out)
			if (err != nil) != c.fail {
				t.Errorf("err = %v, want failure %v", err, c.fail)
			}
			if !strings.Contains(out.String(), c.want) {
				t.Errorf("output lacks %q:\n%s", c.want, out.String())
			}
			if n := strings.Count(out.String(), "\n"); n != 8 {
				t.Errorf("%d lines, want one per check (8):\n%s", n, out.String())
			}
		})
	}
}

func TestFreeBytesOfMissingDir(t *testing.T) {
	n, err := freeBytes(t.TempDir() + "/not/yet/made")
	if err != nil || n <= 0 {
		t.Errorf("freeBytes of a dir not made yet = %d, %v (want its parent's)", n, err)
	}
}
