package js

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/nodeboot/nodeboot/internal/appapi"
)

type fakeNode struct{}

func (fakeNode) Info(app string) any {
	return map[string]any{"hostname": "testnode", "app": map[string]string{"name": app}}
}
func (fakeNode) Services() []appapi.ServiceInfo {
	return []appapi.ServiceInfo{{Name: "web", Port: 8080, URL: "http://127.0.0.1:8080", State: "running"}, {Name: "worker", State: "running"}}
}
func (fakeNode) Secret(app, name string) (string, error) {
	if app == "web" && name == "db" {
		return "s3cret", nil
	}
	return "", fmt.Errorf("%w: %s", appapi.ErrNotFound, name)
}
func (fakeNode) Restart(app, reason string) {}

// TestModule runs the module's own tests (node --test) against PID 1's
// real server over a fake node; a control socket lets them make the
// server act (a stop, a deploy waiting for locks, an event).
func TestModule(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("no node on this host")
	}
	srv := appapi.New(fakeNode{}, []appapi.App{{Name: "web", UID: uint32(os.Getuid()), MaxLock: time.Hour}}, appapi.Options{Log: t.Logf})
	dir := t.TempDir()
	l, err := net.Listen("unix", filepath.Join(dir, "api.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go srv.Serve(l, "web")

	mux := http.NewServeMux()
	mux.HandleFunc("POST /ready", func(w http.ResponseWriter, r *http.Request) {
		if srv.Ready("web") == nil {
			fmt.Fprint(w, "ready")
		} else {
			fmt.Fprint(w, "not ready")
		}
	})
	mux.HandleFunc("POST /status", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(srv.Status("web"))
	})
	mux.HandleFunc("POST /beforeStop", func(w http.ResponseWriter, r *http.Request) {
		// PID 1 records why before it stops an app (a deploy, unless
		// the test names another cause).
		cause := r.URL.Query().Get("cause")
		if cause == "" {
			cause = appapi.CauseDeploy
		}
		forget := srv.Stopping("web", cause)
		srv.BeforeStop("web", "restart")
		forget()
		fmt.Fprint(w, "done")
	})
	mux.HandleFunc("POST /waitLocks", func(w http.ResponseWriter, r *http.Request) {
		if _, err := srv.WaitLocks(r.Context(), []string{"web"}, "deploy of web"); err != nil {
			fmt.Fprint(w, err)
			return
		}
		fmt.Fprint(w, "proceeds")
	})
	mux.HandleFunc("POST /publish", func(w http.ResponseWriter, r *http.Request) {
		srv.Publish(appapi.Event{Type: "deploy", App: "web", Message: "version abc"})
	})
	cl, err := net.Listen("unix", filepath.Join(dir, "control.sock"))
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: mux}
	go hs.Serve(cl)
	defer hs.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "--test", "nodeboot/test/")
	cmd.Env = append(os.Environ(), appapi.SocketEnv+"="+filepath.Join(dir, "api.sock"), "NODEBOOT_TEST_CONTROL="+filepath.Join(dir, "control.sock"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node --test: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}

// The embedded module is the one in the repository, complete.
func TestEmbedded(t *testing.T) {
	for _, f := range []string{"package.json", "index.js", "index.mjs", "index.d.ts", "README.md"} {
		want, err := os.ReadFile(filepath.Join("nodeboot", f))
		if err != nil {
			t.Fatal(err)
		}
		got, err := Module.ReadFile("nodeboot/" + f)
		if err != nil || string(got) != string(want) {
			t.Errorf("%s: embedded copy differs (%v)", f, err)
		}
	}
}
