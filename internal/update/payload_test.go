package update

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nodeboot/nodeboot/internal/disk"
	"github.com/nodeboot/nodeboot/internal/image"
	"github.com/nodeboot/nodeboot/internal/ospayload"
)

// TestDamagedPayloadsNoEntry sends 1000 damaged copies of a payload (a
// flipped bit anywhere, or a cut anywhere) to one node: every one is
// refused, no boot entry is written, the booted slot and its kernel do not
// change; then the intact payload still installs (resuming over whatever
// the damaged ones left).
func TestDamagedPayloadsNoEntry(t *testing.T) {
	v1 := newImage(t, 1, 2, healthy, testKey, nil)
	w := newWorld(t, v1)
	cur := w.settle()
	v2 := newImage(t, 2, 4, healthy, testKey, nil)
	before := w.snapshot()
	r := rand.New(rand.NewPCG(21, 21))
	b := bytes.Clone(v2.stream)
	n := 1000
	if testing.Short() {
		n = 200
	}
	for i := range n {
		var in []byte
		var what string
		if i%3 == 2 {
			cut := r.IntN(len(b))
			in, what = b[:cut], fmt.Sprintf("cut at %d", cut)
		} else {
			at, x := r.IntN(len(b)), byte(1)<<r.IntN(8)
			b[at] ^= x
			in, what = bytes.Clone(b), fmt.Sprintf("bit flipped at %d", at)
			b[at] ^= x
		}
		if _, err := cur.u.Install(context.Background(), bytes.NewReader(in), InstallOptions{}); err == nil {
			t.Fatalf("%s: accepted", what)
		}
		if got := entriesOf(w); strings.Join(got, " ") != "nodeboot-a.conf" {
			t.Fatalf("%s: entries %v", what, got)
		}
		after := w.snapshot()
		for _, k := range []string{"dev:a", "esp:" + disk.KernelPath("a"), "esp:/loader/entries/nodeboot-a.conf", "esp:/loader/loader.conf"} {
			if !bytes.Equal(after[k], before[k]) {
				t.Fatalf("%s: %s changed", what, k)
			}
		}
	}
	w.images = append(w.images, v2)
	if _, err := cur.u.Install(context.Background(), bytes.NewReader(v2.stream), InstallOptions{}); err != nil {
		t.Fatal(err)
	}
	if r := w.settle(); r.img != v2 {
		t.Fatalf("runs %s", r.img.id)
	}
}

// TestRealImage updates from one real disk image to another: the payload
// made by ospayload.FromImage from what `nodeboot build --format disk`
// writes, installed over real files, booted by the emulated systemd-boot;
// the slot it boots holds a squashfs that unsquashfs reads.
func TestRealImage(t *testing.T) {
	dir := t.TempDir()
	mk := func(name, content string) (string, *disk.Layout) {
		kernel := filepath.Join(dir, name+".bzImage")
		if err := os.WriteFile(kernel, []byte("kernel of "+name+strings.Repeat("k", 70000)), 0o600); err != nil {
			t.Fatal(err)
		}
		efi := filepath.Join(dir, "systemd-bootx64.efi")
		os.WriteFile(efi, []byte("efi"), 0o600)
		tr := image.NewTree()
		if err := tr.AddData("/init", []byte("#!/not/a/shell\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := tr.AddData("/apps/hello/index.js", []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		img := filepath.Join(dir, name+".img")
		l, err := disk.Write(disk.Options{Path: img, Size: 768 * disk.MiB, Root: tr, Kernel: kernel,
			Cmdline: "console=ttyS0 panic=10", SystemdBoot: efi, Seed: name})
		if err != nil {
			t.Fatal(err)
		}
		return img, l
	}
	oldImg, l := mk("old", "console.log('v1')\n")
	newImg, _ := mk("new", "console.log('v2')\n")
	p, err := ospayload.FromImage(newImg, ospayload.BuildOptions{Key: testKey, Version: 2, Built: t0})
	if err != nil {
		t.Fatal(err)
	}

	// The node: the old image's ESP files and slots as real files.
	oldBoot, err := disk.ReadBoot(oldImg)
	if err != nil {
		t.Fatal(err)
	}
	esp, state := OSDir{Root: filepath.Join(dir, "esp")}, OSDir{Root: filepath.Join(dir, "state")}
	for name, b := range map[string][]byte{"/loader/loader.conf": disk.LoaderConf(), disk.EntriesDir + "/" + oldBoot.Entry.ID: []byte(
		"title t\nsort-key nodeboot\nlinux " + oldBoot.Entry.Linux + "\noptions " + oldBoot.Entry.Options + "\n"), oldBoot.Entry.Linux: oldBoot.Kernel} {
		if err := esp.WriteFile(name, b); err != nil {
			t.Fatal(err)
		}
	}
	f, _ := os.Open(oldImg)
	defer f.Close()
	slots := map[string]disk.Partition{"a": l.RootA, "b": l.RootB}
	var cfgSlots []Slot
	for _, n := range []string{"a", "b"} {
		part := slots[n]
		// Sparse files of the slots' size; slot A with the old squashfs.
		var b []byte
		if n == "a" {
			b = make([]byte, l.RootFSSize)
			f.ReadAt(b, part.Offset)
		}
		dev := filepath.Join(dir, "slot-"+n)
		if err := os.WriteFile(dev, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(dev, part.Size); err != nil {
			t.Fatal(err)
		}
		cfgSlots = append(cfgSlots, Slot{Name: n, PartUUID: part.GUID, Size: part.Size, Open: func() (Device, error) { return OpenDevice(dev) }})
	}
	cfg := Config{ESP: esp, State: state, Slots: cfgSlots, Running: Image{ID: "old", Version: 1},
		Arch: "amd64", Target: "uefi", Keys: []ed25519.PublicKey{testKey.Public().(ed25519.PublicKey)}, Clock: fixedClock{}}
	cfg.Booted = SlotFromCmdline(oldBoot.Entry.Options, cfgSlots)
	if cfg.Booted != "a" {
		t.Fatalf("booted slot %q from %q", cfg.Booted, oldBoot.Entry.Options)
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
	start := time.Now()
	if _, err := u.Install(context.Background(), stream, InstallOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Logf("installed %d bytes in %v", p.Size(), time.Since(start).Round(time.Millisecond))

	e, err := sdBoot(esp)
	if err != nil {
		t.Fatal(err)
	}
	if SlotFromCmdline(e.Options, cfgSlots) != "b" || !strings.Contains(e.Options, "console=ttyS0 panic=10") || !strings.Contains(e.Options, "init=/init") {
		t.Fatalf("boots %s: %q", e.ID, e.Options)
	}
	k, _ := esp.ReadFile(e.Linux)
	if !strings.HasPrefix(string(k), "kernel of new") {
		t.Errorf("slot B's kernel is %.20q", k)
	}
	unsquashfs, err := exec.LookPath("unsquashfs")
	if err != nil {
		if os.Getenv("NODEBOOT_E2E") != "" {
			t.Fatal("unsquashfs is not installed (apt-get install squashfs-tools)")
		}
		t.Skip("unsquashfs is not installed")
	}
	out := filepath.Join(dir, "out")
	if b, err := exec.Command(unsquashfs, "-d", out, filepath.Join(dir, "slot-b")).CombinedOutput(); err != nil {
		t.Fatalf("unsquashfs of slot B: %v\n%s", err, b)
	}
	if b, _ := os.ReadFile(filepath.Join(out, "apps/hello/index.js")); string(b) != "console.log('v2')\n" {
		t.Errorf("slot B's app: %q", b)
	}
}
