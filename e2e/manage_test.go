package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/nodeboot/nodeboot/internal/api"
	"github.com/nodeboot/nodeboot/internal/api/apitest"
	"github.com/nodeboot/nodeboot/internal/bundle"
	"github.com/nodeboot/nodeboot/internal/cli"
	"github.com/nodeboot/nodeboot/internal/creds"
	"github.com/nodeboot/nodeboot/internal/spec"
	"github.com/nodeboot/nodeboot/internal/vm"
)

// managed is a booted disk image with its app and API ports forwarded.
type managed struct {
	v                *vm.VM
	appPort, apiPort int
}

func bootManaged(t *testing.T, ctx context.Context, img string) *managed {
	t.Helper()
	appPort, err := vm.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	apiPort, err := vm.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	v, err := vm.Start(ctx, vm.Config{
		Disk:     img,
		Persist:  true,
		Memory:   "512M",
		Forwards: []vm.Forward{{Host: appPort, Guest: 8080}, {Host: apiPort, Guest: cli.APIPort}},
		Console:  consoleLog(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Kill)
	m := &managed{v: v, appPort: appPort, apiPort: apiPort}
	m.waitFor(t, "app versioned listening on port 8080", 0)
	m.waitFor(t, "management API on https port", 0) // it starts after the apps listen
	return m
}

// waitFor waits for marker on the console after byte offset from.
func (m *managed) waitFor(t *testing.T, marker string, from int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if _, err := m.v.WaitFor(ctx, marker, from); err != nil {
		t.Fatal(err)
	}
}

func (m *managed) node() string { return fmt.Sprintf("127.0.0.1:%d", m.apiPort) }

// serving returns what the app answers (its version).
func (m *managed) serving(t *testing.T) string {
	t.Helper()
	return strings.TrimSpace(get(t, fmt.Sprintf("http://127.0.0.1:%d/", m.appPort)))
}

// nodeboot runs the CLI in-process against proj's credentials.
func nodeboot(ctx context.Context, proj string, args ...string) (string, error) {
	var out bytes.Buffer
	err := cli.Run(ctx, append(args, "--project", proj), &out, &out)
	return out.String(), err
}

func setVersion(t *testing.T, proj, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(proj, "version.txt"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// apiClient talks to a node's API with the project's credentials.
// Keep-alives are off: each call makes a new client, and a kept-alive
// connection left behind stays open on the node for its idle timeout. A
// test polling once a second held ~30 of them, and the node, which takes
// at most 32 from one source (every host connection comes from slirp's
// 10.0.2.2), closed the next one at once: the CLI's status got EOF.
func apiClient(c *creds.Creds) *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: c.ClientTLS(), DisableKeepAlives: true}}
}

// syncBuf is a writer the test reads while a command writes to it.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestManage boots a disk image once and drives it remotely the way its
// owner would: status, metrics, logs -f, deploys (good and crashing),
// rollback, the status page in Chromium, every route refusing strangers,
// a reboot through the API, then power cuts in the middle of deploys.
func TestManage(t *testing.T) {
	requireQEMU(t)
	if _, err := vm.FindFirmware(); err != nil {
		if os.Getenv("NODEBOOT_E2E") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	root := repoRoot(t)
	proj := t.TempDir()
	copyDir(t, filepath.Join(root, "e2e", "testdata", "versioned"), proj)
	img := filepath.Join(t.TempDir(), "versioned.img")
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	var log strings.Builder
	if err := cli.Run(ctx, []string{"build", proj, "--format", "disk", "--size", "1G", "-o", img}, &log, &log); err != nil {
		t.Fatalf("build: %v\n%s", err, log.String())
	}
	owner, err := creds.Load(proj)
	if err != nil {
		t.Fatalf("the build left no credentials in %s/.nodeboot: %v", proj, err)
	}
	m := bootManaged(t, ctx, img)
	base := "https://" + m.node()
	if got := m.serving(t); got != "v1" {
		t.Fatalf("the image's version answers %q, want v1", got)
	}

	t.Run("status and metrics", func(t *testing.T) {
		out, err := nodeboot(ctx, proj, "status", m.node(), "--json")
		if err != nil {
			t.Fatalf("status: %v\n%s", err, out)
		}
		var st api.Status
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("status --json is not the API's JSON: %v\n%s", err, out)
		}
		if st.Node.Hostname != "versioned" || !strings.HasPrefix(st.Node.NodeVersion, "v") || st.Node.Kernel == "" || !st.Node.Data.Persistent || st.Node.Memory.TotalBytes == 0 {
			t.Errorf("node status: %+v", st.Node)
		}
		if len(st.Apps) != 1 || st.Apps[0].Name != "versioned" || st.Apps[0].State != "running" || st.Apps[0].PID == 0 || st.Apps[0].Version != "image" {
			t.Errorf("apps: %+v", st.Apps)
		}
		human, err := nodeboot(ctx, proj, "status", m.node())
		if err != nil || !strings.Contains(human, "versioned") || !strings.Contains(human, "running") {
			t.Errorf("status: %v\n%s", err, human)
		}

		req, _ := http.NewRequest("GET", base+"/metrics", nil)
		req.Header.Set("Authorization", "Bearer "+owner.Token)
		resp, err := apiClient(owner).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		p := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := p.TextToMetricFamilies(resp.Body)
		if err != nil {
			t.Fatalf("metrics do not parse: %v", err)
		}
		for _, name := range []string{"nodeboot_app_up", "nodeboot_app_restarts_total", "nodeboot_boot_seconds", "nodeboot_memory_available_bytes", "nodeboot_cpu_seconds_total"} {
			if fams[name] == nil {
				t.Errorf("metrics lack %s", name)
			}
		}
		if f := fams["nodeboot_app_up"]; f != nil && (len(f.Metric) != 1 || f.Metric[0].GetGauge().GetValue() != 1) {
			t.Errorf("nodeboot_app_up = %v, want one app up", f.Metric)
		}
	})

	t.Run("every route refuses strangers", func(t *testing.T) {
		other := t.TempDir()
		stranger, _, err := creds.Ensure(other)
		if err != nil {
			t.Fatal(err)
		}
		// The stranger's CLI pins its own node's certificate: the
		// handshake with this node fails.
		out, err := nodeboot(ctx, other, "status", m.node())
		if err == nil || !strings.Contains(out+err.Error(), "certificate") {
			t.Errorf("another project's CLI talked to this node: %v\n%s", err, out)
		}
		// With this node's certificate accepted, its token is refused
		// anyway, and so are no token and a made-up one.
		tlsConf := owner.ClientTLS()
		c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConf}}
		plain := &http.Client{Timeout: 30 * time.Second}
		for _, r := range api.New(nil, [32]byte{}, api.Options{}).Routes() {
			path := strings.ReplaceAll(r.Pattern, "{app}", "versioned")
			for _, tok := range []string{"", strings.Repeat("0", 64), stranger.Token} {
				req, _ := http.NewRequest(r.Method, base+path, strings.NewReader(""))
				if tok != "" {
					req.Header.Set("Authorization", "Bearer "+tok)
				}
				resp, err := c.Do(req)
				if err != nil {
					t.Errorf("%s %s: %v", r.Method, path, err)
					continue
				}
				resp.Body.Close()
				if r.Public {
					if resp.StatusCode != 200 {
						t.Errorf("%s %s: %d, want 200 without credentials", r.Method, path, resp.StatusCode)
					}
					continue
				}
				if resp.StatusCode != http.StatusUnauthorized {
					t.Errorf("%s %s with token %.8q: %d, want 401", r.Method, path, tok, resp.StatusCode)
				}
			}
			// Plain HTTP on the TLS port gets no answer from any route.
			req, _ := http.NewRequest(r.Method, "http://"+m.node()+path, nil)
			req.Header.Set("Authorization", "Bearer "+owner.Token)
			if resp, err := plain.Do(req); err == nil {
				resp.Body.Close()
				if resp.StatusCode < 400 {
					t.Errorf("plain HTTP %s %s: %d", r.Method, path, resp.StatusCode)
				}
			}
		}
		if _, err := tls.Dial("tcp", m.node(), stranger.ClientTLS()); err == nil {
			t.Error("a client pinning another certificate completed a handshake")
		}
	})

	t.Run("logs -f shows a line printed after it started", func(t *testing.T) {
		lctx, lcancel := context.WithCancel(ctx)
		defer lcancel()
		var out syncBuf
		done := make(chan error, 1)
		go func() {
			done <- cli.Run(lctx, []string{"logs", m.node(), "versioned", "-f", "--project", proj}, &out, &out)
		}()
		// The backlog arrives first; then a request makes a new line.
		deadline := time.Now().Add(time.Minute)
		for !strings.Contains(out.String(), "version v1 starting") {
			if time.Now().After(deadline) {
				t.Fatalf("logs -f printed no backlog:\n%s", out.String())
			}
			time.Sleep(100 * time.Millisecond)
		}
		marker := fmt.Sprintf("/after-follow-%d", time.Now().UnixNano())
		get(t, fmt.Sprintf("http://127.0.0.1:%d%s", m.appPort, marker))
		for !strings.Contains(out.String(), "served "+marker) {
			if time.Now().After(deadline) {
				t.Fatalf("logs -f did not show the new line %q:\n%s", marker, out.String())
			}
			time.Sleep(100 * time.Millisecond)
		}
		lcancel()
		<-done
	})

	t.Run("deploy v2 without a reboot", func(t *testing.T) {
		setVersion(t, proj, "v2\n")
		boots := strings.Count(m.v.Console(), "init started")
		out, err := nodeboot(ctx, proj, "deploy", m.node(), proj)
		if err != nil {
			t.Fatalf("deploy: %v\n%s", err, out)
		}
		if got := m.serving(t); got != "v2" {
			t.Errorf("after deploy the app answers %q, want v2", got)
		}
		if n := strings.Count(m.v.Console(), "init started"); n != boots {
			t.Error("the node rebooted during the deploy")
		}
	})

	t.Run("a version that crashes on start is refused, v2 keeps serving", func(t *testing.T) {
		setVersion(t, proj, "v3\ncrash\n")
		out, err := nodeboot(ctx, proj, "deploy", m.node(), proj)
		if err == nil {
			t.Fatalf("deploying a crashing version succeeded:\n%s", out)
		}
		if !strings.Contains(out+err.Error(), "missing DATABASE_URL") {
			t.Errorf("the CLI does not show the new version's log:\n%s\n%v", out, err)
		}
		if got := m.serving(t); got != "v2" {
			t.Errorf("after the failed deploy the app answers %q, want v2", got)
		}
	})

	t.Run("rollback returns to the image's version", func(t *testing.T) {
		out, err := nodeboot(ctx, proj, "rollback", m.node(), "versioned")
		if err != nil {
			t.Fatalf("rollback: %v\n%s", err, out)
		}
		if got := m.serving(t); got != "v1" {
			t.Errorf("after rollback the app answers %q, want v1", got)
		}
		setVersion(t, proj, "v2\n")
		if out, err := nodeboot(ctx, proj, "deploy", m.node(), proj); err != nil {
			t.Fatalf("deploy v2 again: %v\n%s", err, out)
		}
	})

	// Issue 12, item 1: the third deploy of an app with a persist dir
	// deleted its persistent data, and every deploy stacked another bind
	// mount on it.
	t.Run("a persist dir survives deploys and a rollback, one noexec mount", func(t *testing.T) {
		want := fmt.Sprintf("kept-%d", time.Now().UnixNano())
		if n := m.note(t, "/note/write/"+want); n.Note == nil || *n.Note != want {
			t.Fatalf("the note written reads back %v", n.Note)
		}
		// A rollback binds an earlier version's dir again: where the
		// binds used to stack up.
		for _, v := range []string{"v5", "v6", "rollback to v5", "v7", "v2"} {
			if to, ok := strings.CutPrefix(v, "rollback to "); ok {
				if out, err := nodeboot(ctx, proj, "rollback", m.node(), "versioned"); err != nil {
					t.Fatalf("rollback: %v\n%s", err, out)
				}
				m.checkNote(t, to, want)
				continue
			}
			setVersion(t, proj, v+"\n")
			if out, err := nodeboot(ctx, proj, "deploy", m.node(), proj); err != nil {
				t.Fatalf("deploy %s: %v\n%s", v, err, out)
			}
			m.checkNote(t, v, want)
		}
	})

	t.Run("the status page in Chromium", func(t *testing.T) {
		get(t, fmt.Sprintf("http://127.0.0.1:%d/page-check", m.appPort))
		pctx, pcancel := context.WithTimeout(ctx, 3*time.Minute)
		defer pcancel()
		if err := apitest.CheckPage(pctx, base+"/", owner.Token, "versioned", "served /page-check"); err != nil {
			if os.Getenv("NODEBOOT_E2E") == "" && strings.Contains(err.Error(), "chromium") {
				t.Skip(err)
			}
			t.Fatal(err)
		}
	})

	t.Run("reboot through the API keeps the deployed version", func(t *testing.T) {
		from := len(m.v.Console())
		if out, err := nodeboot(ctx, proj, "reboot", m.node()); err != nil {
			t.Fatalf("reboot: %v\n%s", err, out)
		}
		m.waitFor(t, "init started", from)
		m.waitFor(t, "app versioned listening on port 8080", from)
		m.waitFor(t, "management API on https port", from) // it starts after the apps listen
		// The deployed version's persist binds came off before /data,
		// which was unmounted: its journal is clean for this boot.
		down, _, _ := strings.Cut(m.v.Console()[from:], "init started")
		if !unmountedData.MatchString(down) || strings.Contains(initLines(down, 500), "busy") {
			t.Errorf("the reboot did not unmount /data cleanly:\n%s", initLines(down, 40))
		}
		if got := m.serving(t); got != "v2" {
			t.Errorf("after the reboot the app answers %q, want v2", got)
		}
		if n := m.note(t, "/note"); n.Note == nil || !strings.HasPrefix(*n.Note, "kept-") || n.Mounts != 1 {
			t.Errorf("after the reboot the deployed version's persist dir: %+v", n)
		}
	})
	m.v.Kill()

	// Power cuts at three points of a deploy of v4: while the bundle is
	// uploading, while v4 is starting, and right after the switch. Each
	// reboot must run exactly one complete version, v2 or v4, and say so.
	cuts := []struct{ name, marker string }{
		{"during the upload", ""},
		{"while the new version starts", "starting version"},
		{"right after the switch", "now running version"},
	}
	setVersion(t, proj, "v4\n")
	for _, cut := range cuts {
		t.Run("power cut "+cut.name, func(t *testing.T) {
			m := bootManaged(t, ctx, img)
			before := m.serving(t)
			if cut.marker == "" {
				// Half the bundle, then the power goes while the node
				// waits for the rest.
				uploadHalf(t, ctx, m, owner, proj)
			} else {
				go nodeboot(ctx, proj, "deploy", m.node(), proj)
				m.waitFor(t, cut.marker, 0)
			}
			m.v.Kill()
			m = bootManaged(t, ctx, img)
			got := m.serving(t)
			if got != "v2" && got != "v4" {
				t.Fatalf("after the cut the app answers %q, want v2 or v4", got)
			}
			out, err := nodeboot(ctx, proj, "status", m.node(), "--json")
			if err != nil {
				t.Fatal(err)
			}
			var st api.Status
			if err := json.Unmarshal([]byte(out), &st); err != nil {
				t.Fatal(err)
			}
			if st.Apps[0].Version == "image" {
				t.Errorf("after the cut the image's version runs, want a deployed one (was serving %s)", before)
			}
			t.Logf("cut %s: %s before, %s after", cut.name, before, got)
			m.v.Kill()
		})
	}
}

// noteAnswer is what the versioned app says about its persist dir.
type noteAnswer struct {
	Version string   `json:"version"`
	Note    *string  `json:"note"`
	Mounts  int      `json:"mounts"`  // stacked on the persist dir
	Options []string `json:"options"` // of each, bottom first
}

func (m *managed) note(t *testing.T, path string) noteAnswer {
	t.Helper()
	var n noteAnswer
	body := get(t, fmt.Sprintf("http://127.0.0.1:%d%s", m.appPort, path))
	if err := json.Unmarshal([]byte(body), &n); err != nil {
		t.Fatalf("GET %s: %v: %s", path, err, body)
	}
	return n
}

// checkNote: version v serves, the note is still want, and the app sees
// one mount on its persist dir, not a stack of them, nosuid,nodev,noexec.
func (m *managed) checkNote(t *testing.T, v, want string) {
	t.Helper()
	n := m.note(t, "/note")
	if n.Version != v {
		t.Errorf("after deploying %s the app answers version %s", v, n.Version)
	}
	if n.Note == nil || *n.Note != want {
		t.Errorf("after deploying %s the persisted note is %v, want %q", v, n.Note, want)
	}
	if n.Mounts != 1 {
		t.Errorf("after deploying %s the app sees %d mounts on its persist dir (%q), want 1", v, n.Mounts, n.Options)
	}
	for _, o := range n.Options {
		o = "," + o + ","
		for _, f := range []string{"nosuid", "nodev", "noexec"} {
			if !strings.Contains(o, ","+f+",") {
				t.Errorf("after deploying %s the persist dir is mounted %s, want %s", v, o, f)
			}
		}
	}
}

// uploadHalf starts a deploy of proj whose body stops halfway, and returns
// once the node has received that half (it says "receiving version").
func uploadHalf(t *testing.T, ctx context.Context, m *managed, owner *creds.Creds, proj string) {
	t.Helper()
	p, err := spec.Load(proj, "")
	if err != nil {
		t.Fatal(err)
	}
	a := p.Apps[0]
	var buf bytes.Buffer
	if err := bundle.Write(&buf, bundle.Meta{App: a.Name, Entry: a.Entry, Engines: a.Engines}, bundle.FromSpec(a.SrcDir, a.Files)); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(buf.Bytes())
	half := buf.Len() / 2
	pr, pw := io.Pipe()
	go func() {
		pw.Write(buf.Bytes()[:half])
		<-ctx.Done() // the rest never comes
		pw.Close()
	}()
	req, _ := http.NewRequestWithContext(ctx, "PUT", "https://"+m.node()+"/v1/apps/"+a.Name, pr)
	req.ContentLength = int64(buf.Len())
	req.Header.Set("Authorization", "Bearer "+owner.Token)
	req.Header.Set("Nodeboot-Digest", "sha256:"+hex.EncodeToString(sum[:]))
	go func() {
		if resp, err := apiClient(owner).Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	m.waitFor(t, "receiving version", 0)
	time.Sleep(2 * time.Second) // the first half crosses the forward
}
