package datafs

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func TestProbe(t *testing.T) {
	zeros := make([]byte, 2<<20)
	ext := make([]byte, 2<<20)
	ext[1024+0x38], ext[1024+0x39] = 0x53, 0xef
	scribbled := make([]byte, 2<<20)
	copy(scribbled[1024:], bytes.Repeat([]byte("garbage!"), 64))
	marked := make([]byte, 2<<20)
	copy(marked, marker[:])
	copy(marked[1024:], bytes.Repeat([]byte("sb"), 512)) // a superblock without its magic
	torn := make([]byte, 2<<20)
	copy(torn, marker[:100])
	tornThenData := bytes.Clone(torn)
	tornThenData[700<<10] = 1
	wrongMarker := bytes.Clone(marked)
	wrongMarker[300] ^= 0xff
	markedExt := bytes.Clone(marked)
	markedExt[1024+0x38], markedExt[1024+0x39] = 0x53, 0xef
	for _, c := range []struct {
		name string
		b    []byte
		want State
	}{
		{"zeros", zeros, Empty},
		{"ext4 magic", ext, Ext4},
		{"scribbled", scribbled, Unknown},
		{"short zeros", make([]byte, 4096), Empty},
		{"empty device", nil, Unknown},
		{"marker, superblock without magic", marked, Interrupted},
		{"marker and magic", markedExt, Ext4},
		{"torn marker", torn, Interrupted},
		{"torn marker, then data", tornThenData, Unknown},
		{"a marker with one byte changed", wrongMarker, Unknown},
	} {
		got, err := Probe(bytes.NewReader(c.b))
		if err != nil || got != c.want {
			t.Errorf("%s: Probe = %v, %v; want %v", c.name, got, err, c.want)
		}
	}
}

// errPowerCut is what a cutDisk's writes fail with once the power is gone.
var errPowerCut = errors.New("power cut")

// cutDisk is a file standing in for the data partition whose power goes at
// its write number cutAt (counted from 0; -1: never): that write and every
// later one fail, and with torn set the write that meets the cut leaves
// only its first half on disk. It counts the writes it was asked for.
type cutDisk struct {
	f      *os.File
	cutAt  int
	torn   bool
	writes int
	// onWrite, when set, is told of each write (to refuse any).
	onWrite func(off int64, n int)
}

func (d *cutDisk) ReadAt(p []byte, off int64) (int, error) { return d.f.ReadAt(p, off) }

func (d *cutDisk) WriteAt(p []byte, off int64) (int, error) {
	n := d.writes
	d.writes++
	if d.onWrite != nil {
		d.onWrite(off, len(p))
	}
	if d.cutAt >= 0 && n >= d.cutAt {
		if n == d.cutAt && d.torn && len(p) > 1 {
			d.f.WriteAt(p[:len(p)/2], off)
		}
		return 0, errPowerCut
	}
	return d.f.WriteAt(p, off)
}

// Sync does not fsync: writes reach the file in order, which is what a
// flushed device promises; whether the host's disk has them is not the
// question here, and fsync would make each of the many runs slow.
func (d *cutDisk) Sync() error {
	if d.cutAt >= 0 && d.writes > d.cutAt {
		return errPowerCut
	}
	return nil
}

// partition makes a file of size zero bytes standing in for a new data
// partition, as the image writer leaves it.
func partition(t *testing.T, size int64) *os.File {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "data.img"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	return f
}

// zero empties f again without writing (a new sparse file of the same size).
func zero(t *testing.T, f *os.File, size int64) {
	t.Helper()
	if err := f.Truncate(0); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
}

func e2fsckPath(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("e2fsck"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/e2fsck", "/sbin/e2fsck"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Fatal("e2fsck is not installed: apt-get install e2fsprogs (make deps does)")
	return ""
}

// fsck checks the file system in f with e2fsck -fn, an independent reader.
func fsck(t *testing.T, f *os.File) error {
	t.Helper()
	out, err := exec.Command(e2fsckPath(t), "-fn", f.Name()).CombinedOutput()
	if err != nil {
		return fmt.Errorf("e2fsck -fn: %v\n%s", err, out)
	}
	return nil
}

func TestPrepareCreates(t *testing.T) {
	const size = 64 << 20
	f := partition(t, size)
	res, err := Prepare(&cutDisk{f: f, cutAt: -1}, size, Options{})
	if err != nil || !res.Created || res.Found != Empty {
		t.Fatalf("Prepare of an empty partition = %+v, %v; want a new file system", res, err)
	}
	if s, _ := Probe(f); s != Ext4 {
		t.Fatalf("the new file system probes as %v", s)
	}
	if err := fsck(t, f); err != nil {
		t.Fatal(err)
	}
	head := make([]byte, markerSize)
	f.ReadAt(head, 0)
	if !allZero(head) {
		t.Errorf("the creation marker is still there: %q", head[:40])
	}
	// A second Prepare finds it and writes nothing.
	d := &cutDisk{f: f, cutAt: -1}
	if res, err := Prepare(d, size, Options{}); err != nil || res.Created || res.Found != Ext4 || d.writes != 0 {
		t.Errorf("Prepare of our ext4 = %+v, %v, %d writes; want it found and untouched", res, err, d.writes)
	}
}

// TestPrepareAfterPowerCut cuts the power at every write of a creation, on
// a partition small enough for 1 KiB blocks and on one big enough for
// 4 KiB blocks (the two layouts go-diskfs picks), with the cut write lost
// or torn in half (taking turns; both at every write under NODEBOOT_LONG=1).
// After each cut the partition must be recognised as an
// unfinished creation (or a finished file system) and the next Prepare
// must leave a file system e2fsck finds clean.
func TestPrepareAfterPowerCut(t *testing.T) {
	for _, size := range []int64{24 << 20, 520 << 20} {
		f := partition(t, size)
		clean := &cutDisk{f: f, cutAt: -1}
		if _, err := Prepare(clean, size, Options{}); err != nil {
			t.Fatal(err)
		}
		total := clean.writes
		t.Logf("%d MiB: a creation is %d writes", size>>20, total)
		for cut := 0; cut < total; cut++ {
			// Every write is cut; whether it is lost or torn alternates,
			// and both are tried at each under NODEBOOT_LONG=1 (e2fsck
			// on each of the hundreds of results is most of the time).
			variants := []bool{cut%2 == 1}
			if os.Getenv("NODEBOOT_LONG") != "" {
				variants = []bool{false, true}
			}
			for _, torn := range variants {
				zero(t, f, size)
				name := fmt.Sprintf("%d MiB, power cut at write %d of %d (torn %v)", size>>20, cut, total, torn)
				// go-diskfs formats its errors with %v: any error will do.
				if _, err := Prepare(&cutDisk{f: f, cutAt: cut, torn: torn}, size, Options{}); err == nil {
					t.Fatalf("%s: Prepare succeeded", name)
				}
				found, _ := Probe(f)
				res, err := Prepare(&cutDisk{f: f, cutAt: -1}, size, Options{})
				if err != nil {
					t.Fatalf("%s: the partition probes as %v and the next Prepare fails: %v", name, found, err)
				}
				if !res.Created && res.Found != Ext4 {
					t.Fatalf("%s: the next Prepare = %+v", name, res)
				}
				if s, _ := Probe(f); s != Ext4 {
					t.Fatalf("%s: after the next Prepare the partition probes as %v", name, s)
				}
				if err := fsck(t, f); err != nil {
					t.Fatalf("%s: %v", name, err)
				}
			}
		}
	}
}

// TestPrepareGrowsOnlyWhenCreating: the partition grows before a file
// system is created, never under one.
func TestPrepareGrowsOnlyWhenCreating(t *testing.T) {
	const small, big = 32 << 20, 48 << 20
	f := partition(t, small)
	grows := 0
	grow := func() (int64, error) {
		grows++
		return big, f.Truncate(big)
	}
	res, err := Prepare(&cutDisk{f: f, cutAt: -1}, small, Options{Grow: grow})
	if err != nil || !res.Created || res.Size != big || grows != 1 {
		t.Fatalf("Prepare = %+v, %v after %d grows; want a %d-byte file system", res, err, grows, big)
	}
	if err := fsck(t, f); err != nil {
		t.Fatal(err)
	}
	if _, err := Prepare(&cutDisk{f: f, cutAt: -1}, big, Options{Grow: grow}); err != nil || grows != 1 {
		t.Errorf("Prepare of an existing file system grew it (%d) or failed: %v", grows, err)
	}
}

// TestPrepareNeverTouchesForeignData: whatever a partition holds that is
// not empty and not nodeboot's own (finished or unfinished) creation,
// Prepare writes nothing to it.
func TestPrepareNeverTouchesForeignData(t *testing.T) {
	const size = 32 << 20
	mkfs := func(t *testing.T, f *os.File) {
		out, err := exec.Command(filepath.Join(filepath.Dir(e2fsckPath(t)), "mkfs.ext4"), "-q", "-F", f.Name()).CombinedOutput()
		if err != nil {
			t.Fatalf("mkfs.ext4: %v\n%s", err, out)
		}
	}
	ours := func(t *testing.T, f *os.File) {
		if _, err := Prepare(&cutDisk{f: f, cutAt: -1}, size, Options{}); err != nil {
			t.Fatal(err)
		}
	}
	at := func(off int64, b []byte) func(*testing.T, *os.File) {
		return func(t *testing.T, f *os.File) {
			if _, err := f.WriteAt(b, off); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, c := range []struct {
		name    string
		setup   []func(*testing.T, *os.File)
		isExt4  bool
		wantErr bool
	}{
		{"an ext4 made by mkfs.ext4", []func(*testing.T, *os.File){mkfs}, true, false},
		{"our ext4, superblock scribbled over", []func(*testing.T, *os.File){ours, at(1024, bytes.Repeat([]byte("scribble"), 128))}, false, true},
		{"our ext4, its magic alone wiped", []func(*testing.T, *os.File){ours, at(magicOff, []byte{0, 0})}, false, true},
		{"one byte deep in the first MiB", []func(*testing.T, *os.File){at(700<<10, []byte{1})}, false, true},
		{"one byte in the first sector", []func(*testing.T, *os.File){at(17, []byte{1})}, false, true},
		{"another file system's signature at 0", []func(*testing.T, *os.File){at(0, []byte("XFSB\x00\x00\x10\x00"))}, false, true},
		{"a torn marker, then data", []func(*testing.T, *os.File){at(0, marker[:64]), at(4096, []byte("data"))}, false, true},
		{"a marker with one byte changed", []func(*testing.T, *os.File){at(0, append(bytes.Clone(marker[:100]), 'X')), at(101, marker[101:])}, false, true},
		{"data after the first MiB only", []func(*testing.T, *os.File){at(5<<20, []byte("precious"))}, false, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := partition(t, size)
			for _, s := range c.setup {
				s(t, f)
			}
			before := sum(t, f)
			d := &cutDisk{f: f, cutAt: -1}
			if c.name == "data after the first MiB only" {
				// All zero as far as Probe reads: the image writer's
				// promise (it zeroes the first MiB) makes this a new
				// partition, and creating on it is right.
				if _, err := Prepare(d, size, Options{}); err != nil {
					t.Fatal(err)
				}
				return
			}
			d.onWrite = func(off int64, n int) { t.Errorf("Prepare wrote %d bytes at %d", n, off) }
			res, err := Prepare(d, size, Options{Grow: func() (int64, error) { t.Error("Prepare grew the partition"); return 0, nil }})
			if c.wantErr && !errors.Is(err, ErrForeign) {
				t.Errorf("Prepare = %+v, %v; want ErrForeign", res, err)
			}
			if !c.wantErr && (err != nil || res.Found != Ext4 || res.Created) {
				t.Errorf("Prepare = %+v, %v; want the ext4 found and left alone", res, err)
			}
			if sum(t, f) != before {
				t.Error("the partition changed")
			}
		})
	}
}

// TestPrepareClearsAMarkerLeftBehindAFinishedFileSystem: a power cut after
// the magic but before the marker is cleared leaves a complete file
// system; the next Prepare clears the marker (and writes nothing else), so
// that a later damaged superblock is never taken for an unfinished creation.
func TestPrepareClearsAMarkerLeftBehindAFinishedFileSystem(t *testing.T) {
	const size = 32 << 20
	f := partition(t, size)
	clean := &cutDisk{f: f, cutAt: -1}
	if _, err := Prepare(clean, size, Options{}); err != nil {
		t.Fatal(err)
	}
	zero(t, f, size)
	if _, err := Prepare(&cutDisk{f: f, cutAt: clean.writes - 1}, size, Options{}); err == nil {
		t.Fatalf("Prepare cut before its last write: %v", err)
	}
	head := make([]byte, markerSize)
	f.ReadAt(head, 0)
	if !bytes.Equal(head, marker[:]) {
		t.Fatal("the last write of a creation is not the one clearing the marker")
	}
	d := &cutDisk{f: f, cutAt: -1}
	d.onWrite = func(off int64, n int) {
		if off != 0 || n != markerSize {
			t.Errorf("Prepare wrote %d bytes at %d; want only the marker cleared", n, off)
		}
	}
	res, err := Prepare(d, size, Options{})
	if err != nil || res.Found != Ext4 || res.Created || d.writes != 1 {
		t.Fatalf("Prepare = %+v, %v after %d writes", res, err, d.writes)
	}
	f.ReadAt(head, 0)
	if !allZero(head) {
		t.Error("the marker is still there")
	}
	if err := fsck(t, f); err != nil {
		t.Fatal(err)
	}
}

func sum(t *testing.T, f *os.File) [32]byte {
	t.Helper()
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, 1<<62)); err != nil {
		t.Fatal(err)
	}
	return [32]byte(h.Sum(nil))
}

func TestFindByLabel(t *testing.T) {
	sys := t.TempDir()
	for dev, uevent := range map[string]string{
		"vda":  "MAJOR=253\nMINOR=0\nDEVNAME=vda\nDEVTYPE=disk\n",
		"vda2": "MAJOR=253\nMINOR=2\nDEVNAME=vda2\nDEVTYPE=partition\nPARTN=2\nPARTNAME=nodeboot-root-a\n",
		"vda4": "MAJOR=253\nMINOR=4\nDEVNAME=vda4\nDEVTYPE=partition\nPARTN=4\nPARTNAME=nodeboot-data\n",
	} {
		d := filepath.Join(sys, "class", "block", dev)
		os.MkdirAll(d, 0o755)
		os.WriteFile(filepath.Join(d, "uevent"), []byte(uevent), 0o644)
	}
	got, err := FindByLabel(sys, "/dev", Label)
	if err != nil || got != "/dev/vda4" {
		t.Errorf("FindByLabel = %q, %v", got, err)
	}
	if _, err := FindByLabel(sys, "/dev", "nope"); err == nil {
		t.Error("found a partition that does not exist")
	}
}

func FuzzProbe(f *testing.F) {
	f.Add(make([]byte, 2048))
	f.Add([]byte("x"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := Probe(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		head := b[:min(len(b), probeSize)]
		// Only what nodeboot itself leaves may ever be formatted.
		switch s {
		case Empty:
			if !allZero(head) {
				t.Error("non-zero bytes probe as empty")
			}
		case Interrupted:
			if !bytes.Equal(head[:markerSize], marker[:]) && !(tornMarker(head[:markerSize]) && allZero(head[markerSize:])) {
				t.Error("bytes that are not our unfinished creation probe as one")
			}
			if len(head) >= magicOff+2 && binary.LittleEndian.Uint16(head[magicOff:]) == ext4Magic {
				t.Error("a superblock with its magic probes as an unfinished creation")
			}
		}
	})
}

func TestFindByPartUUID(t *testing.T) {
	sys, dev := t.TempDir(), t.TempDir()
	// sysfs: /sys/class/block/<part> links to .../<disk>/<part>.
	devices := filepath.Join(sys, "devices", "platform", "mmc")
	for disk, parts := range map[string][]string{"mmcblk0": {"mmcblk0p1", "mmcblk0p7"}, "sda": {"sda7"}} {
		for i, p := range parts {
			d := filepath.Join(devices, disk, p)
			os.MkdirAll(d, 0o755)
			n := "1"
			if i > 0 || disk == "sda" {
				n = "7"
			}
			os.WriteFile(filepath.Join(d, "partition"), []byte(n+"\n"), 0o644)
			os.MkdirAll(filepath.Join(sys, "class", "block"), 0o755)
			if err := os.Symlink(d, filepath.Join(sys, "class", "block", p)); err != nil {
				t.Fatal(err)
			}
		}
	}
	mbr := func(sig uint32) []byte {
		b := make([]byte, 512)
		binary.LittleEndian.PutUint32(b[440:], sig)
		b[510], b[511] = 0x55, 0xaa
		return b
	}
	os.WriteFile(filepath.Join(dev, "sda"), mbr(0x11111111), 0o644)
	os.WriteFile(filepath.Join(dev, "mmcblk0"), mbr(0xa97847d0), 0o644)

	uuid := PartUUIDFromCmdline("console=ttyAMA0 root=PARTUUID=a97847d0-05 nodeboot.data=PARTUUID=A97847D0-07 init=/init")
	if uuid != "a97847d0-07" {
		t.Fatalf("PartUUIDFromCmdline = %q", uuid)
	}
	got, err := FindByPartUUID(sys, dev, uuid)
	if err != nil || got != filepath.Join(dev, "mmcblk0p7") {
		t.Errorf("FindByPartUUID = %q, %v; want the mmcblk0p7 of the disk with that signature, not sda7", got, err)
	}
	if got, err := FindByPartUUID(sys, dev, "11111111-07"); err != nil || got != filepath.Join(dev, "sda7") {
		t.Errorf("FindByPartUUID(sda's) = %q, %v", got, err)
	}
	for _, bad := range []string{"a97847d0-06", "deadbeef-07", "not-a-uuid", "0fc63daf-8483-4772-8e79-3d69d8477de4"} {
		if got, err := FindByPartUUID(sys, dev, bad); err == nil {
			t.Errorf("FindByPartUUID(%q) = %q, want an error", bad, got)
		}
	}
	if PartUUIDFromCmdline("root=PARTUUID=a97847d0-05") != "" {
		t.Error("a command line without nodeboot.data= named a data partition")
	}
}
