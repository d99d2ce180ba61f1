package cli

import (
	"bytes"
	"strings"
	"testing"

	"github.com/nodeboot/nodeboot/internal/client"
)

// A degraded node says why in `nodeboot status`, above the (empty) apps.
func TestPrintStatusDegraded(t *testing.T) {
	var s client.Status
	s.Node.Degraded = "/etc/nodeboot/runtime.json: decoding runtime config: unexpected EOF: no app runs; build and install a new image"
	var out bytes.Buffer
	if err := printStatus(&out, &s); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "\ndegraded: /etc/nodeboot/runtime.json: decoding runtime config: unexpected EOF") {
		t.Errorf("status does not say why the node is degraded:\n%s", out.String())
	}
	out.Reset()
	s.Node.Degraded = ""
	printStatus(&out, &s)
	if strings.Contains(out.String(), "degraded") {
		t.Errorf("a healthy node reads as degraded:\n%s", out.String())
	}
}
