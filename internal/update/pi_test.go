package update

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nodeboot/nodeboot/internal/disk"
	"github.com/nodeboot/nodeboot/internal/ospayload"
	"github.com/nodeboot/nodeboot/internal/piboot"
	"github.com/nodeboot/nodeboot/internal/tryboot"
)

// The Pi's world: a control partition (memDir, also the "ESP"), the two
// slots' boot partitions and root slots (memDevices), /data, and an
// emulated Pi 4 bootloader: it reads autoboot.txt (its own parser), boots
// [tryboot]'s partition when the tryboot flag is set, [all]'s otherwise,
// and clears the flag at every boot and with the power. A boot partition
// boots an image only when its bytes are exactly the FAT file system of
// that image's boot set with a cmdline.txt naming the slot's own root and
// the data partition, and the root slot it names holds that image's root.

const (
	piSig      = 0x5eed1234
	piBootSize = 40 * disk.MiB
)

// memBuf is an io.WriterAt in memory: the expected boot partitions.
type memBuf struct{ b []byte }

func (m *memBuf) WriteAt(p []byte, off int64) (int, error) {
	if end := off + int64(len(p)); int64(len(m.b)) < end {
		m.b = append(m.b, make([]byte, end-int64(len(m.b)))...)
	}
	copy(m.b[off:], p)
	return len(p), nil
}

type piImage struct {
	*testImage
	files []piboot.BootFile
	boot  map[string][]byte // slot → its boot partition's expected bytes
}

func newPiImage(t testing.TB, v uint64, rootChunks int, act behaviour) *piImage {
	t.Helper()
	files := []piboot.BootFile{
		{Name: piboot.KernelFile, Data: randomBytes(chunk+chunk/3, v*7)},
		{Name: "config.txt", Data: piboot.ConfigTxt()},
		{Name: "start4.elf", Data: randomBytes(3000, v*7+1)},
		{Name: "overlays/uart0.dtbo", Data: []byte(fmt.Sprintf("dtbo %d", v))},
	}
	var set bytes.Buffer
	if err := piboot.WriteBootSet(&set, files); err != nil {
		t.Fatal(err)
	}
	img := &testImage{id: fmt.Sprintf("img%d", v), version: v, act: act,
		kernel: set.Bytes(), rootfs: randomBytes(rootChunks*chunk+100, v*2+1)}
	built := t0.Add(time.Duration(v) * time.Hour)
	m := &ospayload.Manifest{Image: img.id, Version: v, Arch: "arm64", Target: "pi", Built: built,
		Title: "nodeboot", Cmdline: "panic=10 init=/init", ChunkSize: chunk,
		Kernel: hashChunks(img.kernel), RootFS: hashChunks(img.rootfs)}
	h, err := ospayload.Sign(m, testKey)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	h.WriteTo(&b)
	b.Write(img.kernel)
	b.Write(img.rootfs)
	img.stream, img.header = b.Bytes(), h
	pi := &piImage{testImage: img, files: files, boot: map[string][]byte{}}
	for _, slot := range []string{"a", "b"} {
		// Written here by the test from the image's files and the
		// cmdline it expects, with piboot's own Cmdline.
		cl := "console=tty1 console=serial0,115200 panic=10 init=/init root=PARTUUID=" + piboot.PartUUID(piSig, piboot.RootPartition(slot)) +
			" rootfstype=squashfs ro rootwait nodeboot.data=PARTUUID=" + piboot.PartUUID(piSig, piboot.PartData) + "\n"
		var fat memBuf
		if err := disk.WritePiBootFS(&fat, disk.PiBootFS{Size: piBootSize, Offset: int64(piboot.BootPartition(slot)) * piBootSize,
			Label: "NODEBOOT-" + strings.ToUpper(slot), VolumeID: piSig ^ uint32(piboot.BootPartition(slot))<<24, MTime: built,
			Files: append(append([]piboot.BootFile(nil), files...), piboot.BootFile{Name: "cmdline.txt", Data: []byte(cl)})}); err != nil {
			t.Fatal(err)
		}
		pi.boot[slot] = fat.b
	}
	return pi
}

// control is the control partition as tryboot sees it: autoboot.txt
// rewritten in place is one sector, written whole or not at all.
type control struct{ d *memDir }

func (c control) ReadFile(name string) ([]byte, error) { return c.d.ReadFile(name) }
func (c control) WriteInPlace(name string, data []byte) error {
	old, err := c.d.ReadFile(name)
	if err != nil || len(old) != len(data) {
		return fmt.Errorf("in-place write of %s changes its length", name)
	}
	c.d.cr.point()
	c.d.files[clean(name)] = append([]byte(nil), data...)
	return nil
}

type piWorld struct {
	t      testing.TB
	cr     *crasher
	ctl    *memDir
	state  *memDir
	boot   map[string]*memDevice
	root   map[string]*memDevice
	flag   bool
	images []*piImage
	boots  int
	log    []string
}

func newPiWorld(t testing.TB, first *piImage) *piWorld {
	cr := &crasher{}
	w := &piWorld{t: t, cr: cr, ctl: newMemDir(cr), state: newMemDir(cr),
		boot: map[string]*memDevice{"a": newMemDevice(cr, piBootSize), "b": newMemDevice(cr, piBootSize)},
		root: map[string]*memDevice{"a": newMemDevice(cr, slotSize), "b": newMemDevice(cr, slotSize)}}
	// As `nodeboot build --target pi` writes it: autoboot.txt boots A,
	// tries B; slot A holds the first image; B is empty.
	w.ctl.files["/autoboot.txt"] = piboot.Autoboot{TrybootAB: true, Boot: 2, Try: 3}.Format()
	w.boot["a"].disk["dev"] = append([]byte(nil), first.boot["a"]...)
	w.root["a"].disk["dev"] = append([]byte(nil), first.rootfs...)
	w.images = append(w.images, first)
	return w
}

// firmware is the bootloader's choice: the partition it starts.
func (w *piWorld) firmware() int {
	flag := w.flag
	w.flag = false
	b := w.ctl.files["/autoboot.txt"]
	if len(b) > 512 {
		b = b[:512]
	}
	part, try, ab, section := 1, 0, false, "all"
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
		case line == "tryboot_a_b=1":
			ab = true
		case strings.HasPrefix(line, "boot_partition="):
			n, _ := strconv.Atoi(strings.TrimPrefix(line, "boot_partition="))
			if section == "all" {
				part = n
			} else if section == "tryboot" {
				try = n
			}
		}
	}
	if flag && ab && try != 0 {
		part = try
	}
	return part
}

// imageIn says which complete image slot holds (nil if none).
func (w *piWorld) imageIn(slot string) *piImage {
	boot, root := w.boot[slot].bytes(), w.root[slot].bytes()
	for _, i := range w.images {
		want := i.boot[slot]
		if len(boot) >= len(want) && bytes.Equal(boot[:len(want)], want) && len(root) >= len(i.rootfs) && bytes.Equal(root[:len(i.rootfs)], i.rootfs) {
			return i
		}
	}
	return nil
}

type rebootFunc func(string) error

func (f rebootFunc) Reboot(reason string) error { return f(reason) }

func (w *piWorld) config(booted string, running *piImage, state *memDir) Config {
	var slots []Slot
	boots := map[string]BootPartition{}
	for _, n := range []string{"a", "b"} {
		slots = append(slots, Slot{Name: n, PartUUID: piboot.PartUUID(piSig, piboot.RootPartition(n)), Size: slotSize, Open: w.root[n].Open})
		boots[n] = BootPartition{Offset: int64(piboot.BootPartition(n)) * piBootSize, Size: piBootSize, Open: w.boot[n].Open}
	}
	return Config{ESP: w.ctl, State: state, Slots: slots, Booted: booted,
		Running: Image{ID: running.id, Version: running.version, Built: t0.Add(time.Duration(running.version) * time.Hour)},
		Arch:    "arm64", Target: "pi", Keys: []ed25519.PublicKey{testKey.Public().(ed25519.PublicKey)}, Clock: fixedClock{},
		Reboot: rebootFunc(func(string) error { w.flag = false; return nil }),
		Pi: &PiConfig{Switch: &tryboot.Switch{Control: control{w.ctl}, State: state, Clock: fixedClock{}.Now}, Boot: boots, Signature: piSig,
			TryReboot: rebootFunc(func(string) error { w.flag = true; return nil })}}
}

type piBoot struct {
	slot    string
	img     *piImage
	u       *Updater
	bs      *BootState
	reboots bool
}

func (w *piWorld) boot1() piBoot {
	w.t.Helper()
	w.boots++
	part := w.firmware()
	slot := map[int]string{2: "a", 3: "b"}[part]
	if slot == "" {
		w.t.Fatalf("boot %d: the firmware starts partition %d; log %v", w.boots, part, w.log)
	}
	img := w.imageIn(slot)
	if img == nil {
		w.t.Fatalf("boot %d: the firmware starts slot %s, which holds no complete image (the node is bricked); log %v", w.boots, slot, w.log)
	}
	w.log = append(w.log, fmt.Sprintf("boot %d: %s → %s", w.boots, slot, img.id))
	r := piBoot{slot: slot, img: img}
	if img.act == panicking {
		r.reboots = true // panic=10: a plain reboot, the flag is gone
		return r
	}
	state := w.state
	if img.act == degraded {
		state = newMemDir(w.cr)
	}
	u, err := New(w.config(slot, img, state))
	if err != nil {
		w.t.Fatal(err)
	}
	r.u = u
	if r.bs, err = u.Boot(); err != nil {
		w.t.Fatalf("boot %d: Boot: %v", w.boots, err)
	}
	if r.bs.Trial {
		switch img.act {
		case healthy:
			if _, err := u.Commit(); err != nil {
				w.t.Fatalf("boot %d: Commit: %v", w.boots, err)
			}
		case unhealthy:
			u.Note("apps started")
			if err := u.Fail("app web never became healthy: port 3000 refused connections for 30 s"); err != nil {
				w.t.Fatalf("boot %d: Fail: %v", w.boots, err)
			}
			r.reboots = true
		case degraded:
			if err := u.Fail("the node runs degraded: no app runs: /etc/nodeboot/runtime.json: unexpected end of JSON input"); err != nil {
				w.t.Fatalf("boot %d: Fail: %v", w.boots, err)
			}
			r.reboots = true
		}
	}
	return r
}

func (w *piWorld) settle() piBoot {
	w.t.Helper()
	for range 4 {
		if r := w.boot1(); !r.reboots {
			return r
		}
	}
	w.t.Fatalf("the node never settled: %v", w.log)
	return piBoot{}
}

func (w *piWorld) powerCut() {
	w.flag = false
	w.ctl.cut()
	w.state.cut()
	for _, d := range []map[string]*memDevice{w.boot, w.root} {
		for _, dev := range d {
			dev.cut()
		}
	}
}

// update sends img to the running node, which reboots into its trial.
func (w *piWorld) update(img *piImage) (piBoot, error) {
	w.t.Helper()
	cur := w.settle()
	w.images = append(w.images, img)
	if _, err := cur.u.Install(context.Background(), bytes.NewReader(img.stream), InstallOptions{}); err != nil {
		return cur, err
	}
	if err := cur.u.RebootIntoTrial(); err != nil {
		w.t.Fatal(err)
	}
	return w.settle(), nil
}

func TestPiUpdateCommits(t *testing.T) {
	v1 := newPiImage(t, 1, 3, healthy)
	w := newPiWorld(t, v1)
	first := w.settle()
	if first.slot != "a" || first.img != v1 || first.bs.Trial || first.bs.Settled != nil {
		t.Fatalf("first boot: %+v", first)
	}
	st, err := first.u.Status()
	if err != nil || st.Slots[0].State != "good" || st.Slots[1].State != "empty" {
		t.Fatalf("status of a new disk: %+v %v", st, err)
	}
	v2 := newPiImage(t, 2, 5, healthy)
	w.images = append(w.images, v2)
	armed, err := first.u.Install(context.Background(), bytes.NewReader(v2.stream), InstallOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if armed.Slot != "b" || armed.Image.ID != "img2" || armed.From.ID != "img1" {
		t.Errorf("armed %+v", armed)
	}
	if st, _ := first.u.Status(); st.Slots[1].State != "trial" || st.Slots[1].Image.ID != "img2" {
		t.Errorf("status after arming: %+v", st.Slots)
	}
	if w.imageIn("b") != v2 {
		t.Fatal("slot B does not hold img2 after the install")
	}
	// Armed is not bootable by itself: a plain reboot (or a power cut)
	// starts A; only the tryboot reboot starts B, and only once.
	if err := first.u.RebootIntoTrial(); err != nil {
		t.Fatal(err)
	}
	if !w.flag {
		t.Fatal("RebootIntoTrial did not reboot with the tryboot flag")
	}
	r := w.boot1()
	if r.slot != "b" || r.img != v2 || !r.bs.Trial {
		t.Fatalf("trial boot: %+v (%v)", r, w.log)
	}
	st, _ = r.u.Status()
	if st.Last == nil || !st.Last.OK || st.Last.String() != "updated to img2 (was img1)" {
		t.Errorf("outcome %v", st.Last)
	}
	if a, _ := piboot.ParseAutoboot(w.ctl.files["/autoboot.txt"]); a.Boot != 3 || a.Try != 2 || !a.TrybootAB {
		t.Errorf("autoboot.txt after the commit: %+v", a)
	}
	// Committed: B boots from now on, A stays good.
	r = w.boot1()
	if r.slot != "b" || r.bs.Trial || r.bs.Settled != nil {
		t.Errorf("after the commit: %+v", r)
	}
	st, _ = r.u.Status()
	if st.Slots[0].State != "good" || st.Slots[0].Image.ID != "img1" || st.Slots[1].State != "good" || !st.Slots[1].Booted {
		t.Errorf("status after the commit: %+v", st.Slots)
	}
	// And back to A.
	v3 := newPiImage(t, 3, 2, healthy)
	if r, err := w.update(v3); err != nil || r.slot != "a" || r.img != v3 {
		t.Fatalf("B→A: %v %+v", err, r)
	}
}

func TestPiFailedTrialsRollBack(t *testing.T) {
	for _, c := range []struct {
		act    behaviour
		reason string
	}{
		{unhealthy, "update to img2 failed: app web never became healthy"},
		{panicking, "update to img2 failed: the node restarted before the trial was committed"},
		// Its records were on a tmpfs: the reason comes through the
		// control partition.
		{degraded, "update to img2 failed: the node runs degraded"},
	} {
		t.Run(fmt.Sprint(c.act), func(t *testing.T) {
			v1 := newPiImage(t, 1, 3, healthy)
			w := newPiWorld(t, v1)
			v2 := newPiImage(t, 2, 3, c.act)
			r, err := w.update(v2)
			if err != nil {
				t.Fatal(err)
			}
			if r.slot != "a" || r.img != v1 {
				t.Fatalf("after the failed trial %s runs", r.img.id)
			}
			if n := strings.Count(strings.Join(w.log, "\n"), "→ img2"); n != 1 {
				t.Errorf("img2 booted %d times, want once: %v", n, w.log)
			}
			if r.bs.Settled == nil || !strings.HasPrefix(r.bs.Settled.String(), c.reason) {
				t.Errorf("settled %v, want %q", r.bs.Settled, c.reason)
			}
			st, _ := r.u.Status()
			if st.Slots[1].State != "failed" || st.Slots[1].Image.ID != "img2" || st.Last == nil || st.Last.OK {
				t.Errorf("status %+v last %v", st.Slots, st.Last)
			}
			if c.act == unhealthy && (len(st.Last.Notes) == 0 || st.Last.Notes[0] != "apps started") {
				t.Errorf("the trial's notes are lost: %+v", st.Last)
			}
			for range 3 {
				if r := w.boot1(); r.img != v1 || r.bs.Settled != nil {
					t.Fatalf("after the rollback: %+v %v", r, w.log)
				}
			}
			// While on trial nothing else is accepted; sent again (now
			// healthy) it is tried again.
			v2.act = healthy
			if r, err := w.update(v2); err != nil || r.img != v2 {
				t.Errorf("sent again: %v, runs %v", err, r.img)
			}
		})
	}
}

func TestPiRefusesOnTrial(t *testing.T) {
	v1 := newPiImage(t, 1, 2, healthy)
	w := newPiWorld(t, v1)
	cur := w.settle()
	v2 := newPiImage(t, 2, 2, unhealthy)
	w.images = append(w.images, v2)
	if _, err := cur.u.Install(context.Background(), bytes.NewReader(v2.stream), InstallOptions{}); err != nil {
		t.Fatal(err)
	}
	cur.u.RebootIntoTrial()
	w.flag = true
	part := w.firmware()
	if part != 3 {
		t.Fatalf("tryboot started partition %d", part)
	}
	u, err := New(w.config("b", v2, w.state))
	if err != nil {
		t.Fatal(err)
	}
	if bs, err := u.Boot(); err != nil || !bs.Trial {
		t.Fatalf("Boot = %+v, %v", bs, err)
	}
	v3 := newPiImage(t, 3, 2, healthy)
	if err := u.Check(v3.header, InstallOptions{}); !errors.Is(err, ErrTrial) {
		t.Errorf("an update during the trial: %v", err)
	}
	if _, err := cur.u.Commit(); !errors.Is(err, ErrNotTrial) {
		t.Errorf("Commit of the committed slot: %v", err)
	}
	// A boot set larger than the boot partition is refused before
	// anything is written.
	big := *v3.header.Manifest
	big.Kernel = ospayload.Section{Size: piBootSize, Chunks: make([]string, piBootSize/chunk)}
	for i := range big.Kernel.Chunks {
		big.Kernel.Chunks[i] = strings.Repeat("0", 64)
	}
	h, err := ospayload.Sign(&big, testKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := cur.u.Check(h, InstallOptions{}); !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "boot set") {
		t.Errorf("a boot set too large: %v", err)
	}
}

// TestPiPowerCuts cuts the power before every step of an update on a Pi
// (each write and sync of the boot partition, the root slot, the records,
// autoboot.txt), for a good and each kind of bad image: after each cut
// every boot starts a complete image, the node settles on the old or the
// new one, and sending the update again finishes it (or rolls it back).
func TestPiPowerCuts(t *testing.T) {
	for _, act := range []behaviour{healthy, unhealthy, panicking, degraded} {
		t.Run(act.String(), func(t *testing.T) {
			steps := 0
			v1 := newPiImage(t, 1, 2, healthy)
			next := newPiImage(t, 3, 3, act)
			for at := 1; ; at++ {
				w := newPiWorld(t, v1)
				cur := w.settle()
				w.images = append(w.images, next)
				w.cr.n, w.cr.at = 0, at
				cut := func() (cut bool) {
					defer func() {
						if r := recover(); r != nil {
							if _, ok := r.(powerCut); !ok {
								panic(r)
							}
							cut = true
						}
					}()
					if _, err := cur.u.Install(context.Background(), bytes.NewReader(next.stream), InstallOptions{}); err != nil {
						t.Fatalf("step %d: %v", at, err)
					}
					cur.u.RebootIntoTrial()
					w.settle()
					return false
				}()
				w.cr.at = 0
				if !cut {
					steps = at - 1
					break
				}
				w.powerCut()
				w.log = append(w.log, fmt.Sprintf("power cut before step %d", at))
				r := w.settle()
				if r.img != v1 && r.img != next {
					t.Fatalf("cut at step %d: settled on %s", at, r.img.id)
				}
				if r.img == next && act != healthy {
					t.Fatalf("cut at step %d: settled on the bad image", at)
				}
				st, err := r.u.Status()
				if err != nil {
					t.Fatal(err)
				}
				for _, f := range append(keys(w.ctl.files), keys(w.state.files)...) {
					if strings.HasSuffix(f, ".tmp") {
						t.Fatalf("cut at step %d: %s left after the boot", at, f)
					}
				}
				for _, s := range st.Slots {
					if s.State == "trial" && s.Booted {
						t.Fatalf("cut at step %d: the booted slot still on trial after settling: %+v", at, st.Slots)
					}
				}
				if r.img == v1 {
					from := r.u.Offset(next.header)
					rd := io.MultiReader(bytes.NewReader(next.stream[:next.header.Size()]), bytes.NewReader(next.stream[next.header.Size()+from:]))
					if _, err := r.u.Install(context.Background(), rd, InstallOptions{From: from}); err != nil {
						t.Fatalf("cut at step %d: sending again from %d: %v", at, from, err)
					}
					r.u.RebootIntoTrial()
					r = w.settle()
				}
				if want := map[bool]*piImage{true: next, false: v1}[act == healthy]; r.img != want {
					t.Fatalf("cut at step %d: after sending again %s runs, want %s; %v", at, r.img.id, want.id, w.log)
				}
			}
			if steps < 20 {
				t.Fatalf("only %d steps: the crasher is not reached", steps)
			}
			t.Logf("%d steps, each cut", steps)
		})
	}
}
