// Package npm holds nodeboot's npm packages (a launcher and one package per
// platform, staged by pack.js); this test runs the launcher's own tests.
package npm

import (
	"os/exec"
	"testing"
)

// TestLauncher runs the launcher's unit tests (platform selection, the
// unsupported-platform message, argument and exit-status passing) with the
// host's node.
func TestLauncher(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skipf("no node: %v", err)
	}
	out, err := exec.Command(node, "--test", "nodeboot/test/").CombinedOutput()
	if err != nil {
		t.Fatalf("node --test: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}
