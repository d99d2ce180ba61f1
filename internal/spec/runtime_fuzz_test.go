package spec

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzReadRuntime feeds arbitrary bytes to the decoder PID 1 reads
// runtime.json with. It must never panic; what it accepts must hold the
// invariants PID 1 relies on (valid, unique app names; absolute, clean
// paths) and survive a round trip unchanged.
func FuzzReadRuntime(f *testing.F) {
	f.Add([]byte(goodRuntime))
	f.Add([]byte(`{"apps":[]}`))
	f.Add([]byte(`{"apps":[{"name":"a","dir":"/apps/a","entry":"/x.js","limits":{"memoryMax":1},"sandbox":{"network":"none"}}]}`))
	f.Add([]byte(`{"apps":[{"name":"a","dir":"/apps/a","entry":"i.js"}]}{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		rt, err := DecodeRuntime(bytes.NewReader(data))
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, a := range rt.Apps {
			if checkAppName(a.Name) != nil || seen[a.Name] || !cleanAbs(a.Dir) {
				t.Fatalf("accepted app %+v", a)
			}
			seen[a.Name] = true
		}
		b, err := json.Marshal(rt)
		if err != nil {
			t.Fatalf("re-encoding: %v", err)
		}
		back, err := DecodeRuntime(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("its own encoding refused: %v\n%s", err, b)
		}
		if b2, _ := json.Marshal(back); !bytes.Equal(b, b2) {
			t.Fatalf("round trip changed it:\n%s\n%s", b, b2)
		}
	})
}
