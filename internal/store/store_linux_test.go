package store

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
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
