package appapi

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
)

// FuzzParseRequest feeds the request parser and the line reader arbitrary
// bytes, as an app (or anything running as it) may send them.
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{
		`{"id":1,"op":"info"}`,
		`{"id":2,"op":"secret","name":"db"}`,
		`{"id":3,"op":"watchdog","intervalMs":1000}`,
		`{"id":4,"op":"lock","reason":"migrating"}`,
		`{"id":5,"op":"onShutdown","timeoutMs":5000}`,
		`{"id":1,"op":"info"}{"id":2}`,
		`{"id":-1,"op":"info","x":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRequest(b)
		if err == nil {
			if !ops[r.Op] {
				t.Fatalf("accepted unknown op %q", r.Op)
			}
			if (r.Op == OpSecret || r.Op == OpService) && !NamePattern.MatchString(r.Name) {
				t.Fatalf("accepted name %q", r.Name)
			}
			if len(r.Reason) > MaxReason {
				t.Fatalf("accepted a reason of %d bytes", len(r.Reason))
			}
		} else if err.Code == "" || err.Message == "" {
			t.Fatalf("error without code or message: %+v", err)
		}
		// The line reader never returns more than MaxRequest bytes.
		br := bufio.NewReaderSize(bytes.NewReader(b), 16)
		for {
			line, err := readLine(br)
			if err != nil {
				break
			}
			if len(line) >= MaxRequest || strings.Contains(string(line), "\n") {
				t.Fatalf("line of %d bytes", len(line))
			}
		}
	})
}
