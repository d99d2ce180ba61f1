package tryboot

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/nodeboot/nodeboot/internal/piboot"
)

// TestOSControl commits through real files: autoboot.txt keeps its inode
// (the same directory entry: no rename) and holds the new content; a write
// of another length is refused. (The host's kernel here has no vfat to
// loop-mount; the e2e boot mounts none of the Pi's FAT partitions yet.)
func TestOSControl(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "autoboot.txt")
	if err := os.WriteFile(p, piboot.Autoboot{TrybootAB: true, Boot: 2, Try: 3}.Format(), 0o644); err != nil {
		t.Fatal(err)
	}
	ino := func() uint64 {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		return st.Sys().(*syscall.Stat_t).Ino
	}
	before := ino()
	c := OSControl{Root: dir}
	s := &Switch{Control: c, State: memState{}}
	if err := s.Arm("b", "v2"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Commit("b"); err != nil {
		t.Fatal(err)
	}
	if ino() != before {
		t.Error("autoboot.txt was replaced, not rewritten in place")
	}
	got, _ := os.ReadFile(p)
	if want := (piboot.Autoboot{TrybootAB: true, Boot: 3, Try: 2}).Format(); !bytes.Equal(got, want) {
		t.Errorf("autoboot.txt after the commit:\n%s", got)
	}
	if err := c.WriteInPlace("autoboot.txt", []byte("short")); err == nil || !strings.Contains(err.Error(), "keep the length") {
		t.Errorf("a write of another length: %v", err)
	}
}

type memState map[string][]byte

func (m memState) ReadFile(name string) ([]byte, error) {
	b, ok := m[name]
	if !ok {
		return nil, os.ErrNotExist
	}
	return b, nil
}
func (m memState) WriteFile(name string, data []byte) error { m[name] = data; return nil }
func (m memState) Remove(name string) error                 { delete(m, name); return nil }
