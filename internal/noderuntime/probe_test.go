package noderuntime

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nodeboot/nodeboot/internal/filedigest"
)

// The host node's answer is remembered when `node` is the binary itself,
// and asked again when it is a launcher whose execPath is another file, or
// when the binary changed.
func TestProbeHostNodeRemembered(t *testing.T) {
	filedigest.Dir = t.TempDir()
	old := filedigest.Settle
	filedigest.Settle = 0
	t.Cleanup(func() { filedigest.Dir, filedigest.Settle = "", old })
	dir := t.TempDir()
	calls := filepath.Join(dir, "calls")
	script := func(name, version, execPath string) string {
		p := filepath.Join(dir, name)
		writeExec(t, p, []byte("#!/bin/sh\necho x >> "+calls+"\nprintf '"+version+"\\n"+execPath+"\\n'\n"))
		return p
	}
	count := func() int {
		b, _ := os.ReadFile(calls)
		return strings.Count(string(b), "x")
	}
	node := script("node", "v22.1.0", filepath.Join(dir, "node"))
	for i := 0; i < 3; i++ {
		v, real, err := probeHostNode(context.Background(), node)
		if err != nil || v != "22.1.0" || real != node {
			t.Fatalf("probe = %q %q %v", v, real, err)
		}
	}
	if n := count(); n != 1 {
		t.Errorf("node ran %d times for three probes, want 1", n)
	}
	// Replaced (another version): asked again.
	script("node", "v22.2.0", filepath.Join(dir, "node"))
	if v, _, err := probeHostNode(context.Background(), node); err != nil || v != "22.2.0" {
		t.Errorf("after the change: %q %v", v, err)
	}
	// A launcher runs another binary: never remembered.
	launcher := script("launcher", "v20.0.0", node)
	os.Remove(calls)
	for i := 0; i < 2; i++ {
		if _, real, err := probeHostNode(context.Background(), launcher); err != nil || real != node {
			t.Fatalf("launcher probe = %q %v", real, err)
		}
	}
	if n := count(); n != 2 {
		t.Errorf("the launcher ran %d times for two probes, want 2", n)
	}
}
