package update

import (
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nodeboot/nodeboot/internal/disk"
	"github.com/nodeboot/nodeboot/internal/image"
	"github.com/nodeboot/nodeboot/internal/ospayload"
	"github.com/nodeboot/nodeboot/internal/piboot"
	"github.com/nodeboot/nodeboot/internal/tryboot"
)

// partDevice is a partition of a disk image file, as a slot's device.
type partDevice struct {
	f         *os.File
	off, size int64
}

func (p partDevice) WriteAt(b []byte, off int64) (int, error) {
	if off+int64(len(b)) > p.size {
		return 0, os.ErrInvalid
	}
	return p.f.WriteAt(b, p.off+off)
}
func (p partDevice) Sync() error  { return p.f.Sync() }
func (p partDevice) Close() error { return nil }

// TestPiRealImage updates a real Pi image (disk.WritePi) with the payload
// ospayload.FromImage makes from another: slot B's boot partition and root
// are written into the image file itself, and once autoboot.txt is
// switched to B (in the image, through go-diskfs's FAT writer, as the
// commit would on the node) disk.CheckPi finds slot B a complete boot set
// by the firmware's rules, naming its own disk's root B and data.
func TestPiRealImage(t *testing.T) {
	dir := t.TempDir()
	mk := func(name, content string) (string, *disk.PiLayout) { return writeTestPiImage(t, dir, name, content) }
	oldImg, l := mk("old", "console.log('v1')\n")
	newImg, _ := mk("new", "console.log('v2')\n")
	p, err := ospayload.FromImage(newImg, ospayload.BuildOptions{Key: testKey, Version: 2, Built: t0, Arch: "arm64", Target: ospayload.TargetPi})
	if err != nil {
		t.Fatal(err)
	}
	if m := p.Header.Manifest; m.Target != "pi" || m.Cmdline != "panic=10 init=/init" {
		t.Errorf("manifest target %q cmdline %q", m.Target, m.Cmdline)
	}

	f, err := os.OpenFile(oldImg, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// The control partition stands in as a directory: this host's kernel
	// may have no vfat to mount the image's.
	ctlDir := filepath.Join(dir, "control")
	os.MkdirAll(ctlDir, 0o755)
	os.WriteFile(filepath.Join(ctlDir, "autoboot.txt"), piboot.Autoboot{TrybootAB: true, Boot: 2, Try: 3}.Format(), 0o644)
	esp, state := OSDir{Root: ctlDir}, OSDir{Root: filepath.Join(dir, "state")}
	var slots []Slot
	boots := map[string]BootPartition{}
	for _, n := range []string{"a", "b"} {
		rp, bp := l.Partition(piboot.RootPartition(n)), l.Partition(piboot.BootPartition(n))
		slots = append(slots, Slot{Name: n, PartUUID: piboot.PartUUID(l.Signature, rp.Number), Size: rp.Size,
			Open: func() (Device, error) { return partDevice{f, rp.Offset, rp.Size}, nil }})
		boots[n] = BootPartition{Offset: bp.Offset, Size: bp.Size, Open: func() (Device, error) { return partDevice{f, bp.Offset, bp.Size}, nil }}
	}
	var tried bool
	cfg := Config{ESP: esp, State: state, Slots: slots, Running: Image{ID: "old", Version: 1}, Arch: "arm64", Target: "pi",
		Keys: []ed25519.PublicKey{testKey.Public().(ed25519.PublicKey)}, Clock: fixedClock{},
		Pi: &PiConfig{Switch: &tryboot.Switch{Control: tryboot.OSControl{Root: ctlDir}, State: state}, Boot: boots, Signature: l.Signature,
			TryReboot: rebootFunc(func(string) error { tried = true; return nil })}}
	cfg.Booted = SlotFromCmdline(l.Cmdline, slots)
	if cfg.Booted != "a" {
		t.Fatalf("booted slot %q from %q", cfg.Booted, l.Cmdline)
	}
	u, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := u.Boot(); err != nil {
		t.Fatal(err)
	}
	stream, err := p.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	if _, err := u.Install(context.Background(), stream, InstallOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := u.RebootIntoTrial(); err != nil || !tried {
		t.Fatalf("RebootIntoTrial: %v, tryboot %v", err, tried)
	}
	ab, _ := os.ReadFile(filepath.Join(ctlDir, "autoboot.txt"))
	if a, err := piboot.ParseAutoboot(ab); err != nil || a.Boot != 2 || a.Try != 3 {
		t.Fatalf("autoboot.txt after arming: %+v %v", a, err)
	}
	// The trial boot commits: autoboot.txt boots B.
	cfg.Booted = "b"
	u, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if bs, err := u.Boot(); err != nil || !bs.Trial {
		t.Fatalf("trial boot: %+v %v", bs, err)
	}
	if _, err := u.Commit(); err != nil {
		t.Fatal(err)
	}
	ab, _ = os.ReadFile(filepath.Join(ctlDir, "autoboot.txt"))
	if err := disk.WritePiFile(oldImg, piboot.PartControl, "autoboot.txt", ab); err != nil {
		t.Fatal(err)
	}
	if err := disk.CheckPi(oldImg); err != nil {
		t.Fatalf("the image after the update: %v", err)
	}
	cl, err := disk.ReadPiFile(oldImg, piboot.PartBootB, "cmdline.txt")
	if err != nil || !strings.Contains(string(cl), "root=PARTUUID="+piboot.PartUUID(l.Signature, piboot.PartRootB)) || !strings.Contains(string(cl), "panic=10") {
		t.Errorf("slot B's cmdline.txt: %q %v", cl, err)
	}
	k, err := disk.ReadPiFile(oldImg, piboot.PartBootB, piboot.KernelFile)
	if err != nil || !strings.HasPrefix(string(k), "new") {
		t.Errorf("slot B's kernel: %.10q %v", k, err)
	}
	// Root B holds the new squashfs, byte for byte.
	rb := l.Partition(piboot.PartRootB)
	got := make([]byte, p.Header.Manifest.RootFS.Size)
	f.ReadAt(got, rb.Offset)
	nf, _ := os.Open(newImg)
	defer nf.Close()
	want := make([]byte, len(got))
	nf.ReadAt(want, l.Partition(piboot.PartRootA).Offset)
	if string(got) != string(want) {
		t.Error("root slot B does not hold the new image's squashfs")
	}
}

// writeTestPiImage writes a Pi image (disk.WritePi) of small stand-ins for
// the kernel and firmware modules, whose kernel starts with name.
func writeTestPiImage(t *testing.T, dir, name, content string) (string, *disk.PiLayout) {
	t.Helper()
	kdir, fwdir := filepath.Join(dir, "kernel"), filepath.Join(dir, "firmware")
	kernel := make([]byte, 200000)
	copy(kernel, name)
	binary.LittleEndian.PutUint32(kernel[0x38:], 0x644d5241) // arm64 Image magic
	files := map[string][]byte{filepath.Join(kdir, piboot.KernelFile): kernel, filepath.Join(kdir, "overlays", "uart0.dtbo"): []byte("dtbo")}
	for _, m := range piboot.Models {
		files[filepath.Join(kdir, m.DTB)] = []byte("dtb of " + m.Name)
	}
	for _, n := range piboot.Firmware {
		files[filepath.Join(fwdir, n)] = []byte("firmware " + n)
	}
	for p, b := range files {
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tr := image.NewTree()
	tr.AddData("/init", []byte("#!/not/a/shell\n"), 0o755)
	tr.AddData("/apps/hello/index.js", []byte(content), 0o644)
	img := filepath.Join(dir, name+".img")
	l, err := disk.WritePi(disk.PiOptions{Path: img, Size: 256 * disk.MiB, RootSize: 16 * disk.MiB, BootSize: 40 * disk.MiB,
		Root: tr, KernelDir: kdir, FirmwareDir: fwdir, Cmdline: "panic=10", Seed: name})
	if err != nil {
		t.Fatal(err)
	}
	return img, l
}

// TestDiscoverPi finds a real Pi image's partitions by number through a
// fake sysfs (mmcblk0 and its partitions, each with its "partition" file)
// and the disk signature read from the image standing in for the disk.
func TestDiscoverPi(t *testing.T) {
	dir := t.TempDir()
	img, l := writeTestPiImage(t, dir, "pi", "x")
	sysRoot, devRoot := filepath.Join(dir, "sys"), filepath.Join(dir, "dev")
	blk := filepath.Join(sysRoot, "devices", "platform", "mmc", "block", "mmcblk0")
	for _, d := range []string{devRoot, filepath.Join(sysRoot, "class", "block"), blk} {
		os.MkdirAll(d, 0o755)
	}
	if err := os.Rename(img, filepath.Join(devRoot, "mmcblk0")); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(blk, "size"), []byte("524288\n"), 0o644)
	os.Symlink(blk, filepath.Join(sysRoot, "class", "block", "mmcblk0"))
	for n := 1; n <= 7; n++ {
		name := "mmcblk0p" + string(rune('0'+n))
		pd := filepath.Join(blk, name)
		os.MkdirAll(pd, 0o755)
		os.WriteFile(filepath.Join(pd, "partition"), []byte(string(rune('0'+n))+"\n"), 0o644)
		os.Symlink(pd, filepath.Join(sysRoot, "class", "block", name))
		os.WriteFile(filepath.Join(devRoot, name), nil, 0o644)
	}
	if !IsPiCmdline(l.Cmdline) {
		t.Fatalf("IsPiCmdline(%q) = false", l.Cmdline)
	}
	if IsPiCmdline("root=PARTUUID=aaaaaaaa-0000-4000-8000-000000000001") {
		t.Error("a GPT PARTUUID taken for a Pi's")
	}
	d, err := DiscoverPi(sysRoot, devRoot, l.Cmdline)
	if err != nil {
		t.Fatal(err)
	}
	if d.Booted != "a" || d.Signature != l.Signature || d.Control != filepath.Join(devRoot, "mmcblk0p1") || d.DiskSize != 256*disk.MiB {
		t.Errorf("discovered %+v", d)
	}
	if len(d.Slots) != 2 || d.Slots[1].PartUUID != piboot.PartUUID(l.Signature, 6) || d.Slots[1].Size != l.Partition(6).Size ||
		d.Boot["b"].Offset != l.Partition(3).Offset || d.Boot["b"].Size != l.Partition(3).Size {
		t.Errorf("slots %+v boot %+v", d.Slots, d.Boot)
	}
	// Each opens its own partition's device node.
	for name, open := range map[string]func() (Device, error){"mmcblk0p6": d.Slots[1].Open, "mmcblk0p3": d.Boot["b"].Open} {
		dev, err := open()
		if err != nil {
			t.Fatal(err)
		}
		dev.WriteAt([]byte(name), 0)
		dev.Close()
		if b, _ := os.ReadFile(filepath.Join(devRoot, name)); string(b) != name {
			t.Errorf("%s was not the device written", name)
		}
	}
	cl := strings.Replace(l.Cmdline, piboot.PartUUID(l.Signature, 5), piboot.PartUUID(l.Signature, 7), 1)
	if _, err := DiscoverPi(sysRoot, devRoot, cl); err == nil || !strings.Contains(err.Error(), "neither root slot") {
		t.Errorf("root= on the data partition: %v", err)
	}
}
