package store

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/nodeboot/nodeboot/internal/bundle"
)

func TestModesIgnoreUmask(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	root := filepath.Join(t.TempDir(), "apps")
	s, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	v := receive(t, s, "hello", "v1")
	for _, p := range []string{root, filepath.Dir(v.Dir), v.Dir} {
		if st, err := os.Stat(p); err != nil || st.Mode().Perm() != 0o755 {
			t.Errorf("%s: %v, %v; want 0755 so the app's user can read its code", p, st.Mode(), err)
		}
	}
	if st, err := os.Stat(filepath.Join(v.Dir, "server.js")); err != nil || st.Mode().Perm() != 0o644 {
		t.Errorf("server.js: %v, %v; want 0644", st.Mode(), err)
	}
}

// bindInto bind-mounts src on v's dir/persist, as PID 1 does for an app's
// persist dirs at each deploy, and unmounts it when the test ends.
func bindInto(t *testing.T, src string, v *Version) {
	t.Helper()
	dst := filepath.Join(v.Dir, "persist")
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
		t.Skipf("bind mounts need root (CI runs as root): %v", err)
	}
	t.Cleanup(func() { unix.Unmount(dst, unix.MNT_DETACH) })
}

// Issue 12 item 1: the version that falls off at the third deploy still
// holds the persist bind mount; removing it must not delete the app's data
// through the mount, and the switch itself succeeded.
func TestSwitchKeepsBindMountedData(t *testing.T) {
	root := filepath.Join(t.TempDir(), "apps")
	state := filepath.Join(t.TempDir(), "persist")
	if err := os.MkdirAll(filepath.Join(state, "db"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(state, "db", "rows"), []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	var logs []string
	s.SetLog(func(f string, a ...any) { logs = append(logs, fmt.Sprintf(f, a...)) })
	for i := 1; i <= 3; i++ {
		v := receive(t, s, "hello", fmt.Sprintf("v%d", i))
		bindInto(t, state, v)
		if err := s.Switch("hello", v); err != nil {
			t.Fatalf("switch %d: %v (current switched, so this is no failure)", i, err)
		}
	}
	if b, err := os.ReadFile(filepath.Join(state, "db", "rows")); err != nil || string(b) != "precious" {
		t.Fatalf("the persistent data after three deploys: %q, %v", b, err)
	}
	if got := state3(t, s); got != "v3/v2" {
		t.Fatalf("state: %s", got)
	}
	if !strings.Contains(strings.Join(logs, "\n"), "mount") {
		t.Errorf("the refused removal was not logged naming the mount: %q", logs)
	}

	// A caller that reports the garbage collection apart gets it apart.
	v4 := receive(t, s, "hello", "v4")
	gcErr, err := s.SwitchAndCollect("hello", v4)
	if err != nil {
		t.Fatalf("SwitchAndCollect: %v", err)
	}
	if !errors.Is(gcErr, ErrMounted) || !strings.Contains(gcErr.Error(), "persist") {
		t.Errorf("SwitchAndCollect's GC error: %v, want ErrMounted naming the persist mount", gcErr)
	}
	if b, err := os.ReadFile(filepath.Join(state, "db", "rows")); err != nil || string(b) != "precious" {
		t.Fatalf("the persistent data after four deploys: %q, %v", b, err)
	}
	if got := state3(t, s); got != "v4/v3" {
		t.Fatalf("state: %s", got)
	}
}

func state3(t *testing.T, s *Store) string { return state(t, s, "hello") }

// The walk itself never crosses a mount, even one the mountinfo check did
// not see (made after it): a bind mount of the same file system (openat2
// RESOLVE_NO_XDEV), a tmpfs (st_dev, the fallback without openat2), and a
// file bound over a file (unlinkat's EBUSY).
func TestRemoveWalkStopsAtMounts(t *testing.T) {
	for _, c := range []struct {
		name     string
		fallback bool
		tmpfs    bool
	}{{"bind", false, false}, {"tmpfs", false, true}, {"fallback-tmpfs", true, true}} {
		t.Run(c.name, func(t *testing.T) {
			noOpenat2 = c.fallback
			defer func() { noOpenat2 = false }()
			data := t.TempDir()
			if err := os.WriteFile(filepath.Join(data, "keep"), []byte("data"), 0o644); err != nil {
				t.Fatal(err)
			}
			keepFile := filepath.Join(t.TempDir(), "file")
			if err := os.WriteFile(keepFile, []byte("data"), 0o644); err != nil {
				t.Fatal(err)
			}
			tree := filepath.Join(t.TempDir(), "v")
			mp := filepath.Join(tree, "a", "b", "m")
			for _, d := range []string{mp, filepath.Join(tree, "c", "d")} {
				if err := os.MkdirAll(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			os.WriteFile(filepath.Join(tree, "a", "x"), []byte("x"), 0o644)
			fileMP := filepath.Join(tree, "c", "f")
			os.WriteFile(fileMP, nil, 0o644)
			if c.tmpfs {
				if err := unix.Mount("tmpfs", mp, "tmpfs", 0, "size=1m"); err != nil {
					t.Skipf("mounts need root (CI runs as root): %v", err)
				}
				if err := os.WriteFile(filepath.Join(mp, "keep"), []byte("data"), 0o644); err != nil {
					t.Fatal(err)
				}
			} else if err := unix.Mount(data, mp, "", unix.MS_BIND, ""); err != nil {
				t.Skipf("mounts need root (CI runs as root): %v", err)
			}
			defer unix.Unmount(mp, unix.MNT_DETACH)
			if err := unix.Mount(keepFile, fileMP, "", unix.MS_BIND, ""); err != nil {
				t.Fatal(err)
			}
			defer unix.Unmount(fileMP, unix.MNT_DETACH)

			if err := removeTree(tree); !errors.Is(err, ErrMounted) || !strings.Contains(err.Error(), mp) {
				t.Fatalf("removeTree: %v, want ErrMounted naming %s", err, mp)
			}
			if _, err := os.Stat(filepath.Join(tree, "a", "x")); err != nil {
				t.Fatalf("the mountinfo check let the removal start: %v", err)
			}
			err := removeWalk(tree)
			if !errors.Is(err, ErrMounted) || !strings.Contains(err.Error(), mp) || !strings.Contains(err.Error(), fileMP) {
				t.Fatalf("removeWalk: %v, want ErrMounted naming %s and %s", err, mp, fileMP)
			}
			if b, err := os.ReadFile(filepath.Join(mp, "keep")); err != nil || string(b) != "data" {
				t.Fatalf("data under the mount: %q, %v", b, err)
			}
			if b, err := os.ReadFile(keepFile); err != nil || string(b) != "data" {
				t.Fatalf("the bound file: %q, %v", b, err)
			}
			// Everything else went.
			for _, p := range []string{filepath.Join(tree, "a", "x"), filepath.Join(tree, "c", "d")} {
				if _, err := os.Lstat(p); !os.IsNotExist(err) {
					t.Errorf("%s survived: %v", p, err)
				}
			}
			unix.Unmount(mp, unix.MNT_DETACH)
			unix.Unmount(fileMP, unix.MNT_DETACH)
			if err := removeTree(tree); err != nil {
				t.Fatalf("removeTree once unmounted: %v", err)
			}
			if _, err := os.Lstat(tree); !os.IsNotExist(err) {
				t.Fatalf("tree survived: %v", err)
			}
		})
	}
}

// tmpfsOf mounts a tmpfs of size on a new temp dir (CI runs as root).
func tmpfsOf(t *testing.T, size string) string {
	t.Helper()
	d := t.TempDir()
	if err := unix.Mount("tmpfs", d, "tmpfs", 0, "size="+size); err != nil {
		if os.Getenv("NODEBOOT_E2E") == "1" {
			t.Fatalf("mounting a tmpfs (needs root): %v", err)
		}
		t.Skipf("mounting a tmpfs needs root (CI runs as root): %v", err)
	}
	t.Cleanup(func() { unix.Unmount(d, unix.MNT_DETACH) })
	return d
}

// noiseBundle is a bundle of app holding n random (incompressible) bytes.
func noiseBundle(t *testing.T, app string, n int) ([]byte, string) {
	t.Helper()
	src := t.TempDir()
	noise := make([]byte, n)
	rand.Read(noise)
	os.WriteFile(filepath.Join(src, "server.js"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(src, "noise"), noise, 0o644)
	var buf bytes.Buffer
	err := bundle.Write(&buf, bundle.Meta{App: app, Entry: "server.js"}, []bundle.File{
		{Rel: "noise", Src: filepath.Join(src, "noise"), Mode: 0o644},
		{Rel: "server.js", Src: filepath.Join(src, "server.js"), Mode: 0o644},
	})
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(buf.Bytes())
	return buf.Bytes(), "sha256:" + hex.EncodeToString(sum[:])
}

// Issue 12 item 3: a full disk while the body spools or while it is
// unpacked says so (ENOSPC kept for the API's 507), is no "invalid
// bundle", and leaves nothing behind; the current version is untouched.
func TestReceiveDiskFull(t *testing.T) {
	for _, c := range []struct {
		name string
		size int // of the noise; the tmpfs holds 1 MiB
	}{{"while spooling", 3 << 20}, {"while extracting", 700 << 10}} {
		t.Run(c.name, func(t *testing.T) {
			mnt := tmpfsOf(t, "1m")
			s, err := Open(filepath.Join(mnt, "apps"))
			if err != nil {
				t.Fatal(err)
			}
			v1 := receive(t, s, "hello", "v1")
			if err := s.Switch("hello", v1); err != nil {
				t.Fatal(err)
			}
			before := listing(t, filepath.Join(mnt, "apps"), "hello")
			data, d := noiseBundle(t, "hello", c.size)
			_, err = s.Receive("hello", bytes.NewReader(data), d, bundle.Limits{})
			if !errors.Is(err, syscall.ENOSPC) || !strings.HasPrefix(err.Error(), "disk full on "+mnt+": ") {
				t.Fatalf("Receive on a full disk: %v, want ENOSPC, saying \"disk full on %s: ...\"", err, mnt)
			}
			if errors.Is(err, bundle.ErrInvalid) || errors.Is(err, bundle.ErrTooBig) || errors.Is(err, ErrDigest) {
				t.Errorf("a full disk reads as a bad bundle: %v", err)
			}
			if after := listing(t, filepath.Join(mnt, "apps"), "hello"); strings.Join(after, " ") != strings.Join(before, " ") {
				t.Errorf("the failed receive left %q (before: %q)", after, before)
			}
			if got := state(t, s, "hello"); got != "v1/-" {
				t.Errorf("state: %s", got)
			}
		})
	}
}

// A tree as deep as a bundle may make (paths up to PATH_MAX) is removed
// whole, holding one directory open at a time.
func TestRemoveTreeDeep(t *testing.T) {
	for _, fallback := range []bool{false, true} {
		noOpenat2 = fallback
		removeDeep(t)
	}
	noOpenat2 = false
}

func removeDeep(t *testing.T) {
	tree := filepath.Join(t.TempDir(), "v")
	// Relative to the tree, as the extractor makes it: the absolute path
	// is longer than PATH_MAX.
	rel := strings.Repeat("d/", 2040) + "f"
	if err := os.Mkdir(tree, 0o755); err != nil {
		t.Fatal(err)
	}
	root, err := os.OpenRoot(tree)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	if err := root.MkdirAll(filepath.Dir(rel), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := root.WriteFile(rel, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := removeTree(tree); err != nil {
		t.Fatalf("removeTree: %v", err)
	}
	if _, err := os.Lstat(tree); !os.IsNotExist(err) {
		t.Fatalf("the tree survived: %v", err)
	}
}
