package filedigest

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func sumOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func setup(t *testing.T) (dir, file string) {
	t.Helper()
	Dir = t.TempDir()
	old := Settle
	Settle = 0
	t.Cleanup(func() { Dir, Settle = "", old })
	file = filepath.Join(t.TempDir(), "node")
	if err := os.WriteFile(file, []byte("version one"), 0o755); err != nil {
		t.Fatal(err)
	}
	return Dir, file
}

func remembered(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, filepath.Join(dir, e.Name()))
	}
	return out
}

// The digest is remembered and then used: a planted digest under the
// file's identity is what Sum answers, so the second call did not read the
// file.
func TestRemembered(t *testing.T) {
	dir, file := setup(t)
	sum, n, err := Sum(file)
	if err != nil || sum != sumOf([]byte("version one")) || n != 11 {
		t.Fatalf("Sum = %s %d %v", sum, n, err)
	}
	keys := remembered(t, dir)
	if len(keys) != 1 {
		t.Fatalf("remembered %v, want one entry", keys)
	}
	planted := strings.Repeat("ab", 32)
	if err := os.WriteFile(keys[0], []byte(planted), 0o644); err != nil {
		t.Fatal(err)
	}
	if sum, _, _ := Sum(file); sum != planted {
		t.Fatalf("second Sum = %s, want the remembered %s", sum, planted)
	}
	// A damaged entry is not believed.
	if err := os.WriteFile(keys[0], []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if sum, _, _ := Sum(file); sum != sumOf([]byte("version one")) {
		t.Fatalf("Sum with a damaged entry = %s", sum)
	}
}

// A file rewritten in place with bytes of the same size and its old
// modification time put back is still hashed again: its ctime moved.
func TestChangedInPlace(t *testing.T) {
	_, file := setup(t)
	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	if err := os.Chtimes(file, old, old); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Sum(file); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // past the file system's clock tick
	f, err := os.OpenFile(file, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("version two"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.Chtimes(file, old, old); err != nil {
		t.Fatal(err)
	}
	sum, _, err := Sum(file)
	if err != nil || sum != sumOf([]byte("version two")) {
		t.Fatalf("Sum after an in-place change = %s %v, want the new bytes' digest", sum, err)
	}
}

// A file changed a moment ago is hashed but not remembered.
func TestRecentNotRemembered(t *testing.T) {
	dir, file := setup(t)
	Settle = time.Hour
	if _, _, err := Sum(file); err != nil {
		t.Fatal(err)
	}
	if keys := remembered(t, dir); len(keys) != 0 {
		t.Fatalf("remembered %v for a file changed just now", keys)
	}
}

func TestMissing(t *testing.T) {
	setup(t)
	if _, _, err := Sum(filepath.Join(t.TempDir(), "nope")); !os.IsNotExist(err) {
		t.Fatalf("Sum of a missing file: %v, want not-exist", err)
	}
}

// Remember/Recall hold a fact per file and kind, forgotten when the file
// changes.
func TestRememberRecall(t *testing.T) {
	_, file := setup(t)
	if _, ok := Recall(file, "version"); ok {
		t.Fatal("recalled before anything was remembered")
	}
	Remember(file, "version", "v22.0.0")
	if v, ok := Recall(file, "version"); !ok || v != "v22.0.0" {
		t.Fatalf("Recall = %q %v", v, ok)
	}
	if _, ok := Recall(file, "other"); ok {
		t.Error("recalled under another kind")
	}
	if err := os.WriteFile(file, []byte("version two"), 0o755); err != nil {
		t.Fatal(err)
	}
	if v, ok := Recall(file, "version"); ok {
		t.Errorf("recalled %q for a changed file", v)
	}
}
