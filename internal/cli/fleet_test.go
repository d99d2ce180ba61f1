package cli

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"log"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nodeboot/nodeboot/internal/contract"
	"github.com/nodeboot/nodeboot/internal/creds"
)

// addTestNode starts another test node of project dir, recorded as name.
func addTestNode(t *testing.T, dir, name string, like *testNode) (*testNode, *httptest.Server) {
	t.Helper()
	cr, err := creds.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := &testNode{t: t, token: cr.Token, status: like.status}
	srv := httptest.NewUnstartedServer(n)
	cert, err := tls.X509KeyPair(cr.NodeCertPEM, cr.NodeKeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	if err := creds.RecordNode(dir, name, srv.Listener.Addr().String()); err != nil {
		t.Fatal(err)
	}
	return n, srv
}

func TestFleetDeployStopsAtTheFirstFailure(t *testing.T) {
	dir, pi := project(t, helloPkg)
	bad, _ := addTestNode(t, dir, "bad", pi)
	bad.unhealthy = []string{"Error: boom", "    at app.js:3"}
	last, _ := addTestNode(t, dir, "zed", pi)

	out, err := nodeboot(t, "fleet", "deploy", dir, "--nodes", "pi,bad,zed")
	if err == nil {
		t.Fatalf("a fleet deploy with a failing node succeeded:\n%s", out)
	}
	for _, want := range []string{"node bad failed", "exited at once", "changed: pi", "not touched (they keep what they run): zed"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	for _, want := range []string{"deployed hello on pi", "Error: boom", "bad: FAILED"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if pi.meta.App != "hello" || last.meta.App != "" {
		t.Errorf("pi got %q, zed got %q: want pi deployed and zed untouched", pi.meta.App, last.meta.App)
	}

	// Without the bad node, all of them, two at a time.
	out, err = nodeboot(t, "fleet", "deploy", dir, "--nodes", "pi,zed", "--max-unavailable", "2")
	if err != nil || !strings.Contains(out, "deployed to all 2 nodes: pi, zed") || last.meta.App != "hello" {
		t.Fatalf("%v\n%s", err, out)
	}
}

func TestFleetStatus(t *testing.T) {
	dir, pi := project(t, helloPkg)
	pi.status.Follow = &contract.FollowStatus{Ref: "127.0.0.1:5000/hello:stable", State: "release refused",
		LastCheck: time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC), Target: "sha256:" + strings.Repeat("c", 64), Applied: "sha256:" + strings.Repeat("d", 64),
		LastError: "app hello version cccccccccccc: did not become healthy"}
	_, down := addTestNode(t, dir, "gone", pi)
	down.Close()
	other, _ := addTestNode(t, dir, "zed", pi)
	other.status.Follow = &contract.FollowStatus{Ref: "127.0.0.1:5000/hello:stable", State: "up to date", Target: "sha256:" + strings.Repeat("d", 64), Applied: "sha256:" + strings.Repeat("d", 64)}

	out, err := nodeboot(t, "fleet", "status", "--project", dir)
	if err == nil || !strings.Contains(err.Error(), "1 of 3 nodes did not answer") {
		t.Errorf("error %v", err)
	}
	lines := strings.Split(out, "\n")
	if len(lines) < 4 || !strings.HasPrefix(lines[1], "gone") || !strings.HasPrefix(lines[2], "pi") || !strings.HasPrefix(lines[3], "zed") {
		t.Fatalf("rows not by name:\n%s", out)
	}
	for i, want := range map[int][]string{
		1: {"no: ", "connection refused"},
		2: {"yes", "hello@image (running)", "127.0.0.1:5000/hello:stable", "yes: release refused: app hello version cccccccccccc: did not become healthy"},
		3: {"yes", "127.0.0.1:5000/hello:stable", " no"},
	} {
		for _, w := range want {
			if !strings.Contains(lines[i], w) {
				t.Errorf("row %d lacks %q: %s", i, w, lines[i])
			}
		}
	}
	out, _ = nodeboot(t, "fleet", "status", "--project", dir, "--json", "--nodes", "zed,pi")
	var rows []FleetNode
	if err := json.Unmarshal([]byte(out), &rows); err != nil || len(rows) != 2 || rows[0].Name != "zed" || rows[1].Status.Follow.Target != pi.status.Follow.Target {
		t.Fatalf("--json: %v\n%s", err, out)
	}

	// One node's status shows what it follows.
	out, err = nodeboot(t, "status", "pi", "--project", dir)
	if err != nil || !strings.Contains(out, "follows 127.0.0.1:5000/hello:stable: release refused") || !strings.Contains(out, "last error: app hello") || !strings.Contains(out, "the tag names sha256:cccccccccccc") {
		t.Errorf("status: %v\n%s", err, out)
	}
}

func TestFleetBadInput(t *testing.T) {
	dir, _ := project(t, helloPkg)
	empty := t.TempDir()
	if _, _, err := creds.Ensure(empty); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"fleet", "status", "--project", dir, "--nodes", "pi,nope"}, `--nodes: "nope" is not a node of`},
		{[]string{"fleet", "status", "--project", dir, "--nodes", "pi,pi"}, `"pi" is named twice`},
		{[]string{"fleet", "status", "--project", empty}, "names no nodes: add them with nodeboot fleet add NAME HOST[:PORT]"},
		{[]string{"fleet", "deploy", dir, "--max-unavailable", "-1"}, "--max-unavailable -1"},
		{[]string{"fleet", "add", "bad.name", "10.0.0.1", "--project", dir}, "bad.name"},
	} {
		_, err := nodeboot(t, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.args, err, c.want)
		}
	}
	out, err := nodeboot(t, "fleet", "add", "kiosk-1", "192.0.2.7", "--project", dir)
	if err != nil || !strings.Contains(out, "node kiosk-1 is 192.0.2.7:9443") {
		t.Fatalf("%v %s", err, out)
	}
}
