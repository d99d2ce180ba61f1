package applog

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestRotation(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "app.log")
	l, err := Open(p, 100, 2)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 30; i++ {
		fmt.Fprintf(l, "app: line %02d\n", i) // 14 bytes
	}
	l.Close()
	ents, _ := os.ReadDir(dir)
	if len(ents) != 3 {
		t.Fatalf("files: %v; want app.log, app.log.1, app.log.2", ents)
	}
	var total int
	for _, name := range []string{"app.log", "app.log.1", "app.log.2"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > 100 {
			t.Errorf("%s has %d bytes, more than the 100 allowed", name, len(b))
		}
		if !strings.HasSuffix(string(b), "\n") {
			t.Errorf("%s ends mid-line", name)
		}
		total += len(b)
	}
	last, _ := os.ReadFile(p)
	if !strings.HasSuffix(string(last), "line 29\n") {
		t.Errorf("newest line not in app.log: %q", last)
	}
	// Reopening appends where it left off.
	l, err = Open(p, 100, 2)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(l, "app: again\n")
	l.Close()
	b, _ := os.ReadFile(p)
	if !strings.HasPrefix(string(b), string(last)) {
		t.Error("reopen truncated the log")
	}
}

// TestRotationFailureRetried: a rotation that fails (here an injected
// rename error; on a node, a full or read-only /data for a moment) must not
// silence the app's log file until the next boot: the next write tries
// again.
func TestRotationFailureRetried(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "app.log")
	l, err := Open(p, 100, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	fail := true
	rename = func(from, to string) error {
		if fail {
			return &os.LinkError{Op: "rename", Old: from, New: to, Err: syscall.EIO}
		}
		return os.Rename(from, to)
	}
	defer func() { rename = os.Rename }()
	for i := 0; i < 10; i++ {
		fmt.Fprintf(l, "app: line %02d\n", i) // 14 bytes: the 8th rotates
	}
	fail = false
	if _, err := fmt.Fprintf(l, "app: after the failure\n"); err != nil {
		t.Fatalf("write after a failed rotation: %v", err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "after the failure") {
		t.Errorf("app.log lost the lines after a failed rotation: %q", b)
	}
	if _, err := os.Stat(p + ".1"); err != nil {
		t.Errorf("no rotation once renames work again: %v", err)
	}
}
