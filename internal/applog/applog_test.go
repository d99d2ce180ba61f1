package applog

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
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
