package cli

import (
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/nodeboot/nodeboot/internal/bundle"
	"github.com/nodeboot/nodeboot/internal/client"
	"github.com/nodeboot/nodeboot/internal/contract"
	"github.com/nodeboot/nodeboot/internal/creds"
)

// testNode is the node side of docs/api.md for the CLI's tests, served with
// the project's own certificate and token as a built image would.
type testNode struct {
	t     *testing.T
	token string

	mu        sync.Mutex
	status    client.Status
	unhealthy []string    // deploys answer 422 with these lines
	meta      bundle.Meta // of the last bundle accepted
	files     []string    // its app files
	actions   []string
	// pull is the body of the last PUT /v1/follow/auth it kept.
	pull string
	// logsCert is the body of the last PUT /v1/logs/auth it kept.
	logsCert string
	// changes are the requests that would change the node (not GETs).
	changes []string
	// updateKey verifies OS updates as the node's image would; failTrial
	// makes their trial fail.
	updateKey ed25519.PublicKey
	failTrial string
}

func (n *testNode) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+n.token {
		apiError(w, http.StatusUnauthorized, "wrong token")
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if r.Method != http.MethodGet {
		n.changes = append(n.changes, r.Method+" "+r.URL.Path)
	}
	app, rest, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/v1/apps/"), "/")
	if strings.HasPrefix(r.URL.Path, "/v1/apps/") && n.status.App(app) == nil {
		apiError(w, http.StatusNotFound, "no app "+app)
		return
	}
	switch {
	case r.URL.Path == "/v1/status":
		json.NewEncoder(w).Encode(n.status)
	case r.URL.Path == contract.PathUpdate && r.Method == http.MethodPut:
		n.updateOS(w, r)
	case r.URL.Path == contract.PathFollowAuth:
		n.followAuth(w, r)
	case r.URL.Path == contract.PathLogsAuth:
		n.logsAuth(w, r)
	case r.URL.Path == "/v1/reboot" || r.URL.Path == "/v1/poweroff":
		a := strings.TrimPrefix(r.URL.Path, "/v1/")
		n.actions = append(n.actions, a)
		w.WriteHeader(http.StatusAccepted)
		fmt.Fprintf(w, `{"action":%q}`, a)
	case rest == "logs":
		fmt.Fprintf(w, "%s line 1\n%s line 2 (lines=%s)\n", app, app, r.URL.Query().Get("lines"))
	case rest == "restart":
		n.actions = append(n.actions, "restart "+app)
		fmt.Fprintf(w, `{"app":%q,"pid":4242}`, app)
	case rest == "rollback":
		apiError(w, http.StatusNotFound, app+" has no previous version")
	case rest == "" && r.Method == http.MethodPut:
		n.deploy(w, r, app)
	default:
		http.NotFound(w, r)
	}
}

// deploy checks the digest and unpacks the bundle with the node's own
// extractor, so the test sees what a node would.
func (n *testNode) deploy(w http.ResponseWriter, r *http.Request, app string) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		apiError(w, http.StatusBadRequest, err.Error())
		return
	}
	sum := sha256.Sum256(body)
	if got, want := r.Header.Get("Nodeboot-Digest"), "sha256:"+hex.EncodeToString(sum[:]); got != want {
		apiError(w, http.StatusBadRequest, fmt.Sprintf("digest %s, body is %s", got, want))
		return
	}
	dst := filepath.Join(n.t.TempDir(), "v")
	meta, err := bundle.Extract(strings.NewReader(string(body)), dst, bundle.Limits{})
	if err != nil {
		apiError(w, http.StatusBadRequest, err.Error())
		return
	}
	if n.unhealthy != nil {
		w.WriteHeader(http.StatusUnprocessableEntity)
		json.NewEncoder(w).Encode(map[string]any{"error": "the new version of " + app + " exited at once", "logs": n.unhealthy})
		return
	}
	n.meta, n.files = meta, nil
	filepath.WalkDir(dst, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dst, p)
			n.files = append(n.files, filepath.ToSlash(rel))
		}
		return nil
	})
	fmt.Fprintf(w, `{"app":%q,"version":"sha256:%x","previousVersion":"image","state":"running"}`, app, sum)
}

func apiError(w http.ResponseWriter, status int, msg string) {
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// project makes an app project with credentials and a running test node
// recorded as "pi" in its nodes.json.
func project(t *testing.T, pkg string) (string, *testNode) {
	t.Helper()
	dir := t.TempDir()
	write(t, dir, map[string]string{"package.json": pkg, "app.js": helloJS, "node_modules/dep/index.js": "module.exports = 1\n", "notes.txt": "x\n", ".nodebootignore": "notes.txt\n"})
	cr, _, err := creds.Ensure(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := &testNode{t: t, token: cr.Token, status: client.Status{
		Node: client.NodeStatus{Hostname: "hello", UptimeSeconds: 3725, Kernel: "7.1.2", NodeVersion: "v20.20.2", ImageVersion: "sha256:" + strings.Repeat("ab", 32),
			Memory: client.Memory{TotalBytes: 512 << 20, AvailableBytes: 300 << 20}, Data: client.DataStatus{TotalBytes: 1 << 30, FreeBytes: 1 << 29}},
		Apps: []client.AppStatus{{Name: "hello", State: "running", PID: 312, Port: 8080, Version: "image"}},
	}}
	srv := httptest.NewUnstartedServer(n)
	cert, err := tls.X509KeyPair(cr.NodeCertPEM, cr.NodeKeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	if err := creds.RecordNode(dir, "pi", srv.Listener.Addr().String()); err != nil {
		t.Fatal(err)
	}
	return dir, n
}

const helloPkg = `{"name":"hello","main":"app.js","engines":{"node":">=20"}}`

func TestManageVerbs(t *testing.T) {
	dir, n := project(t, helloPkg)
	p := []string{"--project", dir}

	out, err := nodeboot(t, append([]string{"status", "pi"}, p...)...)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"hello", "1h2m", "7.1.2", "v20.20.2", "sha256:abababababab", "300.0 MiB free of 512.0 MiB", "RAM only", "running", "312", "image"} {
		if !strings.Contains(out, w) {
			t.Errorf("status output lacks %q:\n%s", w, out)
		}
	}
	out, err = nodeboot(t, append([]string{"status", "pi", "--json"}, p...)...)
	var s client.Status
	if err != nil || json.Unmarshal([]byte(out), &s) != nil || s.Node.ImageVersion != n.status.Node.ImageVersion {
		t.Errorf("status --json: %v\n%s", err, out)
	}

	out, err = nodeboot(t, append([]string{"logs", "pi", "-n", "5"}, p...)...)
	if err != nil || out != "hello line 1\nhello line 2 (lines=5)\n" {
		t.Errorf("logs: %v %q", err, out)
	}
	out, err = nodeboot(t, append([]string{"restart", "pi", "hello"}, p...)...)
	if err != nil || !strings.Contains(out, "pid 4242") {
		t.Errorf("restart: %v %q", err, out)
	}
	_, err = nodeboot(t, append([]string{"rollback", "pi", "hello"}, p...)...)
	if err == nil || !strings.Contains(err.Error(), "no previous version") {
		t.Errorf("rollback without a previous version: %v", err)
	}
	for _, verb := range []string{"reboot", "poweroff"} {
		if out, err := nodeboot(t, append([]string{verb, "pi"}, p...)...); err != nil || !strings.Contains(out, "pi (127.0.0.1:") {
			t.Errorf("%s: %v %q", verb, err, out)
		}
	}
	if got := strings.Join(n.actions, ","); got != "restart hello,reboot,poweroff" {
		t.Errorf("node saw %s", got)
	}
}

func TestDeploy(t *testing.T) {
	dir, n := project(t, helloPkg)
	// The project is found upward from the app dir, not the current dir.
	out, err := nodeboot(t, "deploy", "pi", dir)
	if err != nil {
		t.Fatalf("deploy: %v\n%s", err, out)
	}
	if !strings.Contains(out, "deployed hello on pi") || !strings.Contains(out, "was image") {
		t.Errorf("deploy output: %s", out)
	}
	if n.meta.App != "hello" || n.meta.Entry != "app.js" || n.meta.Engines != ">=20" {
		t.Errorf("bundle meta = %+v", n.meta)
	}
	got := strings.Join(n.files, ",")
	// As in the image: notes.txt is ignored, the credentials never leave.
	if got != ".nodebootignore,app.js,node_modules/dep/index.js,package.json" {
		t.Errorf("bundle files = %s, want the app's files with .nodebootignore applied and without .nodeboot/", got)
	}

	// An unhealthy version: non-zero, with its last lines.
	n.unhealthy = []string{"Error: Cannot find module 'express'", "    at Module._resolveFilename"}
	out, err = nodeboot(t, "deploy", "pi", dir, "--json")
	if err == nil || client.StatusOf(err) != http.StatusUnprocessableEntity {
		t.Fatalf("unhealthy deploy: %v", err)
	}
	for _, w := range []string{"last lines of the new version", "Cannot find module 'express'", "_resolveFilename"} {
		if !strings.Contains(out, w) {
			t.Errorf("unhealthy deploy output lacks %q:\n%s", w, out)
		}
	}
}

// TestManageBadInput checks each bad input's message: what is wrong and
// what to do.
func TestManageBadInput(t *testing.T) {
	dir, n := project(t, helloPkg)
	n.status.Apps = append(n.status.Apps, client.AppStatus{Name: "api", State: "running"})
	old, _ := project(t, `{"name":"hello","main":"app.js","engines":{"node":">=22"}}`)
	if err := os.RemoveAll(filepath.Join(old, creds.Dir)); err != nil {
		t.Fatal(err)
	}
	other, _ := project(t, `{"name":"other","main":"app.js"}`)
	newer, _ := project(t, `{"name":"hello","main":"app.js","engines":{"node":">=22"}}`)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	if err := creds.RecordNode(dir, "local", closed); err != nil {
		t.Fatal(err)
	}
	p := "--project=" + dir

	cases := []struct {
		name string
		args []string
		want []string
	}{
		{"unknown node name", []string{"status", "pj", p}, []string{`no node named "pj"`, "known: local, pi", "host[:port]"}},
		{"bad address", []string{"status", "10.0.0.1:99999", p}, []string{"10.0.0.1:99999", "port"}},
		{"no .nodeboot", []string{"deploy", "pi", old}, []string{".nodeboot/", "nodeboot build", "--project"}},
		{"no .nodeboot for status", []string{"status", "pi", "--project", t.TempDir()}, []string{"--project", "no .nodeboot/ there", "nodeboot build"}},
		{"unreachable node", []string{"status", "local", p}, []string{"cannot reach the node at " + closed, "is it running", "last nodeboot run"}},
		{"unreachable address", []string{"reboot", closed, p}, []string{"cannot reach the node at " + closed}},
		{"app not on the node (deploy)", []string{"deploy", "pi", other, "--project", dir}, []string{`no app "other"`, "hello, api", "--app"}},
		{"app not on the node (--app)", []string{"deploy", "pi", dir, "--app", "web"}, []string{`no app "web"`, "hello, api"}},
		{"app not on the node (restart)", []string{"restart", "pi", "web", p}, []string{`no app "web"`, "hello, api"}},
		{"app not on the node (logs)", []string{"logs", "pi", "web", p}, []string{`no app "web"`, "hello, api"}},
		{"logs of which app", []string{"logs", "pi", p}, []string{"several apps", "hello, api", "nodeboot logs pi hello"}},
		{"engines not satisfied", []string{"deploy", "pi", newer, "--project", dir}, []string{"needs node >=22", "runs node v20.20.2", "--node", "engines.node"}},
		{"bad --app", []string{"deploy", "pi", dir, "--app", "Web App"}, []string{"--app", "not a valid app name"}},
		{"bad -n", []string{"logs", "pi", "hello", "-n", "0", p}, []string{"-n 0", "1 or more"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, err := nodeboot(t, c.args...)
			if err == nil {
				t.Fatalf("succeeded:\n%s", out)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// TestWrongNode points a project at another project's node: the pin
// refuses it before the token is sent.
func TestWrongNode(t *testing.T) {
	dir, _ := project(t, helloPkg)
	other, _ := project(t, helloPkg)
	nodes, err := creds.ReadNodes(other)
	if err != nil {
		t.Fatal(err)
	}
	_, err = nodeboot(t, "status", nodes["pi"].Address, "--project", dir)
	if err == nil || !strings.Contains(err.Error(), "certificate does not match") || !strings.Contains(err.Error(), "--project") {
		t.Errorf("status of another project's node: %v", err)
	}
}

func TestUptimeAndSizes(t *testing.T) {
	for sec, want := range map[float64]string{0: "0s", 59.9: "59s", 61: "1m1s", 3725: "1h2m", 90061: "1d1h"} {
		if got := uptime(sec); got != want {
			t.Errorf("uptime(%v) = %s, want %s", sec, got, want)
		}
	}
	for n, want := range map[uint64]string{0: "0 B", 1023: "1023 B", 1536: "1.5 KiB", 512 << 20: "512.0 MiB", 3 << 40: "3.0 TiB"} {
		if got := bytesIEC(n); got != want {
			t.Errorf("bytesIEC(%d) = %s, want %s", n, got, want)
		}
	}
	for v, want := range map[string]string{"image": "image", "": "-", "sha256:" + strings.Repeat("0", 64): "sha256:000000000000", "sha256:ab": "sha256:ab", "d2daad305bf42c76": "d2daad305bf42c76", strings.Repeat("e", 64): "eeeeeeeeeeee", "abc": "abc"} {
		if got := shortVersion(v); got != want {
			t.Errorf("shortVersion(%q) = %s, want %s", v, got, want)
		}
	}
}
