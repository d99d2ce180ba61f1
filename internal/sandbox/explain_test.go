package sandbox

import (
	"strings"
	"testing"
)

// TestExplainSyscalls: the explanation names whole denied sets, and a set
// the config opened in part by the calls still denied.
func TestExplainSyscalls(t *testing.T) {
	s := Spec{UID: 1000, GID: 1000, CodeDir: "/apps/x", StateDir: "/data/state/x", AllowSyscalls: []string{"ptrace"}}
	var line string
	for _, l := range strings.Split(s.Explain(), "\n") {
		if strings.Contains(l, "syscalls:") {
			line = l
		}
	}
	for _, want := range []string{"@mount", "@fileless-exec", "@personality", "process_vm_readv"} {
		if !strings.Contains(line, want) {
			t.Errorf("syscalls line lacks %s: %q", want, line)
		}
	}
	for _, not := range []string{"@debug", " ptrace"} {
		if strings.Contains(line, not) {
			t.Errorf("syscalls line has %q although ptrace is allowed: %q", not, line)
		}
	}
}
