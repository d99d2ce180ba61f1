// Package target holds, as data, what differs between the CPU
// architectures an image is built for: the kernel module, where the C
// library comes from, the UEFI boot loader's names, the root partition's
// type, the serial console, and how QEMU emulates the machine. The build,
// the disk writer and the VM read this table instead of testing the arch
// themselves.
package target

import (
	"fmt"
	"runtime"
	"strings"
)

// Arch describes one target architecture.
type Arch struct {
	Name string // GOARCH: amd64, arm64
	// DebianArch is Debian's name of it (dpkg --print-architecture).
	DebianArch string
	// KernelModule is the Go module whose vmlinuz is the default kernel.
	KernelModule string
	// Console is the serial console's device, where PID 1 logs and
	// `nodeboot run` reads.
	Console string
	// EFIBootFile is the removable-media boot path UEFI firmware loads.
	EFIBootFile string
	// SystemdBootFile is systemd-boot's EFI binary in systemd-boot-efi.
	SystemdBootFile string
	// RootType is the Discoverable Partitions Specification's root
	// partition type for the arch.
	RootType string
	// Libraries are the Debian packages holding node's C and C++ runtime,
	// fetched for a build whose arch is not the host's.
	Libraries []string
	// QEMU, QEMUMachine, QEMUCPU (under TCG) and Firmware (UEFI, Debian's
	// path first) run it.
	QEMU, QEMUMachine, QEMUCPU string
	Firmware                   []string
	FirmwarePackage            string
}

var arches = []Arch{
	{
		Name: "amd64", DebianArch: "amd64",
		KernelModule:    "github.com/gokrazy/kernel.amd64",
		Console:         "ttyS0",
		EFIBootFile:     "/EFI/BOOT/BOOTX64.EFI",
		SystemdBootFile: "/usr/lib/systemd/boot/efi/systemd-bootx64.efi",
		RootType:        "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709",
		Libraries:       []string{"libc6", "libstdc++6", "libgcc-s1"},
		QEMU:            "qemu-system-x86_64", QEMUMachine: "pc", QEMUCPU: "qemu64,pdpe1gb=on",
		Firmware:        []string{"/usr/share/ovmf/OVMF.fd", "/usr/share/OVMF/OVMF.fd", "/usr/share/edk2/ovmf/OVMF.fd", "/usr/share/edk2-ovmf/x64/OVMF.fd", "/usr/share/qemu/ovmf-x86_64.bin"},
		FirmwarePackage: "ovmf",
	},
	{
		Name: "arm64", DebianArch: "arm64",
		KernelModule:    "github.com/gokrazy/kernel.arm64",
		Console:         "ttyAMA0",
		EFIBootFile:     "/EFI/BOOT/BOOTAA64.EFI",
		SystemdBootFile: "/usr/lib/systemd/boot/efi/systemd-bootaa64.efi",
		RootType:        "B921B045-1DF0-41C3-AF44-4C6F280D3FAE",
		// libatomic1: node's arm64 builds since v24 link libatomic.so.1.
		Libraries: []string{"libc6", "libstdc++6", "libgcc-s1", "libatomic1"},
		// cortex-a72 rather than max: max adds pointer authentication,
		// which TCG emulates slowly, for nothing node needs.
		QEMU: "qemu-system-aarch64", QEMUMachine: "virt", QEMUCPU: "cortex-a72",
		Firmware:        []string{"/usr/share/qemu-efi-aarch64/QEMU_EFI.fd", "/usr/share/AAVMF/AAVMF_CODE.fd", "/usr/share/edk2/aarch64/QEMU_EFI.fd", "/usr/share/qemu/edk2-aarch64-code.fd"},
		FirmwarePackage: "qemu-efi-aarch64",
	},
}

// Lookup returns the architecture named name ("" = the host's).
func Lookup(name string) (Arch, error) {
	if name == "" {
		name = Host()
	}
	var names []string
	for _, a := range arches {
		if a.Name == name {
			return a, nil
		}
		names = append(names, a.Name)
	}
	return Arch{}, fmt.Errorf("--arch %s: nodeboot builds images for %s only", name, strings.Join(names, " or "))
}

// Host is the default --arch: the machine nodeboot runs on, when it is a
// target, else amd64.
func Host() string {
	for _, a := range arches {
		if a.Name == runtime.GOARCH {
			return a.Name
		}
	}
	return "amd64"
}

// Native tells whether the host runs arch's binaries itself, so the host's
// C library and node can go into the image.
func (a Arch) Native() bool {
	return runtime.GOOS == "linux" && runtime.GOARCH == a.Name
}
