package disk

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/fat32"
	"github.com/nodeboot/nodeboot/internal/piboot"
)

// piInputs makes a Pi kernel module dir (an arm64 Image, a device tree per
// model and one more, two overlays) and a firmware dir, small stand-ins
// for gokrazy's modules.
func piInputs(t *testing.T) (kernelDir, firmwareDir string) {
	t.Helper()
	kernelDir, firmwareDir = t.TempDir(), t.TempDir()
	img := random(300000, 11)
	binary.LittleEndian.PutUint32(img[0x38:], 0x644d5241) // "ARM\x64"
	files := map[string][]byte{filepath.Join(kernelDir, piboot.KernelFile): img,
		filepath.Join(kernelDir, "bcm2710-rpi-3-b.dtb"):         []byte("dtb"),
		filepath.Join(kernelDir, "overlays", "disable-bt.dtbo"): []byte("dtbo"),
		filepath.Join(kernelDir, "overlays", "README"):          []byte("readme"),
		filepath.Join(firmwareDir, "LICENSE.broadcom"):          []byte("license"),
		filepath.Join(firmwareDir, "start_x.elf"):               []byte("not needed"),
	}
	for _, m := range piboot.Models {
		files[filepath.Join(kernelDir, m.DTB)] = []byte("dtb of " + m.Name)
	}
	for _, n := range piboot.Firmware {
		files[filepath.Join(firmwareDir, n)] = random(5000, uint64(len(n)))
	}
	for p, b := range files {
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return kernelDir, firmwareDir
}

func writePiImage(t *testing.T) (string, *PiLayout) {
	f := newFixture(t)
	kdir, fwdir := piInputs(t)
	p := filepath.Join(t.TempDir(), "pi.img")
	l, err := WritePi(PiOptions{Path: p, Size: 224 * MiB, RootSize: 16 * MiB, Root: f.tree, KernelDir: kdir, FirmwareDir: fwdir,
		Cmdline: "panic=10", BootSize: 40 * MiB, Seed: "pi-seed"})
	if err != nil {
		t.Fatal(err)
	}
	return p, l
}

func TestPiLayout(t *testing.T) {
	img, l := writePiImage(t)
	if err := CheckPi(img); err != nil {
		t.Fatalf("the image fails the Pi's rules: %v", err)
	}
	// sfdisk, an independent reader of MBR and EBR chains, sees the
	// seven partitions where the layout put them.
	sfdisk := needTool(t, "sfdisk", "fdisk")
	var out []byte
	var err error
	var dump struct {
		PartitionTable struct {
			Label      string `json:"label"`
			ID         string `json:"id"`
			Partitions []struct {
				Node        string `json:"node"`
				Start, Size int64
				Type        string `json:"type"`
			} `json:"partitions"`
		} `json:"partitiontable"`
	}
	out, err = exec.Command(sfdisk, "--json", img).Output()
	if err != nil {
		t.Fatalf("sfdisk --json: %v", err)
	}
	if err := json.Unmarshal(out, &dump); err != nil {
		t.Fatal(err)
	}
	pt := dump.PartitionTable
	if pt.Label != "dos" || pt.ID != fmt.Sprintf("0x%08x", l.Signature) {
		t.Errorf("sfdisk sees label %s id %s, want dos 0x%08x", pt.Label, pt.ID, l.Signature)
	}
	if len(pt.Partitions) != len(l.Partitions) {
		t.Fatalf("sfdisk sees %d partitions, want %d:\n%s", len(pt.Partitions), len(l.Partitions), out)
	}
	for i, p := range l.Partitions {
		got := pt.Partitions[i]
		if !strings.HasSuffix(got.Node, fmt.Sprint(p.Number)) || got.Start != p.Offset/512 || got.Type != fmt.Sprintf("%x", p.Type) ||
			p.Number != 4 && got.Size != p.Size/512 {
			t.Errorf("partition %d: sfdisk sees %+v, want start %d size %d type %x", p.Number, got, p.Offset/512, p.Size/512, p.Type)
		}
	}
	// Each FAT passes fsck.vfat.
	fsck := needTool(t, "fsck.vfat", "dosfstools")
	for _, n := range []int{1, 2, 3} {
		p := l.Partition(n)
		part := filepath.Join(t.TempDir(), "fat.img")
		extract(t, img, part, Partition{Offset: p.Offset, Size: p.Size})
		if out, err := exec.Command(fsck, "-n", part).CombinedOutput(); err != nil {
			t.Errorf("fsck.vfat of partition %d: %v\n%s", n, err, out)
		}
	}
	if !strings.Contains(l.Cmdline, "root=PARTUUID="+piboot.PartUUID(l.Signature, 5)+" ") || !strings.HasSuffix(l.Cmdline, "init=/init\n") {
		t.Errorf("cmdline.txt = %q", l.Cmdline)
	}
}

// TestCheckPiFinds breaks a good image the ways a firmware would refuse
// and sees CheckPi name each.
func TestCheckPiFinds(t *testing.T) {
	good, _ := writePiImage(t)
	orig, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ old, new, want string }{
		{"arm_64bit=1", "arm_64bit=0", "arm_64bit=1"},
		{"tryboot_a_b=1", "tryboot_a_b=0", "tryboot_a_b=1"},
		{"enable_uart=1", "enable_uart=0", "enable_uart=1"},
		{"root=PARTUUID=", "root=PARTUUIX=", "root=PARTUUID="},
		{"[tryboot]\nboot_partition=3", "[tryboot]\nboot_partition=2", "tries 2"},
	} {
		b := bytes.ReplaceAll(orig, []byte(c.old), []byte(c.new))
		if bytes.Equal(b, orig) {
			t.Fatalf("%q is nowhere in the image", c.old)
		}
		p := filepath.Join(t.TempDir(), "bad.img")
		os.WriteFile(p, b, 0o644)
		if err := CheckPi(p); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("with %q: CheckPi = %v, want an error naming %q", c.new, err, c.want)
		}
	}
	// A PC's GPT image is no Pi image.
	f := newFixture(t)
	o := f.options("pc.img")
	writeImage(t, o)
	if err := CheckPi(o.Path); err == nil {
		t.Error("CheckPi accepted a GPT image")
	}
}

func TestPiMissingInputs(t *testing.T) {
	f := newFixture(t)
	kdir, fwdir := piInputs(t)
	os.Remove(filepath.Join(kdir, "bcm2712-rpi-5-b.dtb"))
	_, err := WritePi(PiOptions{Path: filepath.Join(t.TempDir(), "pi.img"), Size: 224 * MiB, RootSize: 16 * MiB, Root: f.tree, KernelDir: kdir, FirmwareDir: fwdir, BootSize: 40 * MiB})
	if err == nil || !strings.Contains(err.Error(), "bcm2712-rpi-5-b.dtb") || !strings.Contains(err.Error(), "Raspberry Pi 5") {
		t.Errorf("WritePi without the Pi 5's device tree: %v", err)
	}
	os.Remove(filepath.Join(fwdir, "start4.elf"))
	_, err = WritePi(PiOptions{Path: filepath.Join(t.TempDir(), "pi.img"), Size: 224 * MiB, RootSize: 16 * MiB, Root: f.tree, KernelDir: kdir, FirmwareDir: fwdir, BootSize: 40 * MiB})
	if err == nil || !strings.Contains(err.Error(), "start4.elf") {
		t.Errorf("WritePi without start4.elf: %v", err)
	}
}

// TestPiBootFSRoundTrip is an OS update's way through a Pi slot: the boot
// set read from a built image (go-diskfs's reader), written by
// WritePiBootFS into slot B's partition of the same image with a cmdline
// for slot B, then the image with autoboot.txt's [all] pointing at B
// passes CheckPi (which reads slot B with go-diskfs and checks its
// cmdline.txt names root B).
func TestPiBootFSRoundTrip(t *testing.T) {
	img, l := writePiImage(t)
	files, cmdline, err := ReadPiBootSet(img)
	if err != nil {
		t.Fatal(err)
	}
	if cmdline != l.Cmdline {
		t.Errorf("cmdline %q, want %q", cmdline, l.Cmdline)
	}
	names := map[string]bool{}
	for _, f := range files {
		names[f.Name] = true
	}
	for _, want := range []string{"config.txt", piboot.KernelFile, "start4.elf", "bcm2711-rpi-4-b.dtb", "overlays/disable-bt.dtbo"} {
		if !names[want] {
			t.Errorf("the boot set lacks %s: %v", want, names)
		}
	}
	if names["cmdline.txt"] || names["autoboot.txt"] {
		t.Errorf("the boot set holds the node's own files: %v", names)
	}
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := l.Partition(piboot.PartBootB)
	cl := piboot.Cmdline(piboot.BaseCmdline(cmdline), l.Signature, "b", false)
	if err := WritePiBootFS(io.NewOffsetWriter(f, b.Offset), PiBootFS{Size: b.Size, Offset: b.Offset, Label: "NODEBOOT-B",
		Files: append(files, piboot.BootFile{Name: "cmdline.txt", Data: []byte(cl)})}); err != nil {
		t.Fatal(err)
	}
	// Make slot B the committed one, as an update's commit would.
	ctl := l.Partition(piboot.PartControl)
	fsys, err := fat32.Read(file.New(f, false), ctl.Size, ctl.Offset, 512)
	if err != nil {
		t.Fatal(err)
	}
	af, err := fsys.OpenFile("/autoboot.txt", os.O_RDWR)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := af.Write(piboot.Autoboot{TrybootAB: true, Boot: 3, Try: 2}.Format()); err != nil {
		t.Fatal(err)
	}
	af.Close()
	if err := CheckPi(img); err != nil {
		t.Fatalf("slot B as an update wrote it: %v", err)
	}
	got, err := ReadPiFile(img, piboot.PartBootB, "cmdline.txt")
	if err != nil || string(got) != cl || !strings.Contains(cl, piboot.PartUUID(l.Signature, piboot.PartRootB)) {
		t.Errorf("slot B's cmdline.txt %q (%v), want %q", got, err, cl)
	}
}

// TestGrowMBRLast grows a real Pi image's data partition after the file
// was made larger (an image written to a bigger SD card): sfdisk, an
// independent reader, sees partition 7 and the extended partition reach
// the new end, every other partition unchanged, and the image still
// passes CheckPi. A second call, and one on an image of its own size,
// change nothing.
func TestGrowMBRLast(t *testing.T) {
	img, l := writePiImage(t)
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if p, grew, err := GrowMBRLast(f, l.Size); err != nil || grew || p.Number != 7 || p.Size != l.Partition(7).Size {
		t.Fatalf("at its own size: %+v grew=%v %v", p, grew, err)
	}
	const bigger = 512*MiB + 300*1024 // not a whole MiB: the end rounds down
	if err := f.Truncate(bigger); err != nil {
		t.Fatal(err)
	}
	p, grew, err := GrowMBRLast(f, bigger)
	if err != nil || !grew {
		t.Fatalf("GrowMBRLast = %+v, %v, %v", p, grew, err)
	}
	data := l.Partition(7)
	if p.Number != 7 || p.Offset != data.Offset || p.Offset+p.Size != 512*MiB {
		t.Errorf("grown to %+v, want partition 7 from %d to 512 MiB", p, data.Offset)
	}
	if _, grew, err := GrowMBRLast(f, bigger); err != nil || grew {
		t.Errorf("again: grew=%v %v", grew, err)
	}
	_, parts, err := ReadMBR(f)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range parts {
		want := l.Partition(q.Number)
		switch q.Number {
		case 4:
			want.Size = 512*MiB - want.Offset
		case 7:
			want.Size = 512*MiB - want.Offset
		}
		if q != want {
			t.Errorf("partition %d: %+v, want %+v", q.Number, q, want)
		}
	}
	sfdisk := needTool(t, "sfdisk", "fdisk")
	out, err := exec.Command(sfdisk, "--json", img).Output()
	if err != nil {
		t.Fatalf("sfdisk --json: %v", err)
	}
	var dump struct {
		PartitionTable struct {
			Partitions []struct {
				Node        string `json:"node"`
				Start, Size int64
			} `json:"partitions"`
		} `json:"partitiontable"`
	}
	if err := json.Unmarshal(out, &dump); err != nil {
		t.Fatal(err)
	}
	ps := dump.PartitionTable.Partitions
	if len(ps) != 7 || !strings.HasSuffix(ps[6].Node, "7") || ps[6].Start != data.Offset/512 || (ps[6].Start+ps[6].Size)*512 != 512*MiB ||
		ps[3].Start+ps[3].Size != 512*MiB/512 {
		t.Errorf("sfdisk sees:\n%s", out)
	}
	// sfdisk --verify finds nothing wrong with the table.
	if out, err := exec.Command(sfdisk, "--verify", img).CombinedOutput(); err != nil || strings.Contains(string(out), "overlap") {
		t.Errorf("sfdisk --verify: %v\n%s", err, out)
	}
	if err := CheckPi(img); err != nil {
		t.Errorf("after growing: %v", err)
	}
}
