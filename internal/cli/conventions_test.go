package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
)

// execute runs the CLI in-process as main does and returns its exit status
// and outputs.
func runCLI(ctx context.Context, args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = Execute(ctx, args, &o, &e)
	return code, o.String(), e.String()
}

// TestExitCodes: 0 success, 1 failure, 2 a bad command line, 130 Ctrl-C.
func TestExitCodes(t *testing.T) {
	empty := t.TempDir()
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name   string
		ctx    context.Context
		args   []string
		code   int
		stdout string // substring
		stderr string // substring
	}{
		{"version", nil, []string{"version"}, ExitOK, "nodeboot ", ""},
		{"--version", nil, []string{"--version"}, ExitOK, "nodeboot ", ""},
		{"unknown verb", nil, []string{"bulid"}, ExitUsage, "", `unknown command "bulid"`},
		{"unknown flag", nil, []string{"build", "--nope"}, ExitUsage, "", "see 'nodeboot build --help'"},
		{"missing argument", nil, []string{"status"}, ExitUsage, "", "see 'nodeboot status --help'"},
		{"too many arguments", nil, []string{"build", "a", "b"}, ExitUsage, "", "accepts at most 1 arg"},
		{"bad flag value", nil, []string{"logs", "x", "-n", "many"}, ExitUsage, "", "invalid argument"},
		{"failure", nil, []string{"build", empty, "-o", t.TempDir() + "/out"}, ExitFailure, "", "no package.json"},
		{"interrupted", cancelled, []string{"build", empty, "-o", t.TempDir() + "/out"}, ExitInterrupted, "", "interrupted"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := tc.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			code, stdout, stderr := runCLI(ctx, tc.args...)
			if code != tc.code || !strings.Contains(stdout, tc.stdout) || !strings.Contains(stderr, tc.stderr) {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s\nwant stdout %q, stderr %q", code, tc.code, stdout, stderr, tc.stdout, tc.stderr)
			}
		})
	}
	_, v1, _ := runCLI(context.Background(), "version")
	_, v2, _ := runCLI(context.Background(), "--version")
	if v1 != v2 {
		t.Errorf("version says %q, --version %q", v1, v2)
	}
}

// TestLogsJSON: logs --json prints one JSON object per line.
func TestLogsJSON(t *testing.T) {
	dir, _ := project(t, helloPkg)
	code, out, stderr := runCLI(context.Background(), "logs", "pi", "-n", "5", "--json", "--project", dir)
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	want := []logLine{{"hello", "hello line 1"}, {"hello", "hello line 2 (lines=5)"}}
	if len(lines) != len(want) {
		t.Fatalf("got %d lines, want %d: %q", len(lines), len(want), out)
	}
	for i, l := range lines {
		var got logLine
		if err := json.Unmarshal([]byte(l), &got); err != nil || got != want[i] {
			t.Errorf("line %d = %q (%v), want %+v", i, l, err, want[i])
		}
	}

	// A line cut without its newline still comes out whole.
	var b bytes.Buffer
	j := &jsonLines{w: &b, app: "a"}
	j.Write([]byte("one\ntw"))
	j.Write([]byte("o \"quoted\"\nthree"))
	j.flush()
	if got := b.String(); got != `{"app":"a","line":"one"}`+"\n"+`{"app":"a","line":"two \"quoted\""}`+"\n"+`{"app":"a","line":"three"}`+"\n" {
		t.Errorf("jsonLines: %q", got)
	}
}
