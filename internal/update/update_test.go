package update

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/nodeboot/nodeboot/internal/disk"
	"github.com/nodeboot/nodeboot/internal/ospayload"
)

const (
	chunk    = ospayload.MinChunkSize
	slotSize = 16 * chunk
)

var (
	testKey  = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, 32))
	otherKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{2}, 32))
	t0       = time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
)

// behaviour is what an image does when it boots.
type behaviour int

const (
	healthy   behaviour = iota
	unhealthy           // PID 1 runs, an app never becomes healthy: Fail
	panicking           // the kernel panics before PID 1: no code of ours runs
	degraded            // PID 1 cannot read its config: /data is a tmpfs, then Fail
)

// testImage is one OS image: what a payload carries, and how it behaves.
type testImage struct {
	id      string
	version uint64
	kernel  []byte
	rootfs  []byte
	act     behaviour
	stream  []byte // the signed payload
	header  *ospayload.Header
}

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 9))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func hashChunks(b []byte) ospayload.Section {
	s := ospayload.Section{Size: int64(len(b))}
	for off := 0; off < len(b); off += chunk {
		h := sha256sum(b[off:min(off+chunk, len(b))])
		s.Chunks = append(s.Chunks, h)
	}
	return s
}

// newImage makes image version v with a kernel of a chunk and a half and a
// root file system of rootChunks chunks and a bit.
func newImage(t testing.TB, v uint64, rootChunks int, act behaviour, key ed25519.PrivateKey, edit func(*ospayload.Manifest)) *testImage {
	t.Helper()
	img := &testImage{id: fmt.Sprintf("img%d", v), version: v, act: act,
		kernel: randomBytes(chunk+chunk/2, v*2), rootfs: randomBytes(rootChunks*chunk+100, v*2+1)}
	m := &ospayload.Manifest{Image: img.id, Version: v, Arch: "amd64", Target: "uefi", Built: t0.Add(time.Duration(v) * time.Hour),
		Title: "nodeboot", Cmdline: "console=ttyS0 panic=5 init=/init", ChunkSize: chunk,
		Kernel: hashChunks(img.kernel), RootFS: hashChunks(img.rootfs)}
	if edit != nil {
		edit(m)
	}
	h, err := ospayload.Sign(m, key)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	h.WriteTo(&b)
	b.Write(img.kernel)
	b.Write(img.rootfs)
	img.stream, img.header = b.Bytes(), h
	return img
}

// world is a node's disk (ESP, two slot devices), its /data state
// directory, and the images that exist, with the crasher across all.
type world struct {
	t      testing.TB
	cr     *crasher
	esp    *memDir
	state  *memDir
	dev    map[string]*memDevice
	uuid   map[string]string
	images []*testImage
	boots  int
	log    []string
}

func newWorld(t testing.TB, first *testImage) *world {
	cr := &crasher{}
	w := &world{t: t, cr: cr, esp: newMemDir(cr), state: newMemDir(cr),
		dev:  map[string]*memDevice{"a": newMemDevice(cr, slotSize), "b": newMemDevice(cr, slotSize)},
		uuid: map[string]string{"a": "aaaaaaaa-0000-4000-8000-000000000001", "b": "bbbbbbbb-0000-4000-8000-000000000002"}}
	// What `nodeboot build --format disk` writes: slot A with its entry
	// (three tries, as built), its kernel, loader.conf; slot B empty.
	w.esp.files["/loader/loader.conf"] = disk.LoaderConf()
	w.esp.files[disk.KernelPath("a")] = first.kernel
	name, entry := disk.BootEntry("a", disk.Slot{Cmdline: disk.SlotCmdline("console=ttyS0", w.uuid["a"], true), Title: "nodeboot"}, disk.BootTries)
	w.esp.files[name] = entry
	w.dev["a"].disk["dev"] = append([]byte(nil), first.rootfs...)
	w.images = append(w.images, first)
	return w
}

func (w *world) config(booted string, running *testImage) Config {
	var slots []Slot
	for _, n := range []string{"a", "b"} {
		slots = append(slots, Slot{Name: n, PartUUID: w.uuid[n], Size: slotSize, Open: w.dev[n].Open})
	}
	return Config{ESP: w.esp, State: w.state, Slots: slots, Booted: booted,
		Running: Image{ID: running.id, Version: running.version, Built: t0.Add(time.Duration(running.version) * time.Hour)},
		Arch:    "amd64", Target: "uefi", Keys: []ed25519.PublicKey{testKey.Public().(ed25519.PublicKey)},
		Clock: fixedClock{}}
}

type fixedClock struct{}

func (fixedClock) Now() time.Time { return t0 }

// powerCut loses what was not synced.
func (w *world) powerCut() {
	w.esp.cut()
	w.state.cut()
	for _, d := range w.dev {
		d.cut()
	}
}

// bootResult is one boot: which slot and image, and whether the machine
// reboots again by itself (a failed trial, a panic).
type bootResult struct {
	slot    string
	img     *testImage
	u       *Updater
	bs      *BootState
	reboots bool
}

// boot runs the emulated firmware and boot loader, then, as PID 1 would,
// Boot and the health gate. It fails the test if the boot loader picked an
// entry whose kernel and root slot are not one complete image.
func (w *world) boot() bootResult {
	w.t.Helper()
	w.boots++
	w.checkEntries()
	e, err := sdBoot(w.esp)
	if err != nil {
		w.t.Fatalf("boot %d: %v (the node is bricked); ESP: %v", w.boots, err, keys(w.esp.files))
	}
	slot, img := w.imageOf(e)
	if slot == "" || img == nil {
		w.t.Fatalf("boot %d: systemd-boot chose %s (slot %q), whose kernel and root slot are not one complete image; log: %v", w.boots, e.ID, slot, w.log)
	}
	if e.Linux != disk.KernelPath(slot) || !strings.Contains(e.Options, "init=/init") {
		w.t.Fatalf("boot %d: entry %s boots kernel %s with %q", w.boots, e.ID, e.Linux, e.Options)
	}
	w.log = append(w.log, fmt.Sprintf("boot %d: %s → %s", w.boots, e.ID, img.id))
	r := bootResult{slot: slot, img: img}
	if img.act == panicking {
		r.reboots = true
		return r
	}
	cfg := w.config(slot, img)
	if img.act == degraded && slot != "a" {
		// PID 1 leaves the data partition alone: the records are on a
		// tmpfs that the reboot loses.
		cfg.State = newMemDir(w.cr)
	}
	u, err := New(cfg)
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

// imageOf says which slot an entry boots and which complete image that
// is: its kernel and the slot's bytes both of one image (nil if not).
func (w *world) imageOf(e *disk.Entry) (string, *testImage) {
	slot := ""
	for n, u := range w.uuid {
		if disk.RootPartUUID(e.Options) == u {
			slot = n
		}
	}
	if slot == "" {
		return "", nil
	}
	kernel, _ := w.esp.ReadFile(e.Linux)
	dev := w.dev[slot].bytes()
	for _, i := range w.images {
		if bytes.Equal(kernel, i.kernel) && len(dev) >= len(i.rootfs) && bytes.Equal(dev[:len(i.rootfs)], i.rootfs) {
			return slot, i
		}
	}
	return slot, nil
}

// checkEntries fails the test unless every entry systemd-boot would list
// boots a complete image: not only the one it picks, since anyone at the
// boot menu may pick another.
func (w *world) checkEntries() {
	w.t.Helper()
	for _, n := range entriesOf(w) {
		if strings.HasPrefix(n, ".") {
			continue
		}
		b, _ := w.esp.ReadFile(path.Join(disk.EntriesDir, n))
		e, err := disk.ParseEntry(n, b)
		if err != nil {
			w.t.Fatalf("boot %d: entry %s does not parse: %v", w.boots, n, err)
		}
		if _, err := w.esp.ReadFile(e.Linux); err != nil {
			continue // not listed
		}
		if _, img := w.imageOf(e); img == nil {
			w.t.Fatalf("boot %d: entry %s names no complete image; log: %v", w.boots, n, w.log)
		}
	}
}

// settle boots until the machine stays up, and returns that boot.
func (w *world) settle() bootResult {
	w.t.Helper()
	for range 2*disk.BootTries + 2 {
		if r := w.boot(); !r.reboots {
			return r
		}
	}
	w.t.Fatalf("the node never settled: %v", w.log)
	return bootResult{}
}

// update sends img from the node running now, and reboots into it.
func (w *world) update(img *testImage, o InstallOptions) (bootResult, error) {
	w.t.Helper()
	cur := w.settle()
	w.images = append(w.images, img)
	if _, err := cur.u.Install(context.Background(), bytes.NewReader(img.stream), o); err != nil {
		return cur, err
	}
	return w.settle(), nil
}

func (w *world) snapshot() map[string][]byte {
	s := map[string][]byte{}
	for k, v := range w.esp.files {
		s["esp:"+k] = v
	}
	for n, d := range w.dev {
		s["dev:"+n] = append([]byte(nil), d.bytes()...)
	}
	return s
}

func entriesOf(w *world) []string {
	names, _ := w.esp.ReadDir(disk.EntriesDir)
	return names
}

func TestUpdateCommits(t *testing.T) {
	v1 := newImage(t, 1, 3, healthy, testKey, nil)
	w := newWorld(t, v1)
	first := w.settle()
	if first.slot != "a" || first.img != v1 || first.bs.Trial {
		t.Fatalf("first boot: %+v", first)
	}
	// A freshly flashed disk has nothing to fall back to: committed at once.
	if got := entriesOf(w); len(got) != 1 || got[0] != "nodeboot-a.conf" {
		t.Fatalf("entries after the first boot: %v", got)
	}
	v2 := newImage(t, 2, 5, healthy, testKey, nil)
	cur := first
	var progress []int64
	armed, err := cur.u.Install(context.Background(), bytes.NewReader(v2.stream), InstallOptions{Progress: func(d, total int64) { progress = append(progress, d) }})
	if err != nil {
		t.Fatal(err)
	}
	if armed.Slot != "b" || armed.Entry != "nodeboot-b+3.conf" || armed.Image.ID != "img2" || armed.From.ID != "img1" {
		t.Errorf("armed %+v", armed)
	}
	if n := len(progress); n == 0 || progress[n-1] != v2.header.Manifest.BodySize() {
		t.Errorf("progress %v", progress)
	}
	st, _ := cur.u.Status()
	if st.Slots[1].State != "trial" || st.Slots[1].TriesLeft != 3 || st.Slots[1].Image.ID != "img2" || st.Slots[0].State != "good" || !st.Slots[0].Booted {
		t.Errorf("status after arming: %+v", st.Slots)
	}
	w.images = append(w.images, v2)
	// The trial boot: systemd-boot counts a try down, PID 1 commits.
	r := w.boot()
	if r.slot != "b" || r.img != v2 || !r.bs.Trial {
		t.Fatalf("trial boot: %+v", r)
	}
	st, _ = r.u.Status()
	if st.Last == nil || !st.Last.OK || st.Last.String() != "updated to img2 (was img1)" {
		t.Errorf("outcome %v", st.Last)
	}
	if got := entriesOf(w); strings.Join(got, " ") != "nodeboot-a.conf nodeboot-b.conf" {
		t.Errorf("entries after the commit: %v", got)
	}
	// Committed: B boots from now on, A stays good.
	if r := w.boot(); r.slot != "b" || r.bs.Trial {
		t.Errorf("after the commit: %+v", r)
	}
	if st.Slots[0].State != "good" || st.Slots[0].Image.ID != "img1" || st.Slots[1].State != "good" || !st.Slots[1].Booted {
		t.Errorf("status after the commit: %+v", st.Slots)
	}
}

func TestFailedTrialsRollBack(t *testing.T) {
	for _, c := range []struct {
		act    behaviour
		reason string
		boots  int // boots of the new image before the old one runs again
	}{
		{unhealthy, "update to img2 failed: app web never became healthy", 1},
		{panicking, "update to img2 failed: the trial boot did not come up healthy in 3 tries", disk.BootTries},
		// Its records were on a tmpfs: the reason comes through the ESP.
		{degraded, "update to img2 failed: the node runs degraded: no app runs: /etc/nodeboot/runtime.json", 1},
	} {
		t.Run(fmt.Sprint(c.act), func(t *testing.T) {
			v1 := newImage(t, 1, 3, healthy, testKey, nil)
			w := newWorld(t, v1)
			v2 := newImage(t, 2, 3, c.act, testKey, nil)
			r, err := w.update(v2, InstallOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if r.slot != "a" || r.img != v1 {
				t.Fatalf("after the failed trial %s runs", r.img.id)
			}
			if n := strings.Count(strings.Join(w.log, "\n"), "→ img2"); n != c.boots {
				t.Errorf("img2 booted %d times, want %d: %v", n, c.boots, w.log)
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
			// Not booted again: no entry for B, however often A reboots.
			for range 3 {
				if r := w.boot(); r.img != v1 {
					t.Fatalf("the failed image booted again: %v", w.log)
				}
			}
			if got := entriesOf(w); strings.Join(got, " ") != "nodeboot-a.conf" {
				t.Errorf("entries %v", got)
			}
			// Sent again, it is tried again (here: now healthy).
			v2.act = healthy
			if r, err := w.update(v2, InstallOptions{}); err != nil || r.img != v2 {
				t.Errorf("sent again: %v, runs %v", err, r.img)
			}
		})
	}
}

func (b behaviour) String() string {
	return [...]string{"healthy", "unhealthy", "panicking", "degraded"}[b]
}

// TestCycles updates 100 times, A→B→A…: each time the new slot boots,
// commits, and the previous image stays as the other slot's good entry.
func TestCycles(t *testing.T) {
	n := 100
	v1 := newImage(t, 1, 2, healthy, testKey, nil)
	w := newWorld(t, v1)
	prev := v1
	for i := 2; i <= n+1; i++ {
		img := newImage(t, uint64(i), 1+i%4, healthy, testKey, nil)
		r, err := w.update(img, InstallOptions{})
		if err != nil {
			t.Fatalf("update %d: %v", i, err)
		}
		want := map[bool]string{true: "a", false: "b"}[i%2 == 1]
		if r.img != img || r.slot != want {
			t.Fatalf("update %d: runs %s on slot %s, want %s on %s", i, r.img.id, r.slot, img.id, want)
		}
		st, _ := r.u.Status()
		other := st.Slots[map[string]int{"a": 1, "b": 0}[want]]
		if other.State != "good" || other.Image.ID != prev.id || st.Last.String() != fmt.Sprintf("updated to %s (was %s)", img.id, prev.id) {
			t.Fatalf("update %d: other slot %+v, last %v", i, other, st.Last)
		}
		if got := entriesOf(w); len(got) != 2 {
			t.Fatalf("update %d: entries %v", i, got)
		}
		prev = img
		w.images = w.images[len(w.images)-2:] // keep the check fast
	}
	t.Logf("%d updates, %d boots", n, w.boots)
}

// TestPowerCuts cuts the power before every step of an update (each write,
// sync, rename and removal on the ESP, the state directory and the slot),
// for a good, an unhealthy and a panicking image, from a node whose other
// slot is empty and from one whose other slot holds the previous image.
// After each cut the node must boot a complete image at every boot, settle
// on the old or the new one, and a second send of the update must finish
// it (or, for a bad image, roll it back again).
func TestPowerCuts(t *testing.T) {
	for _, act := range []behaviour{healthy, unhealthy, panicking, degraded} {
		for _, prevInB := range []bool{false, true} {
			t.Run(fmt.Sprintf("%v/previous-in-b=%v", act, prevInB), func(t *testing.T) {
				steps := 0
				v1 := newImage(t, 1, 2, healthy, testKey, nil)
				v2 := newImage(t, 2, 3, healthy, testKey, nil)
				next := newImage(t, 3, 4, act, testKey, nil)
				for at := 1; ; at++ {
					w := newWorld(t, v1)
					old := v1
					if prevInB {
						// A→B once, so that B holds v2 committed and A v1.
						old = v2
						if r, err := w.update(old, InstallOptions{}); err != nil || r.img != old {
							t.Fatal(err)
						}
					}
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
					if r.img != old && r.img != next {
						t.Fatalf("cut at step %d: settled on %s", at, r.img.id)
					}
					if r.img == next && act != healthy {
						t.Fatalf("cut at step %d: settled on the bad image", at)
					}
					st, err := r.u.Status()
					if err != nil {
						t.Fatal(err)
					}
					for _, f := range append(keys(w.esp.files), keys(w.state.files)...) {
						if strings.HasSuffix(f, ".tmp") {
							t.Fatalf("cut at step %d: %s left after the boot", at, f)
						}
					}
					for _, s := range st.Slots {
						if s.State == "trial" {
							t.Fatalf("cut at step %d: a slot still on trial after settling: %+v", at, st.Slots)
						}
					}
					// Sending it again finishes the update, resuming the upload.
					if r.img == old {
						from := r.u.Offset(next.header)
						rd := io.MultiReader(bytes.NewReader(next.stream[:next.header.Size()]), bytes.NewReader(next.stream[next.header.Size()+from:]))
						if _, err := r.u.Install(context.Background(), rd, InstallOptions{From: from}); err != nil {
							t.Fatalf("cut at step %d: sending again from %d: %v", at, from, err)
						}
						r = w.settle()
					}
					if want := map[bool]*testImage{true: next, false: old}[act == healthy]; r.img != want {
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
}

// TestResume interrupts an upload mid-stream: the node keeps what it
// verified, Offset says where to continue, and the rest completes it.
func TestResume(t *testing.T) {
	v1 := newImage(t, 1, 2, healthy, testKey, nil)
	w := newWorld(t, v1)
	cur := w.settle()
	v2 := newImage(t, 2, 6, healthy, testKey, nil)
	w.images = append(w.images, v2)
	cutAt := v2.header.Size() + v2.header.Manifest.BodyOffset(true, 3) + 1000
	_, err := cur.u.Install(context.Background(), bytes.NewReader(v2.stream[:cutAt]), InstallOptions{})
	if !errors.Is(err, ospayload.ErrCorrupt) || !strings.Contains(err.Error(), "ends inside chunk 3 of the root file system") {
		t.Fatalf("cut upload: %v", err)
	}
	from := cur.u.Offset(v2.header)
	if from != v2.header.Manifest.BodyOffset(true, 3) {
		t.Fatalf("Offset %d, want %d", from, v2.header.Manifest.BodyOffset(true, 3))
	}
	st, _ := cur.u.Status()
	if st.Slots[1].State != "receiving" || st.Receiving == nil || st.Receiving.Done != from {
		t.Errorf("status while receiving: %+v %+v", st.Slots[1], st.Receiving)
	}
	// Beyond what the node holds: refused, saying where to go on from.
	_, err = cur.u.Install(context.Background(), bytes.NewReader(v2.stream), InstallOptions{From: from + chunk})
	if !errors.Is(err, ErrResume) || !strings.Contains(err.Error(), fmt.Sprint(from)) {
		t.Errorf("resume past the node's offset: %v", err)
	}
	opens := w.dev["b"].opens
	tail := append(bytes.Clone(v2.stream[:v2.header.Size()]), v2.stream[v2.header.Size()+from:]...)
	if _, err := cur.u.Install(context.Background(), bytes.NewReader(tail), InstallOptions{From: from}); err != nil {
		t.Fatal(err)
	}
	if w.dev["b"].opens != opens+1 {
		t.Error("the slot was not opened once more for the tail")
	}
	if r := w.settle(); r.img != v2 {
		t.Fatalf("runs %s", r.img.id)
	}
}

// TestBadInputs sends every kind of bad payload: each is refused with an
// error that says what is wrong, and no boot entry, kernel or slot byte
// changes; for faults found before the first chunk, nothing at all.
func TestBadInputs(t *testing.T) {
	v1 := newImage(t, 5, 2, healthy, testKey, nil)
	good := newImage(t, 6, 3, healthy, testKey, nil)
	flip := func(off int64) []byte {
		b := bytes.Clone(good.stream)
		b[good.header.Size()+off] ^= 0x40
		return b
	}
	for _, c := range []struct {
		name      string
		stream    []byte
		o         InstallOptions
		want      error
		says      string
		untouched bool // not even the inactive slot was written
	}{
		{"wrong key", newImage(t, 6, 3, healthy, otherKey, nil).stream, InstallOptions{}, ospayload.ErrUntrusted, "not signed by a key this node trusts", true},
		{"flipped byte in the first chunk", flip(10), InstallOptions{}, ospayload.ErrCorrupt, "chunk 0 of the kernel", true},
		{"flipped byte in the root file system", flip(good.header.Manifest.BodyOffset(true, 2) + 5), InstallOptions{}, ospayload.ErrCorrupt, "chunk 2 of the root file system", false},
		{"flipped byte in the manifest", func() []byte {
			b := bytes.Clone(good.stream)
			i := bytes.Index(b, []byte(`"version": 6`))
			b[i+11] = '7'
			return b
		}(), InstallOptions{}, ospayload.ErrBadSignature, "changed after it was signed", true},
		{"truncated", good.stream[:len(good.stream)-50], InstallOptions{}, ospayload.ErrCorrupt, "ends inside chunk", false},
		{"truncated header", good.stream[:100], InstallOptions{}, ospayload.ErrCorrupt, "ends early", true},
		{"not a payload", []byte("PK\x03\x04 a zip file, say"), InstallOptions{}, ospayload.ErrCorrupt, "does not start with", true},
		{"downgrade", newImage(t, 4, 3, healthy, testKey, nil).stream, InstallOptions{}, ErrDowngrade, "--allow-downgrade", true},
		{"same version", newImage(t, 5, 3, healthy, testKey, func(m *ospayload.Manifest) { m.Image = "other" }).stream, InstallOptions{}, ErrDowngrade, "version 5", true},
		{"the running image", v1.stream, InstallOptions{}, ErrDowngrade, "already runs image img5", true},
		{"other arch", newImage(t, 6, 3, healthy, testKey, func(m *ospayload.Manifest) { m.Arch = "arm64" }).stream, InstallOptions{}, ErrArch, "for arm64/uefi, this node is amd64/uefi", true},
		{"other target", newImage(t, 6, 3, healthy, testKey, func(m *ospayload.Manifest) { m.Target = "pi" }).stream, InstallOptions{}, ErrArch, "amd64/pi", true},
		{"larger than the slot", newImage(t, 6, 16, healthy, testKey, nil).stream, InstallOptions{}, ErrTooLarge,
			fmt.Sprintf("its root file system is 1.0 MiB (%d bytes), root slot B holds 1.0 MiB (%d bytes)", 16*chunk+100, slotSize), true},
		{"resume beyond what the node holds", good.stream, InstallOptions{From: chunk}, ErrResume, "continue from 0", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t, v1)
			cur := w.settle()
			before := w.snapshot()
			_, err := cur.u.Install(context.Background(), bytes.NewReader(c.stream), c.o)
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.says) {
				t.Fatalf("got %v, want %v saying %q", err, c.want, c.says)
			}
			after := w.snapshot()
			for k, v := range before {
				if k == "dev:b" && !c.untouched {
					continue
				}
				if !bytes.Equal(after[k], v) {
					t.Errorf("%s changed", k)
				}
			}
			for k := range after {
				if _, ok := before[k]; !ok && (c.untouched || strings.Contains(k, "/loader/")) && !strings.HasSuffix(k, ".tmp") {
					t.Errorf("%s appeared", k)
				}
			}
			if r := w.settle(); r.img != v1 || r.slot != "a" {
				t.Errorf("after the refusal %s boots", r.img.id)
			}
		})
	}

	t.Run("downgrade allowed", func(t *testing.T) {
		w := newWorld(t, v1)
		old := newImage(t, 4, 3, healthy, testKey, nil)
		if r, err := w.update(old, InstallOptions{AllowDowngrade: true}); err != nil || r.img != old {
			t.Fatalf("%v, runs %v", err, r.img)
		}
	})
	t.Run("a new key endorsed by the trusted one", func(t *testing.T) {
		w := newWorld(t, v1)
		rotated := newImage(t, 6, 3, healthy, otherKey, func(m *ospayload.Manifest) {
			m.KeyChain = []ospayload.Endorsement{ospayload.Endorse(testKey, otherKey.Public().(ed25519.PublicKey))}
		})
		if r, err := w.update(rotated, InstallOptions{}); err != nil || r.img != rotated {
			t.Fatalf("%v, runs %v", err, r.img)
		}
	})
	t.Run("no slots", func(t *testing.T) {
		u, err := New(Config{Arch: "amd64", Target: "uefi"})
		if err != nil {
			t.Fatal(err)
		}
		_, err = u.Install(context.Background(), bytes.NewReader(good.stream), InstallOptions{})
		if !errors.Is(err, ErrNoSlots) || !strings.Contains(err.Error(), "initramfs") {
			t.Errorf("%v", err)
		}
		if st, _ := u.Status(); !st.NoSlots {
			t.Errorf("status %+v", st)
		}
		if bs, _ := u.Boot(); !bs.NoSlots {
			t.Errorf("boot %+v", bs)
		}
	})
	t.Run("during a trial", func(t *testing.T) {
		w := newWorld(t, v1)
		cur := w.settle()
		w.images = append(w.images, good)
		if _, err := cur.u.Install(context.Background(), bytes.NewReader(good.stream), InstallOptions{}); err != nil {
			t.Fatal(err)
		}
		e, _ := sdBoot(w.esp) // the trial boot, before PID 1 committed
		if e.ID != "nodeboot-b+3.conf" {
			t.Fatalf("booted %s", e.ID)
		}
		u, _ := New(w.config("b", good))
		if bs, _ := u.Boot(); !bs.Trial {
			t.Fatal("not on trial")
		}
		before := w.snapshot()
		next := newImage(t, 7, 3, healthy, testKey, nil)
		_, err := u.Install(context.Background(), bytes.NewReader(next.stream), InstallOptions{})
		if !errors.Is(err, ErrTrial) || !strings.Contains(err.Error(), "not been committed yet") {
			t.Errorf("%v", err)
		}
		for k, v := range before {
			if !bytes.Equal(w.snapshot()[k], v) {
				t.Errorf("%s changed", k)
			}
		}
	})
	t.Run("a second update while one runs", func(t *testing.T) {
		w := newWorld(t, v1)
		cur := w.settle()
		// The first upload has its header and a chunk in, and waits for
		// more: blocked in a read, it writes nothing meanwhile.
		first := &stalledReader{data: good.stream[:good.header.Size()+chunk], waiting: make(chan struct{}), release: make(chan struct{})}
		done := make(chan error)
		go func() {
			_, err := cur.u.Install(context.Background(), first, InstallOptions{})
			done <- err
		}()
		<-first.waiting
		before := w.snapshot()
		next := newImage(t, 7, 3, healthy, testKey, nil)
		_, err := cur.u.Install(context.Background(), bytes.NewReader(next.stream), InstallOptions{})
		if !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), "then send this one again") {
			t.Errorf("second update: %v", err)
		}
		after := w.snapshot()
		for k, v := range before {
			if !bytes.Equal(after[k], v) {
				t.Errorf("%s changed", k)
			}
		}
		for k := range after {
			if _, ok := before[k]; !ok {
				t.Errorf("%s appeared", k)
			}
		}
		close(first.release)
		if err := <-done; err == nil {
			t.Error("the first upload finished without its body")
		}
	})
}

// stalledReader serves data, then says it is waiting and blocks until
// released, then fails: an upload whose client stalled, then went away.
type stalledReader struct {
	data             []byte
	waiting, release chan struct{}
	said             bool
}

func (r *stalledReader) Read(p []byte) (int, error) {
	if len(r.data) > 0 {
		n := copy(p, r.data)
		r.data = r.data[n:]
		return n, nil
	}
	if !r.said {
		r.said = true
		close(r.waiting)
	}
	<-r.release
	return 0, errors.New("client went away")
}

// TestRealFiles runs an update over real files: the ESP and the state as
// directories (OSDir), the slots as files (OpenDevice), and checks what
// the emulated systemd-boot then boots.
func TestRealFiles(t *testing.T) {
	root := t.TempDir()
	esp, stateDir := OSDir{Root: root + "/esp"}, OSDir{Root: root + "/state"}
	v1 := newImage(t, 1, 2, healthy, testKey, nil)
	v2 := newImage(t, 2, 5, healthy, testKey, nil)
	name, entry := disk.BootEntry("a", disk.Slot{Cmdline: disk.SlotCmdline("console=ttyS0", "aaaa", true)}, 0)
	for p, b := range map[string][]byte{"/loader/loader.conf": disk.LoaderConf(), name: entry, disk.KernelPath("a"): v1.kernel} {
		if err := esp.WriteFile(p, b); err != nil {
			t.Fatal(err)
		}
	}
	devs := map[string]string{"a": root + "/slot-a", "b": root + "/slot-b"}
	for n, p := range devs {
		if err := os.WriteFile(p, make([]byte, slotSize), 0o600); err != nil {
			t.Fatal(err)
		}
		_ = n
	}
	open := func(p string) func() (Device, error) { return func() (Device, error) { return OpenDevice(p) } }
	cfg := Config{ESP: esp, State: stateDir, Booted: "a", Running: Image{ID: "img1", Version: 1},
		Slots: []Slot{{Name: "a", PartUUID: "aaaa", Size: slotSize, Open: open(devs["a"])}, {Name: "b", PartUUID: "bbbb", Size: slotSize, Open: open(devs["b"])}},
		Arch:  "amd64", Target: "uefi", Keys: []ed25519.PublicKey{testKey.Public().(ed25519.PublicKey)}}
	u, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := u.Boot(); err != nil {
		t.Fatal(err)
	}
	if _, err := u.Install(context.Background(), bytes.NewReader(v2.stream), InstallOptions{}); err != nil {
		t.Fatal(err)
	}
	e, err := sdBoot(esp)
	if err != nil {
		t.Fatal(err)
	}
	if e.ID != "nodeboot-b+3.conf" || disk.RootPartUUID(e.Options) != "bbbb" {
		t.Fatalf("boots %s with %q", e.ID, e.Options)
	}
	k, _ := esp.ReadFile(e.Linux)
	slot, _ := os.ReadFile(devs["b"])
	if !bytes.Equal(k, v2.kernel) || !bytes.Equal(slot[:len(v2.rootfs)], v2.rootfs) {
		t.Fatal("slot B's kernel or root file system is not the payload's")
	}
	if names, _ := esp.ReadDir("/nodeboot/b"); strings.Join(names, " ") != "manifest.json vmlinuz" {
		t.Errorf("slot B's files on the ESP: %v", names)
	}
	cfg.Booted, cfg.Running = "b", Image{ID: "img2", Version: 2}
	u2, _ := New(cfg)
	if bs, err := u2.Boot(); err != nil || !bs.Trial {
		t.Fatalf("%+v %v", bs, err)
	}
	if _, err := u2.Commit(); err != nil {
		t.Fatal(err)
	}
	if names, _ := esp.ReadDir(disk.EntriesDir); strings.Join(names, " ") != "nodeboot-a.conf nodeboot-b.conf" {
		t.Errorf("entries %v", names)
	}
	if b, _ := esp.ReadFile(path.Join(disk.EntriesDir, "nodeboot-b.conf")); !strings.Contains(string(b), "version 0000000001\n") {
		t.Errorf("entry:\n%s", b)
	}
}

// TestChosenAtTheMenu: the old slot boots while the trial still has tries
// (someone picked it, or an EFI variable overrides the order): the trial
// is over, and the reason says what happened.
func TestChosenAtTheMenu(t *testing.T) {
	v1 := newImage(t, 1, 2, healthy, testKey, nil)
	w := newWorld(t, v1)
	cur := w.settle()
	v2 := newImage(t, 2, 2, healthy, testKey, nil)
	w.images = append(w.images, v2)
	if _, err := cur.u.Install(context.Background(), bytes.NewReader(v2.stream), InstallOptions{}); err != nil {
		t.Fatal(err)
	}
	u, _ := New(w.config("a", v1))
	bs, err := u.Boot()
	if err != nil || bs.Settled == nil || !strings.Contains(bs.Settled.String(), "update to img2 failed: the boot loader started slot A instead of the trial") {
		t.Fatalf("%+v %v", bs, err)
	}
	if got := entriesOf(w); strings.Join(got, " ") != "nodeboot-a.conf" {
		t.Errorf("entries %v", got)
	}
}

// TestRearm sends a newer update while one is armed but not yet booted:
// the armed one is dropped and the newer one is what the trial boots.
func TestRearm(t *testing.T) {
	v1 := newImage(t, 1, 2, healthy, testKey, nil)
	w := newWorld(t, v1)
	cur := w.settle()
	v2 := newImage(t, 2, 2, healthy, testKey, nil)
	v3 := newImage(t, 3, 3, healthy, testKey, nil)
	w.images = append(w.images, v2, v3)
	for _, img := range []*testImage{v2, v3} {
		if _, err := cur.u.Install(context.Background(), bytes.NewReader(img.stream), InstallOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if got := entriesOf(w); strings.Join(got, " ") != "nodeboot-a.conf nodeboot-b+3.conf" {
		t.Errorf("entries %v", got)
	}
	r := w.settle()
	st, _ := r.u.Status()
	if r.img != v3 || st.Last.String() != "updated to img3 (was img1)" {
		t.Errorf("runs %s, last %v", r.img.id, st.Last)
	}
}
