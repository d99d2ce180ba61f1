package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nodeboot/nodeboot/internal/cli"
)

// lockedBuffer is an io.Writer the CLI writes to while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var readyLine = regexp.MustCompile(`ready: (http://127\.0\.0\.1:\d+/)`)

// runUntilReady runs `nodeboot run args...` in-process as a user would,
// reads the counter app's answer once it is ready, then presses Ctrl-C
// (the context) and waits for the guest to power off.
func runUntilReady(t *testing.T, args ...string) (counterStatus, bool) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &lockedBuffer{}
	done := make(chan error, 1)
	go func() { done <- cli.Run(ctx, append([]string{"run"}, args...), out, out) }()
	deadline := time.After(15 * time.Minute)
	var url string
	for url == "" {
		select {
		case err := <-done:
			t.Fatalf("run ended before the app was ready: %v\n%s", err, tail(out.String(), 60))
		case <-deadline:
			t.Fatalf("the app was not ready after 15 minutes\n%s", tail(out.String(), 60))
		case <-time.After(200 * time.Millisecond):
			if m := readyLine.FindStringSubmatch(out.String()); m != nil {
				url = m[1]
			}
		}
	}
	var st struct {
		counterStatus
		Rebuilt bool
	}
	if err := json.Unmarshal([]byte(get(t, url)), &st); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		t.Fatalf("run did not stop after Ctrl-C\n%s", tail(out.String(), 60))
	}
	return st.counterStatus, st.Rebuilt
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestRunPersistRebuild is the local loop a user runs: `nodeboot run
// --format disk --persist ./app`, change the app, run it again. Each run
// rebuilds the image; the second must keep the first's /data (and the
// persist dir) while running the changed code. It lost /data on every
// run before the rebuild kept the data partition.
func TestRunPersistRebuild(t *testing.T) {
	requireQEMU(t)
	// The run cache (the VM's disk lives there) is this test's own.
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	proj := t.TempDir()
	copyDir(t, filepath.Join(repoRoot(t), "e2e", "testdata", "counter"), proj)
	args := []string{"--format", "disk", "--persist", "--size", "1G", "-q", proj}

	st, rebuilt := runUntilReady(t, args...)
	if st.State != 1 || st.Persisted != 1 || rebuilt {
		t.Fatalf("first run: counts %d/%d rebuilt=%v, want 1/1 false", st.State, st.Persisted, rebuilt)
	}

	server := filepath.Join(proj, "server.js")
	src, err := os.ReadFile(server)
	if err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(string(src), "JSON.stringify({ state,", "JSON.stringify({ rebuilt: true, state,", 1)
	if changed == string(src) {
		t.Fatal("the counter app's answer is not where the test expects it")
	}
	if err := os.WriteFile(server, []byte(changed), 0o644); err != nil {
		t.Fatal(err)
	}

	st, rebuilt = runUntilReady(t, args...)
	if !rebuilt {
		t.Error("the second run does not run the changed code")
	}
	if st.State != 2 || st.Persisted != 2 {
		t.Errorf("second run: counts %d/%d, want 2/2: /data was not kept across the rebuild", st.State, st.Persisted)
	}
}
