package deploy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nodeboot/nodeboot/internal/bundle"
	"github.com/nodeboot/nodeboot/internal/persist"
	"github.com/nodeboot/nodeboot/internal/store"
	"github.com/nodeboot/nodeboot/internal/supervise"
)

// realBundle is a real bundle of app "app" whose server.js holds body.
func realBundle(t testing.TB, body string) ([]byte, string) {
	t.Helper()
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "server.js"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	err := bundle.Write(&buf, bundle.Meta{App: "app", Entry: "server.js"},
		[]bundle.File{{Rel: "server.js", Src: filepath.Join(src, "server.js"), Mode: 0o644}})
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(buf.Bytes())
	return buf.Bytes(), "sha256:" + hex.EncodeToString(sum[:])
}

// realRig is the deploy transaction over the real store and real persist
// mounts in a temporary /data; only the service is a fake.
type realRig struct {
	app   *App
	svc   *fakeService
	st    *store.Store
	data  string // the fake /data
	state string // the app's state dir
	image string // the image's code dir
}

func newRealRig(t *testing.T) *realRig {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (persist mounts)")
	}
	data := t.TempDir()
	t.Cleanup(func() { unmountAll(data) })
	r := &realRig{data: data, state: filepath.Join(data, "state", "app"), image: filepath.Join(data, "image", "app")}
	st, err := store.Open(filepath.Join(data, "apps"))
	if err != nil {
		t.Fatal(err)
	}
	r.st = st
	for _, d := range []string{r.state, filepath.Join(r.image, "db")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	p := persist.App{StateDir: r.state, UID: 1234, GID: 1234, Dirs: []string{"db"}}
	// The image's own code dir gets its binds at boot and keeps them.
	if err := p.Bind(r.image); err != nil {
		t.Fatal(err)
	}
	r.svc = newFakeService(r.image)
	r.app = New(Config{
		App:     "app",
		Service: r.svc,
		Store:   st,
		Persist: p,
		Command: func(v *store.Version) supervise.Command {
			if v == nil {
				return supervise.Command{Dir: r.image}
			}
			return supervise.Command{Dir: v.Dir}
		},
		Log:    t.Logf,
		Settle: -1,
		Poll:   time.Millisecond,
	})
	return r
}

func unmountAll(dir string) {
	for range 20 {
		ms, _ := persist.Mounts(dir)
		if len(ms) == 0 {
			return
		}
		for _, m := range ms {
			unix.Unmount(m, unix.MNT_DETACH)
		}
	}
}

func (r *realRig) deploy(t testing.TB, body string) Result {
	t.Helper()
	b, d := realBundle(t, body)
	res, err := r.app.Deploy(context.Background(), d, bytes.NewReader(b), bundle.Limits{})
	if err != nil {
		t.Fatalf("deploy %q: %v", body, err)
	}
	return res
}

// persistMounts lists the mounts in the store (on deployed versions).
func (r *realRig) persistMounts(t testing.TB) []string {
	t.Helper()
	ms, err := persist.Mounts(filepath.Join(r.data, "apps"))
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

// TestThirdDeployKeepsPersistentData is issue 12, item 1: the third deploy
// removed the version that fell off with its persist bind mount still in
// it, and with it the app's persistent data.
func TestThirdDeployKeepsPersistentData(t *testing.T) {
	r := newRealRig(t)
	keep := filepath.Join(r.state, "persist", "db", "keep")
	if err := os.WriteFile(keep, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 5; i++ {
		res := r.deploy(t, fmt.Sprintf("v%d", i))
		if len(res.Warnings) != 0 {
			t.Errorf("deploy %d: warnings %q", i, res.Warnings)
		}
		if b, err := os.ReadFile(keep); err != nil || string(b) != "precious" {
			t.Fatalf("after deploy %d the persisted file is %q, %v", i, b, err)
		}
		// The running version sees the persisted file through its own dir.
		if b, err := os.ReadFile(filepath.Join(r.svc.dir(), "db", "keep")); err != nil || string(b) != "precious" {
			t.Errorf("after deploy %d the running version reads %q, %v", i, b, err)
		}
		if ms := r.persistMounts(t); len(ms) != 1 || ms[0] != filepath.Join(r.svc.dir(), "db") {
			t.Errorf("after deploy %d persist mounts in the store: %q; want one, on the running version", i, ms)
		}
	}
	if _, err := r.app.Rollback(context.Background()); err != nil {
		t.Fatal(err)
	}
	if ms := r.persistMounts(t); len(ms) != 1 || ms[0] != filepath.Join(r.svc.dir(), "db") {
		t.Errorf("after a rollback persist mounts: %q", ms)
	}
	if b, err := os.ReadFile(keep); err != nil || string(b) != "precious" {
		t.Fatalf("after the rollback the persisted file is %q, %v", b, err)
	}
}

// soakCycles is how many deploy+rollback cycles TestSoak runs.
func soakCycles() int {
	if os.Getenv("NODEBOOT_LONG") != "" {
		return 200
	}
	return 20
}

type resources struct {
	fds, goroutines, mounts int
	heap                    uint64
}

func measure(t testing.TB) resources {
	t.Helper()
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	return resources{
		fds:        len(fds),
		goroutines: runtime.NumGoroutine(),
		mounts:     strings.Count(string(mi), "\n"),
		heap:       ms.HeapAlloc,
	}
}

// TestSoak runs deploy/rollback cycles through the real store, real
// persist mounts and the transaction, each deploy dropping a version, and
// checks that what PID 1 holds stays flat: fds, goroutines, mounts, heap
// (docs/reliability.md has the last figures).
func TestSoak(t *testing.T) {
	r := newRealRig(t)
	keep := filepath.Join(r.state, "persist", "db", "keep")
	if err := os.WriteFile(keep, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	type bun struct {
		data   []byte
		digest string
	}
	// Four versions in turn: every deploy makes the store drop one, and
	// later receive it again.
	var buns []bun
	for i := range 4 {
		b, d := realBundle(t, fmt.Sprintf("v%d %s", i, strings.Repeat("x", 64<<10)))
		buns = append(buns, bun{b, d})
	}
	cycle := func(i int) {
		b := buns[i%len(buns)]
		if _, err := r.app.Deploy(context.Background(), b.digest, bytes.NewReader(b.data), bundle.Limits{}); err != nil {
			t.Fatalf("cycle %d: deploy: %v", i, err)
		}
		if _, err := r.app.Rollback(context.Background()); err != nil {
			t.Fatalf("cycle %d: rollback: %v", i, err)
		}
	}
	const warm = 4
	for i := range warm {
		cycle(i)
	}
	before := measure(t)
	n := soakCycles()
	start := time.Now()
	for i := warm; i < warm+n; i++ {
		cycle(i)
	}
	after := measure(t)
	t.Logf("%d deploy+rollback cycles in %v: fds %d → %d, goroutines %d → %d, mountinfo lines %d → %d, heap %.1f → %.1f MiB",
		n, time.Since(start).Round(time.Millisecond), before.fds, after.fds, before.goroutines, after.goroutines,
		before.mounts, after.mounts, float64(before.heap)/(1<<20), float64(after.heap)/(1<<20))
	if after.fds > before.fds {
		t.Errorf("open fds grew from %d to %d", before.fds, after.fds)
	}
	if after.goroutines > before.goroutines {
		t.Errorf("goroutines grew from %d to %d", before.goroutines, after.goroutines)
	}
	if after.mounts != before.mounts {
		t.Errorf("mountinfo lines went from %d to %d", before.mounts, after.mounts)
	}
	// Generous (2x + 4 MiB): the collector's own state moves a little
	// between measurements. A leak of a bundle's worth (64 KiB+) per cycle
	// shows in the long run (NODEBOOT_LONG=1, 200 cycles).
	if after.heap > 2*before.heap+4<<20 {
		t.Errorf("heap grew from %d to %d bytes", before.heap, after.heap)
	}
	if b, err := os.ReadFile(keep); err != nil || string(b) != "precious" {
		t.Errorf("after the soak the persisted file is %q, %v", b, err)
	}
	if v, _ := r.app.Versions(); v != Image {
		t.Errorf("after the last rollback the app runs %s, want the image's", v)
	}
}

// TestFullDiskWhileStaging deploys onto a /data with no room left (a small
// tmpfs): the answer says the disk is full and what to do, nothing
// switches, and no half-received version stays behind.
func TestFullDiskWhileStaging(t *testing.T) {
	r := newRealRig(t)
	small := filepath.Join(r.data, "small")
	if err := os.Mkdir(small, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", small, "tmpfs", 0, "size=256k"); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(filepath.Join(small, "apps"))
	if err != nil {
		t.Fatal(err)
	}
	r.app.cfg.Store = st
	// Incompressible, so the bundle itself is as large as what it unpacks to.
	big := make([]byte, 1<<20)
	for i := range big {
		big[i] = byte(i*7919 + i>>8)
	}
	b, d := realBundle(t, string(big))
	_, err = r.app.Deploy(context.Background(), d, bytes.NewReader(b), bundle.Limits{})
	if !errors.Is(err, ErrDiskFull) || !strings.Contains(err.Error(), "no room") {
		t.Fatalf("deploy onto a full disk: %v; want ErrDiskFull saying so", err)
	}
	if v, _ := r.app.Versions(); v != Image || r.svc.dir() != r.image {
		t.Errorf("after a failed staging the app runs %s in %s", v, r.svc.dir())
	}
	ents, _ := os.ReadDir(filepath.Join(small, "apps", "app"))
	for _, e := range ents {
		t.Errorf("left behind: %s", e.Name())
	}
}
