package update

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nodeboot/nodeboot/internal/disk"
)

// fakeSys lays out what PID 1 reads: a disk (a real GPT, written by
// sfdisk into a sparse file under dev/) and sysfs under sys/ with the
// kernel's links from class/block to the devices, each partition's uevent
// and the disk's size in sectors.
func fakeSys(t *testing.T, labels []string) (sysRoot, devRoot string, guids map[string]string) {
	t.Helper()
	if _, err := exec.LookPath("sfdisk"); err != nil {
		t.Skip("sfdisk (fdisk) is needed: make deps installs it")
	}
	root := t.TempDir()
	sysRoot, devRoot = filepath.Join(root, "sys"), filepath.Join(root, "dev")
	for _, d := range []string{devRoot, filepath.Join(sysRoot, "class", "block"), filepath.Join(sysRoot, "devices", "pci0", "virtio1", "block", "vda")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	img := filepath.Join(devRoot, "vda")
	const size = 1 << 30
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, size); err != nil {
		t.Fatal(err)
	}
	sizes := map[string]string{disk.LabelESP: "64MiB", disk.LabelRootA: "256MiB", disk.LabelRootB: "256MiB", disk.LabelData: ""}
	types := map[string]string{disk.LabelESP: disk.TypeESP, disk.LabelRootA: disk.TypeRootX86_64, disk.LabelRootB: disk.TypeRootX86_64, disk.LabelData: "0FC63DAF-8483-4772-8E79-3D69D8477DE4"}
	script := "label: gpt\n"
	for _, l := range labels {
		if sizes[l] != "" {
			script += "size=" + sizes[l] + ", "
		}
		script += "type=" + types[l] + ", name=\"" + l + "\"\n"
	}
	cmd := exec.Command("sfdisk", "--quiet", img)
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v\n%s", err, out)
	}
	out, err := exec.Command("sfdisk", "--dump", img).Output()
	if err != nil {
		t.Fatal(err)
	}
	guids = map[string]string{}
	dev := filepath.Join(sysRoot, "devices", "pci0", "virtio1", "block", "vda")
	if err := os.WriteFile(filepath.Join(dev, "size"), []byte("2097152\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for i, l := range labels {
		for _, line := range strings.Split(string(out), "\n") {
			if strings.Contains(line, `name="`+l+`"`) {
				_, u, _ := strings.Cut(line, "uuid=")
				u, _, _ = strings.Cut(u, ",")
				guids[l] = strings.ToLower(strings.TrimSpace(u))
			}
		}
		part := "vda" + string(rune('1'+i))
		pd := filepath.Join(dev, part)
		if err := os.MkdirAll(pd, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(pd, "uevent"), []byte("MAJOR=253\nDEVNAME="+part+"\nDEVTYPE=partition\nPARTN=1\nPARTNAME="+l+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(pd, filepath.Join(sysRoot, "class", "block", part)); err != nil {
			t.Fatal(err)
		}
	}
	return sysRoot, devRoot, guids
}

func TestDiscoverSlots(t *testing.T) {
	all := []string{disk.LabelESP, disk.LabelRootA, disk.LabelRootB, disk.LabelData}
	sysRoot, devRoot, guids := fakeSys(t, all)
	const opts = "console=ttyS0,115200 panic=10 rootwait init=/init rootfstype=squashfs ro"
	for _, slot := range []string{"a", "b"} {
		d, err := DiscoverSlots(sysRoot, devRoot, opts+" root=PARTUUID="+strings.ToUpper(guids["nodeboot-root-"+slot]))
		if err != nil {
			t.Fatalf("booted from %s: %v", slot, err)
		}
		if d.Booted != slot || d.ESP != filepath.Join(devRoot, "vda1") || d.Disk != filepath.Join(devRoot, "vda") || d.DiskSize != 1<<30 {
			t.Errorf("booted from %s: %+v", slot, d)
		}
		if len(d.Slots) != 2 || d.Slots[0].Name != "a" || d.Slots[1].Name != "b" ||
			d.Slots[0].PartUUID != guids[disk.LabelRootA] || d.Slots[1].PartUUID != guids[disk.LabelRootB] ||
			d.Slots[0].Size != 256<<20 || d.Slots[1].Size != 256<<20 {
			t.Errorf("slots %+v, want A %s and B %s of 256 MiB", d.Slots, guids[disk.LabelRootA], guids[disk.LabelRootB])
		}
		// Each slot opens its own partition's device node.
		dev, err := d.Slots[1].Open()
		if err == nil {
			dev.Close()
		} else if !strings.Contains(err.Error(), "vda3") {
			t.Errorf("slot B opens %v, want vda3", err)
		}
	}

	// An initramfs boot has no root=: no slots, no error.
	if d, err := DiscoverSlots(sysRoot, devRoot, opts); d != nil || err != nil {
		t.Errorf("initramfs boot: %+v, %v", d, err)
	}
	// A root= that is neither slot (the data partition, or another disk).
	_, err := DiscoverSlots(sysRoot, devRoot, opts+" root=PARTUUID="+guids[disk.LabelData])
	if err == nil || !strings.Contains(err.Error(), "neither root slot") || !strings.Contains(err.Error(), guids[disk.LabelRootA]) {
		t.Errorf("root= on the data partition: %v", err)
	}

	// A disk without the ESP, or without slot B (not a nodeboot disk).
	for _, c := range []struct {
		labels []string
		says   string
	}{
		{[]string{disk.LabelRootA, disk.LabelRootB, disk.LabelData}, `the ESP: no partition named "nodeboot-esp"`},
		{[]string{disk.LabelESP, disk.LabelRootA, disk.LabelData}, "it has no partition named nodeboot-root-b"},
	} {
		s, d, g := fakeSys(t, c.labels)
		_, err := DiscoverSlots(s, d, opts+" root=PARTUUID="+g[disk.LabelRootA])
		if err == nil || !strings.Contains(err.Error(), c.says) {
			t.Errorf("partitions %v: %v, want %q", c.labels, err, c.says)
		}
	}
}
