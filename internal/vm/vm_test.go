package vm

import (
	"strings"
	"testing"
)

func TestArgs(t *testing.T) {
	args := strings.Join(Args(Config{Kernel: "k", Initrd: "i", Cmdline: "console=ttyS0", Memory: "256M", CPUs: 2,
		Forwards: []Forward{{Host: 1234, Guest: 8080}, {Host: 1235, Guest: 9000}}}, "tcg", "/q.sock"), " ")
	for _, want := range []string{
		"-kernel k", "-initrd i", "-append console=ttyS0", "-m 256M", "-smp 2", "-accel tcg",
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
}
