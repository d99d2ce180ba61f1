package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nodeboot/nodeboot/internal/contract"
)

func TestPrintOS(t *testing.T) {
	var b strings.Builder
	printOS(&b, &contract.OSStatus{
		Slots: []contract.SlotStatus{
			{Name: "a", State: "failed", Image: &contract.UpdateImage{ID: "bad1", Version: 9}},
			{Name: "b", State: "good", Booted: true, Image: &contract.UpdateImage{ID: "good1", Version: 7}},
		},
		Last: &contract.UpdateOutcome{Image: contract.UpdateImage{ID: "bad1"}, Reason: "app web did not become healthy"},
	})
	out := b.String()
	for _, want := range []string{"B (booted)  good", "good1", "A           failed", "last OS update: to bad1 failed: app web did not become healthy"} {
		if !strings.Contains(out, want) {
			t.Errorf("lacks %q:\n%s", want, out)
		}
	}
	b.Reset()
	printOS(&b, &contract.OSStatus{NoSlots: true})
	if b.Len() != 0 {
		t.Errorf("an initramfs node printed %q", b.String())
	}
}

// TestUpdateBuildFailureLeavesNothing: when building the project's disk
// image fails, update says why and leaves no build directory behind in
// the user cache.
func TestUpdateBuildFailureLeavesNothing(t *testing.T) {
	dir, n := project(t, helloPkg)
	n.status.Node.BootID = "boot"
	n.status.OS = &contract.OSStatus{Slots: []contract.SlotStatus{{Name: "a", State: "good", Booted: true}, {Name: "b", State: "empty"}}}
	cache := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", cache)
	missing := filepath.Join(t.TempDir(), "no-such-bzImage")
	out, err := nodeboot(t, "update", "pi", dir, "--kernel", missing, "--project", dir)
	if err == nil || !strings.Contains(err.Error(), missing) {
		t.Fatalf("update with a missing kernel: %v\n%s", err, out)
	}
	left, _ := os.ReadDir(filepath.Join(cache, "nodeboot", "update"))
	for _, e := range left {
		t.Errorf("update left %s behind in %s", e.Name(), filepath.Join(cache, "nodeboot", "update"))
	}
}
