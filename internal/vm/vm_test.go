package vm

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nodeboot/nodeboot/internal/contract"
)

func TestArgs(t *testing.T) {
	args := strings.Join(Args(Config{Kernel: "k", Initrd: "i", Cmdline: "console=ttyS0", Memory: "256M", CPUs: 2,
		Forwards: []Forward{{Host: 1234, Guest: 8080}, {Host: 1235, Guest: 9000}}}, "tcg", "/q.sock"), " ")
	for _, want := range []string{
		"-kernel k", "-initrd i", "-append console=ttyS0", "-m 256M", "-smp 2", "-accel tcg -cpu max",
		"hostfwd=tcp:127.0.0.1:1234-:8080,hostfwd=tcp:127.0.0.1:1235-:9000",
		"virtio-net-pci", "virtio-rng-pci", "-qmp unix:/q.sock,server=on,wait=off", "-serial stdio",
	} {
		if !strings.Contains(args, want) {
			t.Errorf("args lack %q: %s", want, args)
		}
	}
	if kvm := strings.Join(Args(Config{}, "kvm", ""), " "); !strings.Contains(kvm, "-accel kvm -cpu host") || strings.Contains(kvm, "-qmp") {
		t.Errorf("kvm args: %s", kvm)
	}
}

func TestPortFree(t *testing.T) {
	p, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	if err := PortFree(p); err != nil {
		t.Errorf("free port %d reported busy: %v", p, err)
	}
}

func TestDiskArgs(t *testing.T) {
	args := strings.Join(Args(Config{Disk: "/x/app.img", Firmware: "/fw/OVMF.fd"}, "tcg", ""), " ")
	for _, want := range []string{"-bios /fw/OVMF.fd", "file=/x/app.img,format=raw,if=virtio", "snapshot=on"} {
		if !strings.Contains(args, want) {
			t.Errorf("disk args lack %q: %s", want, args)
		}
	}
	if strings.Contains(args, "-kernel") {
		t.Errorf("disk boot passes a kernel: %s", args)
	}
	persist := strings.Join(Args(Config{Disk: "/x/app.img", Firmware: "f", Persist: true}, "tcg", ""), " ")
	if strings.Contains(persist, "snapshot") {
		t.Errorf("--persist still uses a snapshot: %s", persist)
	}
	// A direct kernel boot of a disk image: the kernel from QEMU, the
	// image as the disk, no firmware.
	direct := strings.Join(Args(Config{Disk: "/x/app.img", Firmware: "/fw/OVMF.fd", Kernel: "/k/vmlinuz", Cmdline: "root=PARTUUID=x"}, "tcg", ""), " ")
	for _, want := range []string{"-kernel /k/vmlinuz", "-append root=PARTUUID=x", "file=/x/app.img,format=raw,if=virtio"} {
		if !strings.Contains(direct, want) {
			t.Errorf("direct boot args lack %q: %s", want, direct)
		}
	}
	if strings.Contains(direct, "-bios") {
		t.Errorf("direct boot loads firmware: %s", direct)
	}
}

func TestMachineArgs(t *testing.T) {
	for _, tc := range []struct {
		name      string
		cfg       Config
		want, not []string
	}{
		{"pc default", Config{Kernel: "k", Balloon: true, Drives: []string{"/r.img"}},
			[]string{"-M pc", "virtio-rng-pci", "virtio-net-pci,netdev=n0", "virtio-balloon-pci,id=balloon0", "file=/r.img,format=raw,if=none,id=d0", "virtio-blk-pci,drive=d0", "snapshot=on"},
			[]string{"-device virtio-rng-device"}},
		{"microvm", Config{Kernel: "k", Machine: MachineMicroVM, Balloon: true},
			[]string{"-M microvm", "virtio-rng-device", "virtio-net-device,netdev=n0", "virtio-balloon-device,id=balloon0"},
			[]string{"-pci"}},
		{"no balloon", Config{Kernel: "k"}, nil, []string{"balloon"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := strings.Join(Args(tc.cfg, "tcg", ""), " ")
			for _, w := range tc.want {
				if !strings.Contains(args, w) {
					t.Errorf("args lack %q: %s", w, args)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(args, n) {
					t.Errorf("args contain %q: %s", n, args)
				}
			}
		})
	}
}

func TestParseGuestStats(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		used int64
		ok   bool
	}{
		{"reported", `{"stats":{"stat-total-memory":500000000,"stat-available-memory":400000000,"stat-free-memory":1},"last-update":1700000000}`, 100000000, true},
		{"not yet", `{"stats":{"stat-total-memory":-1,"stat-available-memory":-1},"last-update":0}`, 0, false},
		{"unsupported", `{"stats":{"stat-total-memory":-1,"stat-available-memory":-1},"last-update":5}`, 0, false},
		{"available above total", `{"stats":{"stat-total-memory":1,"stat-available-memory":2},"last-update":5}`, 0, false},
		{"not json", `{`, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := ParseGuestStats([]byte(tc.in))
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
			if tc.ok && m.Used() != tc.used {
				t.Errorf("used = %d, want %d", m.Used(), tc.used)
			}
		})
	}
}

func FuzzParseGuestStats(f *testing.F) {
	f.Add([]byte(`{"stats":{"stat-total-memory":500,"stat-available-memory":400},"last-update":1}`))
	f.Add([]byte(`{"stats":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseGuestStats(b)
		if err == nil && (m.Used() < 0 || m.Used() > m.Total) {
			t.Fatalf("accepted inconsistent stats %+v", m)
		}
	})
}

func TestWaitForDeadGuest(t *testing.T) {
	for _, c := range []struct{ console, want string }{
		{"BdsDxe: loading Boot0001\nEFI stub: ERROR: Failed to decompress kernel\nEFI stub: ERROR: efi_stub_entry() failed!\n", "EFI stub failed"},
		{"[    1.0] Kernel panic - not syncing: VFS: Unable to mount root fs\n", "kernel panic"},
	} {
		v := &VM{done: make(chan struct{})}
		v.cond = sync.NewCond(&v.mu)
		r, w := io.Pipe()
		go v.readConsole(r, nil)
		go func() { io.WriteString(w, c.console) }()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := v.WaitFor(ctx, contract.ConsolePrefix+contract.InitStarted, 0)
		cancel()
		w.Close()
		if !errors.Is(err, ErrGuestDied) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("console %q: err = %v, want %s", c.console, err, c.want)
		}
	}
}
