//go:build linux

package boot

import (
	"os"
	"path/filepath"
	"testing"
)

func TestHasPowerKey(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		caps string
		want bool
	}{
		// The ACPI power button as sysfs prints it: KEY_POWER (116) is bit 52 of the second word.
		{"10000000000000 0\n", true},
		// An AT keyboard: many words, bit 116 set among others.
		{"402000000 3803078f800d001 feffffdfffefffff fffffffffffffffe\n", true},
		{"0\n", false},
		{"ffffffffffffffff\n", false},
	} {
		p := filepath.Join(dir, "key")
		os.WriteFile(p, []byte(c.caps), 0o644)
		if got := hasPowerKey(p); got != c.want {
			t.Errorf("hasPowerKey(%q) = %v, want %v", c.caps, got, c.want)
		}
	}
	if hasPowerKey(filepath.Join(dir, "missing")) {
		t.Error("missing file has a power key")
	}
}
