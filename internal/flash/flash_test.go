package flash_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nodeboot/nodeboot/internal/flash"
)

// fakeHost is a System over a fake /proc and /sys tree in a temp dir, laid
// out like the kernel's (sys/class/block and sys/block are symlinks into
// sys/devices), with device nodes faked by Stat. Device paths live under
// the temp dir too, so that nothing here can name a real device.
type fakeHost struct {
	flash.Dir
	t     *testing.T
	root  string
	nodes map[string]flash.Node
}

func (h *fakeHost) Stat(path string) (flash.Node, error) {
	if n, ok := h.nodes[path]; ok {
		return n, nil
	}
	return h.Dir.Stat(path)
}

// dev is the fake path of device node name.
func (h *fakeHost) dev(name string) string { return filepath.Join(h.root, "dev", name) }

func (h *fakeHost) file(name, body string) {
	h.t.Helper()
	p := filepath.Join(h.root, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		h.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		h.t.Fatal(err)
	}
}

func (h *fakeHost) symlink(target, name string) {
	h.t.Helper()
	p := filepath.Join(h.root, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		h.t.Fatal(err)
	}
	if err := os.Symlink(target, p); err != nil {
		h.t.Fatal(err)
	}
}

func (h *fakeHost) appendFile(name, line string) {
	h.t.Helper()
	b, _ := os.ReadFile(filepath.Join(h.root, name))
	h.file(name, string(b)+line+"\n")
}

// disk adds a disk of the given size with partitions sdb1... or
// nvme0n1p1... (minor numbers following the disk's).
func (h *fakeHost) disk(name string, major, minor uint32, size int64, model string, parts int) {
	dir := "sys/devices/pci0000:00/usb1/block/" + name
	h.file(dir+"/dev", fmt.Sprintf("%d:%d\n", major, minor))
	h.file(dir+"/size", fmt.Sprintf("%d\n", size/512))
	h.file(dir+"/ro", "0\n")
	h.file(dir+"/removable", "1\n")
	os.MkdirAll(filepath.Join(h.root, dir, "holders"), 0o755)
	os.MkdirAll(filepath.Join(h.root, dir, "slaves"), 0o755)
	if vendor, m, ok := strings.Cut(model, " "); ok {
		h.file(dir+"/device/vendor", vendor+"  \n")
		h.file(dir+"/device/model", m+"\n")
	}
	h.symlink("../../devices/pci0000:00/usb1/block/"+name, "sys/class/block/"+name)
	h.symlink("../devices/pci0000:00/usb1/block/"+name, "sys/block/"+name)
	h.nodes[h.dev(name)] = flash.Node{Mode: fs.ModeDevice, Rdev: flash.DevNum{Major: major, Minor: minor}}
	for i := 1; i <= parts; i++ {
		p := fmt.Sprintf("%s%d", name, i)
		if last := name[len(name)-1]; last >= '0' && last <= '9' {
			p = fmt.Sprintf("%sp%d", name, i) // nvme0n1p1, mmcblk0p1
		}
		h.file(dir+"/"+p+"/dev", fmt.Sprintf("%d:%d\n", major, minor+uint32(i)))
		h.file(dir+"/"+p+"/partition", fmt.Sprintf("%d\n", i))
		h.file(dir+"/"+p+"/size", fmt.Sprintf("%d\n", size/512/int64(parts+1)))
		os.MkdirAll(filepath.Join(h.root, dir, p, "holders"), 0o755)
		h.symlink("../../devices/pci0000:00/usb1/block/"+name+"/"+p, "sys/class/block/"+p)
		h.nodes[h.dev(p)] = flash.Node{Mode: fs.ModeDevice, Rdev: flash.DevNum{Major: major, Minor: minor + uint32(i)}}
	}
}

// dm adds a device-mapper device on top of the given devices.
func (h *fakeHost) dm(name string, minor uint32, dmName, uuid string, on ...string) {
	dir := "sys/devices/virtual/block/" + name
	h.file(dir+"/dev", fmt.Sprintf("253:%d\n", minor))
	h.file(dir+"/size", "2048\n")
	h.file(dir+"/dm/name", dmName+"\n")
	h.file(dir+"/dm/uuid", uuid+"\n")
	os.MkdirAll(filepath.Join(h.root, dir, "holders"), 0o755)
	h.symlink("../../devices/virtual/block/"+name, "sys/class/block/"+name)
	h.symlink("../devices/virtual/block/"+name, "sys/block/"+name)
	for _, o := range on {
		h.symlink("../../"+o, "sys/class/block/"+name+"/slaves/"+o)
		h.symlink("../../"+name, "sys/class/block/"+o+"/holders/"+name)
	}
	h.nodes[h.dev(name)] = flash.Node{Mode: fs.ModeDevice, Rdev: flash.DevNum{Major: 253, Minor: minor}}
}

const gib = 1 << 30

// newFakeHost is a PC whose system disk sda has an EFI partition and the
// root file system, with a 16 GiB USB stick sdb (two partitions, nothing
// mounted) plugged in.
func newFakeHost(t *testing.T) *fakeHost {
	root := t.TempDir()
	h := &fakeHost{Dir: flash.Dir(root), t: t, root: root, nodes: map[string]flash.Node{}}
	h.disk("sda", 8, 0, 512*gib, "ATA Samsung SSD 870", 2)
	h.disk("sdb", 8, 16, 16*gib, "SanDisk Cruzer Blade", 2)
	h.file("proc/self/mountinfo", `22 27 0:21 / /proc rw,relatime - proc proc rw
23 27 0:22 / /sys rw,relatime - sysfs sysfs rw
27 1 8:2 / / rw,relatime shared:1 - ext4 /dev/sda2 rw
28 27 8:1 / /boot/efi rw,relatime shared:2 - vfat /dev/sda1 rw
29 27 0:25 / /tmp rw - tmpfs tmpfs rw
`)
	h.file("proc/swaps", "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n")
	h.file("dev/null", "") // a path that exists and is not a block device
	h.nodes[h.dev("null")] = flash.Node{Mode: fs.ModeDevice | fs.ModeCharDevice, Rdev: flash.DevNum{Major: 1, Minor: 3}}
	return h
}

// image writes a random image of size bytes.
func image(t *testing.T, size int) (string, []byte) {
	t.Helper()
	b := make([]byte, size)
	rand.Read(b)
	p := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p, b
}

// noDevice fails the test when Write gets as far as opening the target.
type noDevice struct{ t *testing.T }

func (d noDevice) OpenWrite(t *flash.Target) (flash.Writer, error) {
	d.t.Errorf("Write opened %s for writing after the checks should have refused it", t.Path)
	return nil, errors.New("test: no device")
}

func (d noDevice) OpenRead(t *flash.Target) (io.ReadCloser, error) {
	return nil, errors.New("test: no device")
}

// TestWriteChecksFake runs the checks against a fake /proc and /sys: each
// case must be refused with an error that says why and what to do.
func TestWriteChecksFake(t *testing.T) {
	img, _ := image(t, 4<<20)
	cases := []struct {
		name  string
		setup func(h *fakeHost)
		dst   string   // device name under the fake /dev
		want  []string // substrings of the error; none: accepted
	}{
		{name: "free stick", dst: "sdb"},
		{
			name: "mounted device",
			setup: func(h *fakeHost) {
				h.appendFile("proc/self/mountinfo", "40 27 8:16 / /mnt/stick rw - vfat /dev/sdb rw")
			},
			dst:  "sdb",
			want: []string{"/dev/sdb is mounted at /mnt/stick", "umount /dev/sdb"},
		},
		{
			name: "mounted partitions",
			setup: func(h *fakeHost) {
				h.appendFile("proc/self/mountinfo", `40 27 8:17 / /media/u/MY\040STICK rw,nosuid - vfat /dev/sdb1 rw`)
				h.appendFile("proc/self/mountinfo", "41 27 8:18 / /media/u/data rw,nosuid - ext4 /dev/sdb2 rw")
			},
			dst:  "sdb",
			want: []string{"/dev/sdb1 is mounted at /media/u/MY STICK", "/dev/sdb2 is mounted at /media/u/data", "umount /dev/sdb1 /dev/sdb2"},
		},
		{
			name: "btrfs partition (anonymous device number)",
			setup: func(h *fakeHost) {
				h.appendFile("proc/self/mountinfo", "40 27 0:52 / /media/u/b rw - btrfs /dev/sdb2 rw")
			},
			dst:  "sdb",
			want: []string{"/dev/sdb2 is mounted at /media/u/b"},
		},
		{
			name: "swap partition",
			setup: func(h *fakeHost) {
				h.appendFile("proc/swaps", "/dev/sdb2                               partition\t8388604\t\t0\t\t-2")
			},
			dst:  "sdb",
			want: []string{"/dev/sdb2 is in use as swap", "swapoff /dev/sdb2"},
		},
		{
			name:  "LVM holder",
			setup: func(h *fakeHost) { h.dm("dm-0", 0, "my--vg-data", "LVM-abcdef", "sdb1") },
			dst:   "sdb",
			want:  []string{"/dev/sdb1 is in use by LVM volume my--vg-data (/dev/dm-0)", "vgchange -an my-vg)"},
		},
		{
			name:  "LUKS holder on the disk",
			setup: func(h *fakeHost) { h.dm("dm-1", 1, "secret", "CRYPT-LUKS2-1234-secret", "sdb") },
			dst:   "sdb",
			want:  []string{"/dev/sdb is in use by encrypted volume secret", "cryptsetup close secret"},
		},
		{
			name: "system disk",
			dst:  "sda",
			want: []string{"system disk", "root file system", "/ is on /dev/sda2"},
		},
		{
			name: "system disk under LVM",
			setup: func(h *fakeHost) {
				h.disk("nvme0n1", 259, 0, 256*gib, "", 2)
				h.dm("dm-2", 2, "vg-root", "LVM-root", "nvme0n1p2")
				h.file("proc/self/mountinfo", "27 1 253:2 / / rw - ext4 /dev/mapper/vg-root rw\n")
			},
			dst:  "nvme0n1",
			want: []string{"system disk", "/ is on /dev/dm-2"},
		},
		{
			name: "system disk on btrfs",
			setup: func(h *fakeHost) {
				h.file("proc/self/mountinfo", "27 1 0:31 /@ / rw - btrfs /dev/sda2 rw\n")
				h.nodes["/dev/sda2"] = h.nodes[h.dev("sda2")]
			},
			dst:  "sda",
			want: []string{"system disk", "/ is on /dev/sda2"},
		},
		{
			name: "partition",
			dst:  "sdb1",
			want: []string{"partition of /dev/sdb", "whole disk", "/dev/sdb"},
		},
		{
			name:  "too small",
			setup: func(h *fakeHost) { h.file("sys/class/block/sdb/size", "8191\n") },
			dst:   "sdb",
			want:  []string{"smaller than the image", "4 MiB (4194304 bytes)", "(4193792 bytes)"},
		},
		{
			name:  "no medium",
			setup: func(h *fakeHost) { h.file("sys/class/block/sdb/size", "0\n") },
			dst:   "sdb",
			want:  []string{"size of 0", "insert the card"},
		},
		{
			name:  "read-only",
			setup: func(h *fakeHost) { h.file("sys/class/block/sdb/ro", "1\n") },
			dst:   "sdb",
			want:  []string{"read-only", "lock switch"},
		},
		{
			name: "character device",
			dst:  "null",
			want: []string{"not a block device", "character device"},
		},
		{
			name: "missing device",
			dst:  "sdz",
			want: []string{"no such device", "lsblk"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newFakeHost(t)
			if c.setup != nil {
				c.setup(h)
			}
			dst := h.dev(c.dst)
			opts := flash.Options{System: h, Device: noDevice{t}}
			tg, err := flash.Check(img, dst, opts)
			if len(c.want) == 0 {
				if err != nil {
					t.Fatalf("refused a free stick: %v", err)
				}
				if tg.Name != "sdb" || tg.Model != "SanDisk Cruzer Blade" || tg.Size != 16*gib || tg.File {
					t.Errorf("target = %+v, want sdb, SanDisk Cruzer Blade, 16 GiB", tg)
				}
				if got := tg.Describe(); got != "SanDisk Cruzer Blade, 16 GiB" {
					t.Errorf("Describe() = %q", got)
				}
				return
			}
			if err == nil {
				t.Fatalf("Check accepted %s, want a refusal saying %q", c.dst, c.want)
			}
			if !errors.Is(err, flash.ErrRefused) {
				t.Errorf("error %q does not match ErrRefused", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			// Write refuses the same way, before opening anything.
			if werr := flash.Write(context.Background(), img, dst, opts); werr == nil || werr.Error() != err.Error() {
				t.Errorf("Write: %v, want %v", werr, err)
			}
		})
	}
}

// TestWriteRegularFile writes to a regular file, which only --force-file
// allows, and never to the image itself.
func TestWriteRegularFile(t *testing.T) {
	img, data := image(t, 9<<20+3*512+17) // three chunks, the last one ragged
	dir := t.TempDir()

	existing := filepath.Join(dir, "existing.img")
	old := bytes.Repeat([]byte{0xAA}, len(data)+1<<20)
	if err := os.WriteFile(existing, old, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := flash.Check(img, existing, flash.Options{})
	if !errors.Is(err, flash.ErrRefused) || !strings.Contains(err.Error(), "--force-file") || !strings.Contains(err.Error(), "not a block device") {
		t.Errorf("regular file without ForceFile: %v, want a refusal that names --force-file", err)
	}
	_, err = flash.Check(img, filepath.Join(dir, "new.img"), flash.Options{})
	if !errors.Is(err, flash.ErrRefused) || !strings.Contains(err.Error(), "--force-file") {
		t.Errorf("missing file without ForceFile: %v, want a refusal that names --force-file", err)
	}
	_, err = flash.Check(img, img, flash.Options{ForceFile: true})
	if !errors.Is(err, flash.ErrRefused) || !strings.Contains(err.Error(), "the image itself") {
		t.Errorf("image onto itself: %v, want a refusal", err)
	}
	link := filepath.Join(dir, "link.img")
	os.Symlink(img, link)
	if _, err = flash.Check(img, link, flash.Options{ForceFile: true}); !errors.Is(err, flash.ErrRefused) {
		t.Errorf("image onto a symlink to itself: %v, want a refusal", err)
	}

	// An existing file is asked about, written in place, not truncated.
	var asked *flash.Target
	var log bytes.Buffer
	opts := flash.Options{ForceFile: true, Log: &log, Progress: io.Discard, Confirm: func(t *flash.Target) error { asked = t; return nil }}
	if err := flash.Write(context.Background(), img, existing, opts); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "does not look like a disk image") {
		t.Errorf("no warning for an image that is neither GPT nor a Pi's MBR:\n%s", log.String())
	}
	// A Raspberry Pi image's MBR is a disk image from nodeboot build.
	pi := filepath.Join(dir, "pi.img")
	piData := append([]byte(nil), data...)
	piData[510], piData[511], piData[446+4], piData[446+3*16+4] = 0x55, 0xaa, 0x0c, 0x0f
	os.WriteFile(pi, piData, 0o644)
	log.Reset()
	if tg, err := flash.Check(pi, existing, flash.Options{ForceFile: true}); err != nil || !tg.ImagePi || tg.ImageGPT {
		t.Errorf("Check of a Pi image: %+v, %v", tg, err)
	}
	if err := flash.Write(context.Background(), pi, existing, opts); err != nil || strings.Contains(log.String(), "does not look like") {
		t.Errorf("writing a Pi image: %v\n%s", err, log.String())
	}
	log.Reset()
	if err := flash.Write(context.Background(), img, existing, opts); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(existing)
	if !bytes.Equal(got[:len(data)], data) || !bytes.Equal(got[len(data):], old[len(data):]) {
		t.Error("the file does not hold the image followed by its old tail")
	}
	if asked == nil || !asked.File || !asked.Exists || asked.Size != int64(len(old)) || asked.ImageSize != int64(len(data)) {
		t.Errorf("Confirm got %+v", asked)
	}
	if !strings.Contains(log.String(), "verified") {
		t.Errorf("log does not say verified:\n%s", log.String())
	}

	// A new file is created without a question.
	newFile := filepath.Join(dir, "new.img")
	opts.Confirm = func(*flash.Target) error { t.Error("asked before creating a new file"); return nil }
	if err := flash.Write(context.Background(), img, newFile, opts); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(newFile); !bytes.Equal(got, data) {
		t.Error("the new file does not hold the image")
	}

	// A refusal from Confirm writes nothing.
	opts.Confirm = func(*flash.Target) error { return errors.New("no") }
	os.WriteFile(existing, old, 0o644)
	if err := flash.Write(context.Background(), img, existing, opts); err == nil || err.Error() != "no" {
		t.Errorf("Write after a no: %v", err)
	}
	if got, _ := os.ReadFile(existing); !bytes.Equal(got, old) {
		t.Error("written although Confirm said no")
	}
}

// faultyDevice writes through the real device, but its writer flips one
// byte at offset bad (like a failing or counterfeit stick), or calls hook
// after each write.
type faultyDevice struct {
	flash.OSDevice
	bad   int64
	hook  func(written int64)
	syncs *int
}

func (d faultyDevice) OpenWrite(t *flash.Target) (flash.Writer, error) {
	w, err := d.OSDevice.OpenWrite(t)
	if err != nil {
		return nil, err
	}
	return &faultyWriter{Writer: w, d: d}, nil
}

type faultyWriter struct {
	flash.Writer
	d   faultyDevice
	off int64
}

func (w *faultyWriter) Write(p []byte) (int, error) {
	if w.d.bad >= w.off && w.d.bad < w.off+int64(len(p)) {
		q := bytes.Clone(p)
		q[w.d.bad-w.off] ^= 0x01
		p = q
	}
	n, err := w.Writer.Write(p)
	w.off += int64(n)
	if w.d.hook != nil {
		w.d.hook(w.off)
	}
	return n, err
}

func (w *faultyWriter) Sync() error {
	if w.d.syncs != nil {
		*w.d.syncs++
	}
	return w.Writer.Sync()
}

// TestWriteVerifyMismatch has a writer corrupt one byte: the read-back must
// catch it and name its offset.
func TestWriteVerifyMismatch(t *testing.T) {
	img, _ := image(t, 10<<20)
	dst := filepath.Join(t.TempDir(), "out.img")
	const bad = 5<<20 + 123
	err := flash.Write(context.Background(), img, dst, flash.Options{ForceFile: true, Device: faultyDevice{bad: bad}})
	var m *flash.MismatchError
	if !errors.As(err, &m) {
		t.Fatalf("Write: %v, want a MismatchError", err)
	}
	if m.Offset != bad {
		t.Errorf("mismatch at %d, want %d", m.Offset, bad)
	}
	for _, w := range []string{"verification failed", fmt.Sprint(bad), "0x50007b"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not say %q", err, w)
		}
	}
}

// TestWriteInterrupted cancels the context during the write: Write stops,
// flushes, and says the target is incomplete.
func TestWriteInterrupted(t *testing.T) {
	img, data := image(t, 20<<20)
	dst := filepath.Join(t.TempDir(), "out.img")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	syncs := 0
	dev := faultyDevice{bad: -1, syncs: &syncs, hook: func(off int64) {
		if off >= 2*flash.ChunkSize {
			cancel()
		}
	}}
	err := flash.Write(ctx, img, dst, flash.Options{ForceFile: true, Device: dev})
	if !errors.Is(err, flash.ErrInterrupted) || !strings.Contains(err.Error(), "incomplete") || !strings.Contains(err.Error(), "8 MiB of 20 MiB") {
		t.Fatalf("Write: %v, want an interruption after 8 MiB that says the target is incomplete", err)
	}
	if syncs != 1 {
		t.Errorf("Sync called %d times, want 1", syncs)
	}
	got, _ := os.ReadFile(dst)
	if !bytes.Equal(got, data[:2*flash.ChunkSize]) {
		t.Errorf("the target holds %d bytes, want the first %d of the image", len(got), 2*flash.ChunkSize)
	}
}

// loopDevice attaches a new file of size bytes to a loop device, or skips
// the test when loop devices are not available here.
func loopDevice(t *testing.T, size int64) (dev, backing string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: loop devices need root")
	}
	if _, err := exec.LookPath("losetup"); err != nil {
		t.Skip("skipping: no losetup (util-linux) here")
	}
	backing = filepath.Join(t.TempDir(), "backing")
	if err := os.WriteFile(backing, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(backing, size); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "--find", "--show", backing).CombinedOutput()
	if err != nil {
		t.Skipf("skipping: loop devices are not available here (losetup --find --show: %v: %s)", err, bytes.TrimSpace(out))
	}
	dev = strings.TrimSpace(string(out))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "--detach", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup --detach %s: %v: %s", dev, err, out)
		}
	})
	return dev, backing
}

// TestWriteLoopDevice writes to and verifies a real block device.
func TestWriteLoopDevice(t *testing.T) {
	dev, backing := loopDevice(t, 64<<20)
	img, data := image(t, 40<<20+3*512)
	var asked *flash.Target
	var log bytes.Buffer
	opts := flash.Options{Log: &log, Progress: &log, Confirm: func(t *flash.Target) error { asked = t; return nil }}
	if err := flash.Write(context.Background(), img, dev, opts); err != nil {
		t.Fatalf("Write: %v\n%s", err, log.String())
	}
	if asked == nil || asked.File || asked.Size != 64<<20 || asked.Name != filepath.Base(dev) || !strings.Contains(asked.Model, backing) {
		t.Errorf("Confirm got %+v", asked)
	}
	f, err := os.Open(backing)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := make([]byte, len(data))
	if _, err := io.ReadFull(f, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Error("the loop device's backing file does not hold the image")
	}
	for _, w := range []string{"writing", "verifying", "100%", "MiB/s", "verified"} {
		if !strings.Contains(log.String(), w) {
			t.Errorf("output does not show %q:\n%s", w, log.String())
		}
	}
}

// TestWriteLoopTooSmall refuses a real device smaller than the image.
func TestWriteLoopTooSmall(t *testing.T) {
	dev, _ := loopDevice(t, 16<<20)
	img, _ := image(t, 20<<20)
	err := flash.Write(context.Background(), img, dev, flash.Options{Device: noDevice{t}})
	if !errors.Is(err, flash.ErrRefused) {
		t.Fatalf("Write: %v, want a refusal", err)
	}
	for _, w := range []string{"smaller than the image", "16 MiB", "20 MiB"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not say %q", err, w)
		}
	}
}

// hideMounts is the host with an empty mount table, to reach the kernel's
// own refusal (O_EXCL).
type hideMounts struct{ flash.Dir }

func (h hideMounts) ReadFile(name string) ([]byte, error) {
	if name == "/proc/self/mountinfo" {
		return nil, nil
	}
	return h.Dir.ReadFile(name)
}

// TestWriteLoopMounted refuses a real mounted device: from mountinfo, and,
// with mountinfo hidden, from the kernel refusing the exclusive open.
func TestWriteLoopMounted(t *testing.T) {
	dev, backing := loopDevice(t, 64<<20)
	mkfs, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		t.Skip("skipping: no mkfs.ext4 here to make the test file system")
	}
	if out, err := exec.Command(mkfs, "-q", "-F", dev).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4 %s: %v: %s", dev, err, out)
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", dev, mnt).CombinedOutput(); err != nil {
		t.Skipf("skipping: cannot mount here (mount %s: %v: %s)", dev, err, bytes.TrimSpace(out))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})
	before, _ := os.ReadFile(backing)

	img, _ := image(t, 8<<20)
	err = flash.Write(context.Background(), img, dev, flash.Options{Device: noDevice{t}})
	if !errors.Is(err, flash.ErrRefused) || !strings.Contains(err.Error(), dev+" is mounted at "+mnt) || !strings.Contains(err.Error(), "umount "+dev) {
		t.Errorf("Write: %v, want a refusal naming the mount", err)
	}

	err = flash.Write(context.Background(), img, dev, flash.Options{System: hideMounts{flash.Dir("/")}})
	if !errors.Is(err, flash.ErrRefused) || !strings.Contains(err.Error(), "busy") {
		t.Errorf("Write with mountinfo hidden: %v, want the kernel's busy refusal", err)
	}
	if after, _ := os.ReadFile(backing); !bytes.Equal(before, after) {
		t.Error("the mounted device was written to")
	}
}
