// Package piboot holds what the Raspberry Pi's firmware reads from a boot
// partition, written once for the builder and the node: the models an image
// supports and their device trees, the firmware files, config.txt,
// cmdline.txt, and autoboot.txt (the EEPROM bootloader's choice of boot
// partition, with the tryboot A/B switch).
//
// The rules come from the Raspberry Pi documentation of config.txt,
// autoboot.txt and the boot flow: the Pi 4 and 5 EEPROM bootloader reads
// autoboot.txt from the first FAT partition of an MBR disk, and with
// tryboot_a_b=1 boots the [tryboot] section's boot_partition once after a
// `reboot "0 tryboot"`, the [all] section's otherwise; the Pi 3 boot ROM
// and the Zero 2 W read the first FAT partition only and know neither.
package piboot

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Model is a Raspberry Pi an image boots on.
type Model struct {
	Name string // as the user knows it
	// DTB is the device tree the firmware loads for it (from the kernel
	// module; the firmware picks it by the board's revision).
	DTB string
	// Tryboot tells whether its bootloader honours autoboot.txt's
	// tryboot_a_b, and so whether OS updates can fall back by themselves.
	Tryboot bool
}

// Models are the Raspberry Pis a Pi image supports.
var Models = []Model{
	{Name: "Raspberry Pi 3 Model B+", DTB: "bcm2710-rpi-3-b-plus.dtb"},
	{Name: "Raspberry Pi 4 Model B", DTB: "bcm2711-rpi-4-b.dtb", Tryboot: true},
	{Name: "Raspberry Pi 5", DTB: "bcm2712-rpi-5-b.dtb", Tryboot: true},
	{Name: "Raspberry Pi Zero 2 W", DTB: "bcm2710-rpi-zero-2-w.dtb"},
	{Name: "Raspberry Pi Compute Module 4", DTB: "bcm2711-rpi-cm4.dtb", Tryboot: true},
}

// Firmware are the GPU firmware files a slot's boot partition holds: the
// Pi 3 and Zero 2 W load bootcode.bin, then start.elf and fixup.dat; the
// Pi 4 and CM4 start4.elf and fixup4.dat (their bootloader is in EEPROM);
// the Pi 5 needs none (its firmware is in EEPROM too).
var Firmware = []string{"bootcode.bin", "start.elf", "fixup.dat", "start4.elf", "fixup4.dat"}

// KernelFile is the kernel's name on a boot partition (config.txt's
// kernel=).
const KernelFile = "vmlinuz"

// Partition numbers of a Pi image (MBR; 5 and up are logical partitions in
// the extended partition 4).
const (
	PartControl = 1 // autoboot.txt, and the boot files a Pi 3 uses
	PartBootA   = 2
	PartBootB   = 3
	PartRootA   = 5
	PartRootB   = 6
	PartData    = 7
)

// BootPartition is slot's ("a" or "b") boot partition number.
func BootPartition(slot string) int {
	if slot == "b" {
		return PartBootB
	}
	return PartBootA
}

// RootPartition is slot's root partition number.
func RootPartition(slot string) int {
	if slot == "b" {
		return PartRootB
	}
	return PartRootA
}

// PartUUID is the PARTUUID the kernel gives partition n of an MBR disk with
// signature sig.
func PartUUID(sig uint32, n int) string { return fmt.Sprintf("%08x-%02x", sig, n) }

// ConfigTxt is a slot's config.txt. With tryboot_a_b=1 the firmware reads
// the normal config.txt in the partition autoboot.txt chose, so a slot's
// configuration needs no tryboot section of its own.
func ConfigTxt() []byte {
	return []byte(`# nodeboot: the Raspberry Pi firmware's configuration of this slot.
[all]
# The kernel is arm64.
arm_64bit=1
kernel=` + KernelFile + `
cmdline=cmdline.txt
# The serial console on GPIO 14/15, where the node logs.
enable_uart=1
# No rainbow splash, no waiting for a key.
disable_splash=1
boot_delay=0
`)
}

// Cmdline is a slot's cmdline.txt content (one line): base (the build's
// console-less command line), the console, the root partition and the data
// partition, both by PARTUUID.
func Cmdline(base string, sig uint32, slot string, addInit bool) string {
	fields := []string{"console=tty1", "console=serial0,115200"}
	fields = append(fields, strings.Fields(base)...)
	fields = append(fields,
		"root=PARTUUID="+PartUUID(sig, RootPartition(slot)), "rootfstype=squashfs", "ro", "rootwait",
		DataParam+"=PARTUUID="+PartUUID(sig, PartData))
	if addInit {
		fields = append(fields, "init=/init")
	}
	return strings.Join(fields, " ") + "\n"
}

// DataParam names the data partition on the kernel command line of an
// image whose partition table has no names (MBR): PID 1 looks for this
// PARTUUID where a GPT disk has the partition named nodeboot-data.
const DataParam = "nodeboot.data"

// AutobootSize is autoboot.txt's size: always the same, padded with a
// comment, so that committing a slot rewrites its one sector in place and
// never changes the file's length or clusters (a rename on FAT leaves the
// new entry empty until its inode is written back, and a power cut then
// leaves no autoboot.txt at all). The firmware reads at most 512 bytes.
const AutobootSize = 512

// Autoboot is what autoboot.txt says.
type Autoboot struct {
	TrybootAB bool
	// Boot is [all]'s boot_partition: what every normal boot starts.
	Boot int
	// Try is [tryboot]'s boot_partition: what a boot after `reboot "0
	// tryboot"` starts (0 if none).
	Try int
}

// Format writes a as autoboot.txt, AutobootSize bytes long.
func (a Autoboot) Format() []byte {
	var b bytes.Buffer
	b.WriteString("[all]\n")
	if a.TrybootAB {
		b.WriteString("tryboot_a_b=1\n")
	}
	fmt.Fprintf(&b, "boot_partition=%d\n", a.Boot)
	if a.Try != 0 {
		fmt.Fprintf(&b, "[tryboot]\nboot_partition=%d\n", a.Try)
	}
	b.WriteString("# nodeboot: rewritten in place when an update is committed; padding follows\n#")
	for b.Len() < AutobootSize-1 {
		b.WriteByte('.')
	}
	b.WriteByte('\n')
	return b.Bytes()
}

// ErrAutoboot is wrapped by ParseAutoboot's errors.
var ErrAutoboot = errors.New("autoboot.txt is not one nodeboot wrote")

// ParseAutoboot reads autoboot.txt as the firmware does: section headers
// in brackets, key=value lines, '#' comments; only [all] and [tryboot]
// matter here (other filters such as [pi4] are skipped, as nodeboot never
// writes them). It is strict where the firmware is lenient, because the
// node must know what the firmware will do: a boot_partition that is not a
// number, or none in [all], is an error.
func ParseAutoboot(b []byte) (Autoboot, error) {
	var a Autoboot
	if len(b) > AutobootSize {
		return a, fmt.Errorf("%w: %d bytes, more than the firmware reads (%d)", ErrAutoboot, len(b), AutobootSize)
	}
	section := "all"
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		if line[0] == '[' {
			end := strings.IndexByte(line, ']')
			if end < 0 {
				return a, fmt.Errorf("%w: section %q has no ]", ErrAutoboot, line)
			}
			section = line[1:end]
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return a, fmt.Errorf("%w: line %q is not key=value", ErrAutoboot, line)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if section != "all" && section != "tryboot" {
			continue
		}
		switch k {
		case "tryboot_a_b":
			a.TrybootAB = v == "1"
		case "boot_partition":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 63 {
				return a, fmt.Errorf("%w: boot_partition=%q is not a partition number", ErrAutoboot, v)
			}
			if section == "all" {
				a.Boot = n
			} else {
				a.Try = n
			}
		}
	}
	if a.Boot == 0 {
		return a, fmt.Errorf("%w: no boot_partition in [all]", ErrAutoboot)
	}
	return a, nil
}
