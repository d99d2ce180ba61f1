package persist

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// needRoot skips where mounts cannot be made; CI runs as root.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (mounts)")
	}
}

// cleanup unmounts whatever a test left under dir, so a failing test does
// not leave the host's mount table dirty.
func cleanup(t *testing.T, dir string) {
	t.Cleanup(func() {
		for range 10 {
			ms, _ := Mounts(dir)
			if len(ms) == 0 {
				return
			}
			for _, m := range ms {
				unix.Unmount(m, unix.MNT_DETACH)
			}
		}
	})
}

type fixture struct {
	root, state, code string
	app               App
}

func newFixture(t *testing.T, dirs ...string) fixture {
	t.Helper()
	needRoot(t)
	root := t.TempDir()
	cleanup(t, root)
	f := fixture{root: root, state: filepath.Join(root, "state", "app"), code: filepath.Join(root, "code")}
	for _, d := range []string{f.state, f.code} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	f.app = App{StateDir: f.state, UID: 1234, GID: 1235, Dirs: dirs}
	return f
}

func mountOpts(t *testing.T, mp string) string {
	t.Helper()
	ms, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(mp))
	if err != nil || len(ms) == 0 {
		t.Fatalf("%s is not mounted (%v)", mp, err)
	}
	return ms[len(ms)-1].Options
}

func owner(t *testing.T, p string) (int, int) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return int(st.Uid), int(st.Gid)
}

func TestBindIsTheStateDirNoexecAndDoesNotStack(t *testing.T) {
	f := newFixture(t, "db", "cache/tiles")
	for range 3 {
		if err := Bind(f.app, f.code); err != nil {
			t.Fatal(err)
		}
	}
	ms, err := Mounts(f.code)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 {
		t.Fatalf("after three binds, mounts under the code dir: %q; want one per persist dir", ms)
	}
	for _, d := range f.app.Dirs {
		dst := filepath.Join(f.code, d)
		if err := os.WriteFile(filepath.Join(dst, "f"), []byte(d), 0o600); err != nil {
			t.Fatal(err)
		}
		if b, err := os.ReadFile(filepath.Join(f.state, "persist", d, "f")); err != nil || string(b) != d {
			t.Errorf("%s: a file written in the code dir is not in the state dir: %q, %v", d, b, err)
		}
		opts := "," + mountOpts(t, dst) + ","
		for _, o := range []string{"nosuid", "nodev", "noexec"} {
			if !strings.Contains(opts, ","+o+",") {
				t.Errorf("%s is mounted %s, want %s", dst, opts, o)
			}
		}
	}
	// Every level below the state dir is the app's.
	for _, p := range []string{"persist", "persist/db", "persist/cache", "persist/cache/tiles"} {
		if u, g := owner(t, filepath.Join(f.state, p)); u != 1234 || g != 1235 {
			t.Errorf("%s is owned by %d:%d, want the app's 1234:1235", p, u, g)
		}
	}
	if err := Unbind(f.code); err != nil {
		t.Fatal(err)
	}
	if ms, _ := Mounts(f.code); len(ms) != 0 {
		t.Errorf("after Unbind still mounted: %q", ms)
	}
	// The data stays in the state dir; the code dir no longer reaches it.
	if _, err := os.Stat(filepath.Join(f.state, "persist", "db", "f")); err != nil {
		t.Error(err)
	}
	if err := os.RemoveAll(f.code); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(f.state, "persist", "db", "f")); err != nil {
		t.Errorf("removing the unbound code dir removed persisted data: %v", err)
	}
}

func TestUnbindTakesStackedMounts(t *testing.T) {
	f := newFixture(t, "db")
	if err := Bind(f.app, f.code); err != nil {
		t.Fatal(err)
	}
	// What the st_dev test let happen: the same bind again on top.
	dst := filepath.Join(f.code, "db")
	for range 2 {
		if err := unix.Mount(filepath.Join(f.state, "persist", "db"), dst, "", unix.MS_BIND, ""); err != nil {
			t.Fatal(err)
		}
	}
	if m, err := IsMountPoint(dst); err != nil || !m {
		t.Fatalf("IsMountPoint(%s) = %v, %v", dst, m, err)
	}
	if err := Unbind(f.code); err != nil {
		t.Fatal(err)
	}
	if m, _ := IsMountPoint(dst); m {
		t.Error("a stacked mount is left")
	}
}

// TestPlantedSymlinks plants, at every level of a persist path, a symlink
// to another app's state, as a hostile app can in its own state dir. Bind
// must refuse each, chown nothing of the other app's and mount nothing.
func TestPlantedSymlinks(t *testing.T) {
	cases := []struct {
		name  string
		dirs  []string
		plant func(f fixture, victim string) error
	}{
		{"the state dir itself", []string{"db"}, func(f fixture, v string) error {
			if err := os.Remove(f.state); err != nil {
				return err
			}
			return os.Symlink(v, f.state)
		}},
		{"persist", []string{"db"}, func(f fixture, v string) error {
			return os.Symlink(v, filepath.Join(f.state, "persist"))
		}},
		{"persist/<dir>", []string{"db"}, func(f fixture, v string) error {
			if err := os.Mkdir(filepath.Join(f.state, "persist"), 0o700); err != nil {
				return err
			}
			return os.Symlink(v, filepath.Join(f.state, "persist", "db"))
		}},
		{"a middle level", []string{"cache/tiles"}, func(f fixture, v string) error {
			if err := os.Mkdir(filepath.Join(f.state, "persist"), 0o700); err != nil {
				return err
			}
			return os.Symlink(v, filepath.Join(f.state, "persist", "cache"))
		}},
		{"a relative link", []string{"db"}, func(f fixture, v string) error {
			if err := os.Mkdir(filepath.Join(f.state, "persist"), 0o700); err != nil {
				return err
			}
			return os.Symlink("../../other", filepath.Join(f.state, "persist", "db"))
		}},
		{"the code dir's mount point", []string{"db"}, func(f fixture, v string) error {
			return os.Symlink(v, filepath.Join(f.code, "db"))
		}},
		{"a level of the code dir", []string{"cache/tiles"}, func(f fixture, v string) error {
			return os.Symlink(v, filepath.Join(f.code, "cache"))
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, c.dirs...)
			victim := filepath.Join(f.root, "state", "other")
			if err := os.MkdirAll(filepath.Join(victim, "tiles"), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(victim, "secret"), []byte("other app's"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := c.plant(f, victim); err != nil {
				t.Fatal(err)
			}
			err := Bind(f.app, f.code)
			if err == nil || !strings.Contains(err.Error(), "symlink") {
				t.Errorf("Bind through a planted symlink: %v; want an error that names the symlink", err)
			}
			for _, p := range []string{victim, filepath.Join(victim, "secret"), filepath.Join(victim, "tiles")} {
				if u, g := owner(t, p); u != 0 || g != 0 {
					t.Errorf("%s was chowned to %d:%d", p, u, g)
				}
			}
			if ms, _ := Mounts(f.root); len(ms) != 0 {
				t.Errorf("something was mounted: %q", ms)
			}
		})
	}
}

func TestBindRefusesAFileAndABadPath(t *testing.T) {
	f := newFixture(t, "db")
	if err := os.WriteFile(filepath.Join(f.code, "db"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Bind(f.app, f.code); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("persist onto a file: %v", err)
	}
	f.app.Dirs = []string{"../x"}
	if err := Bind(f.app, f.code); err == nil {
		t.Error("a persist dir outside the code dir was accepted")
	}
	if ms, _ := Mounts(f.root); len(ms) != 0 {
		t.Errorf("something was mounted: %q", ms)
	}
}

func TestMakeStateDir(t *testing.T) {
	f := newFixture(t)
	dir := filepath.Join(f.root, "state", "new")
	if err := MakeStateDir(dir, 1234, 1235); err != nil {
		t.Fatal(err)
	}
	if u, g := owner(t, dir); u != 1234 || g != 1235 {
		t.Errorf("owned by %d:%d", u, g)
	}
	if err := MakeStateDir(dir, 1234, 1235); err != nil {
		t.Errorf("again: %v", err)
	}
	victim := filepath.Join(f.root, "victim")
	os.Mkdir(victim, 0o700)
	link := filepath.Join(f.root, "state", "link")
	os.Symlink(victim, link)
	if err := MakeStateDir(link, 1234, 1235); err == nil || !strings.Contains(err.Error(), "symlink") {
		t.Errorf("a state dir that is a symlink: %v", err)
	}
	if u, _ := owner(t, victim); u != 0 {
		t.Error("the link's target was chowned")
	}
}
