package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nodeboot/nodeboot/internal/build"
	"github.com/nodeboot/nodeboot/internal/cli"
	"github.com/nodeboot/nodeboot/internal/contract"
	"github.com/nodeboot/nodeboot/internal/disk"
	"github.com/nodeboot/nodeboot/internal/piboot"
	"github.com/nodeboot/nodeboot/internal/vm"
)

// TestPi builds a Raspberry Pi image (--target pi), checks it against the
// Pi firmware's rules (disk.CheckPi), and boots it under QEMU's raspi3b
// machine with the image's own kernel and the Pi 3 B's device tree from
// its first partition, the SD card being the image: the kernel finds its
// root slot by the MBR PARTUUID in cmdline.txt, PID 1 starts, finds and
// formats the data partition by its PARTUUID, and the app starts and
// writes to /data (its console line); PID 1 finds the slots by their MBR
// numbers and reads autoboot.txt, and the management API, reached through
// a USB CDC Ethernet device, lists slot A good and B empty. What QEMU
// cannot show: the GPU firmware's part (config.txt, autoboot.txt, tryboot:
// QEMU loads the kernel itself), the Pi 4 and 5 (no such machines in QEMU
// 7.2) and the Pi's own LAN9514 Ethernet.
func TestPi(t *testing.T) {
	if _, err := vm.FindQEMU("arm64"); err != nil {
		if os.Getenv("NODEBOOT_E2E") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	proj := t.TempDir()
	writeArm64App(t, proj, "pi", "")
	img := filepath.Join(t.TempDir(), "pi.img")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	var log strings.Builder
	// 1 GiB: raspi3b's SD card must be a power of two in size, and a
	// small data partition is formatted sooner through the emulated
	// SD host.
	if err := cli.Run(ctx, []string{"build", proj, "--target", "pi", "--kernel", "gokrazy", "--node", "20", "--size", "1G", "-o", img}, &log, &log); err != nil {
		t.Fatalf("build: %v\n%s", err, log.String())
	}
	m, err := build.ReadManifestFile(build.DiskManifestPath(img))
	if err != nil {
		t.Fatal(err)
	}
	if m.Arch != "arm64" || m.Target != "pi" || !strings.Contains(m.Kernel.Source, "kernel.rpi") || m.Firmware == nil || !strings.Contains(m.Firmware.Source, "gokrazy/firmware") {
		t.Errorf("manifest: arch %s, target %s, kernel %s, firmware %+v", m.Arch, m.Target, m.Kernel.Source, m.Firmware)
	}
	if v := m.Kernel.Version; !strings.Contains(v, ".") || v[0] < '0' || v[0] > '9' {
		t.Errorf("manifest: kernel version %q, want the Pi kernel's release", v)
	}
	if err := disk.CheckPi(img); err != nil {
		t.Fatalf("the image breaks the Pi firmware's rules: %v", err)
	}

	// An SD card larger than the image (2 GiB: raspi3b's card must be a
	// power of two): the data partition grows to its end at first boot.
	if err := os.Truncate(img, 2<<30); err != nil {
		t.Fatal(err)
	}

	// What the firmware would load on a Pi 3 B (partition 1).
	dir := t.TempDir()
	for _, name := range []string{piboot.KernelFile, "bcm2710-rpi-3-b.dtb"} {
		b, err := disk.ReadPiFile(img, piboot.PartControl, name)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cl, err := disk.ReadPiFile(img, piboot.PartControl, "cmdline.txt")
	if err != nil {
		t.Fatal(err)
	}
	// The firmware turns serial0 into the UART config.txt enabled; with
	// the Pi 3's device tree the PL011 QEMU connects is ttyAMA1.
	cmdline := strings.Replace(strings.TrimSpace(string(cl)), "console=serial0,115200", "console=ttyAMA1,115200", 1)
	// QEMU 7.2's raspi3b resets the machine the moment the BCM2835
	// watchdog is started (it emulates the power manager's reset, not the
	// watchdog's timer): seen as a silent reboot when PID 1 armed it. The
	// driver is kept from loading for this boot only; a real Pi's
	// watchdog works.
	cmdline += " initcall_blacklist=bcm2835_wdt_driver_init"
	apiPort, err := vm.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	v, err := vm.Start(ctx, vm.Config{
		Forwards: []vm.Forward{{Host: apiPort, Guest: cli.APIPort}},
		Arch:     "arm64",
		Machine:  vm.MachineRaspi3b,
		Kernel:   filepath.Join(dir, piboot.KernelFile),
		DTB:      filepath.Join(dir, "bcm2710-rpi-3-b.dtb"),
		Cmdline:  cmdline,
		Disk:     img,
		Persist:  true,
		Console:  consoleLog(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Kill)
	wctx, wcancel := context.WithTimeout(ctx, 15*time.Minute)
	defer wcancel()
	for _, marker := range []string{
		"nodeboot: init started (pid 1)",
		"on /data (",
		"durable count=1",
		contract.AppListening("arm", 8080),
	} {
		if _, err := v.WaitFor(wctx, marker, 0); err != nil {
			t.Fatalf("waiting for %q: %v", marker, err)
		}
	}
	if m := regexp.MustCompile(`grew the data partition from (\d+) MiB to (\d+) MiB`).FindStringSubmatch(v.Console()); m == nil {
		t.Errorf("the data partition did not grow:\n%s", v.Tail(40))
	} else if from, _ := strconv.Atoi(m[1]); true {
		t.Log(m[0])
		if to, _ := strconv.Atoi(m[2]); to < from+1000 {
			t.Errorf("the data partition grew from %d MiB to %d MiB, want the card's extra GiB", from, to)
		}
	}
	if c := v.Console(); strings.Contains(c, "/data is a tmpfs") {
		t.Errorf("/data is a tmpfs, not the data partition:\n%s", v.Tail(40))
	}
	// OS updates are on: PID 1 found the slots by their MBR numbers,
	// mounted partition 1 (vfat) and read autoboot.txt through the
	// tryboot switch.
	if c := v.Console(); !strings.Contains(c, "booted root slot A") || strings.Contains(c, "OS updates off") || strings.Contains(c, "OS update state:") {
		t.Errorf("OS updates on the Pi:\n%s", v.Tail(40))
	}
	// The management API over the USB network: the slots as the updater
	// sees them.
	api := fmt.Sprintf("127.0.0.1:%d", apiPort)
	if _, err := v.WaitFor(wctx, "management API on https port", 0); err != nil {
		t.Fatal(err)
	}
	js, err := nodeboot(ctx, proj, "status", api, "--json")
	if err != nil {
		t.Fatalf("status: %v\n%s", err, js)
	}
	var st contract.Status
	if err := json.Unmarshal([]byte(js), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, js)
	}
	if st.OS == nil || len(st.OS.Slots) != 2 || st.OS.Slots[0].Name != "a" || !st.OS.Slots[0].Booted || st.OS.Slots[0].State != "good" ||
		st.OS.Slots[1].State != "empty" || st.OS.Slots[1].PartUUID != strings.Replace(st.OS.Slots[0].PartUUID, "-05", "-06", 1) {
		t.Errorf("os status: %s", js)
	}
}
