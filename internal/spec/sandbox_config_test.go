package spec

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/nodeboot/nodeboot/internal/sandbox"
)

func TestSandboxConfig(t *testing.T) {
	tests := []struct {
		name, json string
		limits     sandbox.Limits
		opts       sandbox.Options
		err        string // substring of the error; "" for valid
	}{
		{"defaults", `{"apps":[{"path":"."}]}`, sandbox.Limits{}, sandbox.Options{}, ""},
		{"all limits", `{"apps":[{"path":".","limits":{"memory":"256M","memoryHigh":"200M","cpuWeight":50,"cpuMax":"150%","pids":64}}]}`,
			sandbox.Limits{MemoryMax: 256 << 20, MemoryHigh: 200 << 20, CPUWeight: 50, CPUMax: 150, PIDs: 64}, sandbox.Options{}, ""},
		{"units", `{"apps":[{"path":".","limits":{"memory":"1GiB","memoryHigh":"512mb"}}]}`,
			sandbox.Limits{MemoryMax: 1 << 30, MemoryHigh: 512 << 20}, sandbox.Options{}, ""},
		{"off", `{"apps":[{"path":".","sandbox":{"enabled":false}}]}`, sandbox.Limits{}, sandbox.Options{Disabled: true}, ""},
		{"on explicitly", `{"apps":[{"path":".","sandbox":{"enabled":true,"network":"shared"}}]}`, sandbox.Limits{}, sandbox.Options{}, ""},
		{"network none and allow", `{"apps":[{"path":".","sandbox":{"network":"none","allowSyscalls":["ptrace"]}}]}`,
			sandbox.Limits{}, sandbox.Options{NetworkNone: true, AllowSyscalls: []string{"ptrace"}}, ""},
		{"typo", `{"apps":[{"path":".","limits":{"memroy":"1G"}}]}`, sandbox.Limits{}, sandbox.Options{}, `apps[0].limits.memroy: unknown key (did you mean "memory"?)`},
		{"bytes meant MiB", `{"apps":[{"path":".","limits":{"memory":"256"}}]}`, sandbox.Limits{}, sandbox.Options{}, `apps[0].limits.memory: 256 bytes is too little for node; write the size with a unit, e.g. "256M"`},
		{"cpu fraction", `{"apps":[{"path":".","limits":{"cpuMax":"0.5"}}]}`, sandbox.Limits{}, sandbox.Options{}, `apps[0].limits.cpuMax: "0.5" is not a CPU share: use a percentage of one CPU`},
		{"pids low", `{"apps":[{"path":".","limits":{"pids":4}}]}`, sandbox.Limits{}, sandbox.Options{}, `apps[0].limits.pids: 4 is out of range`},
		{"high over max", `{"apps":[{"path":".","limits":{"memory":"100M","memoryHigh":"200M"}}]}`, sandbox.Limits{}, sandbox.Options{}, `apps[0].limits.memoryHigh: 200 MiB is above "memory" (100 MiB)`},
		{"allow a call that is not denied", `{"apps":[{"path":".","sandbox":{"allowSyscalls":["read"]}}]}`, sandbox.Limits{}, sandbox.Options{}, `apps[0].sandbox.allowSyscalls[0]: "read" is not denied by the sandbox`},
		{"bad network", `{"apps":[{"path":".","sandbox":{"network":"host"}}]}`, sandbox.Limits{}, sandbox.Options{}, `apps[0].sandbox.network: "host" is not a sandbox network`},
		{"off with settings", `{"apps":[{"path":".","sandbox":{"enabled":false,"allowSyscalls":[]}}]}`, sandbox.Limits{}, sandbox.Options{}, `apps[0].sandbox: "enabled": false turns the whole sandbox off`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ParseConfig([]byte(tc.json), "nodeboot.json")
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want it to contain %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			a := cfg.Apps[0]
			if a.Limits != tc.limits {
				t.Errorf("limits %+v, want %+v", a.Limits, tc.limits)
			}
			if got := runtimeSandbox(a.Sandbox); got.Disabled != tc.opts.Disabled || got.NetworkNone != tc.opts.NetworkNone || !slices.Equal(got.AllowSyscalls, tc.opts.AllowSyscalls) {
				t.Errorf("sandbox %+v, want %+v", got, tc.opts)
			}
		})
	}
}

// TestRuntimeCarriesSandbox: the limits and sandbox settings survive the
// trip through runtime.json, and an app whose sandbox is off gets none.
func TestRuntimeCarriesSandbox(t *testing.T) {
	rt := Runtime{Apps: []RuntimeApp{
		{Name: "a", Dir: "/apps/a", Entry: "i.js", UID: 1000, GID: 1000, DataDir: "/data/state/a", Persist: []string{"up"},
			Limits: sandbox.Limits{MemoryMax: 64 << 20, PIDs: 32}, Sandbox: sandbox.Options{NetworkNone: true, AllowSyscalls: []string{"ptrace"}}},
		{Name: "b", Dir: "/apps/b", Entry: "i.js", UID: 1001, GID: 1001, Sandbox: sandbox.Options{Disabled: true}},
	}}
	b, err := json.Marshal(&rt)
	if err != nil {
		t.Fatal(err)
	}
	back, err := DecodeRuntime(strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	s := back.Apps[0].SandboxSpec()
	if s == nil || s.UID != 1000 || s.StateDir != "/data/state/a" || s.CodeDir != "/apps/a" || !s.NetworkNone ||
		s.Limits.MemoryMax != 64<<20 || s.Limits.PIDs != 32 || !slices.Equal(s.AllowSyscalls, []string{"ptrace"}) ||
		!slices.Equal(s.Persist, []string{"up"}) || !slices.Contains(s.Hide, "/etc/nodeboot") || !slices.Contains(s.Confine, "/data") {
		t.Errorf("sandbox spec %+v", s)
	}
	if s := back.Apps[1].SandboxSpec(); s != nil {
		t.Errorf("disabled sandbox gave spec %+v", s)
	}
	if e := back.Apps[0].SandboxSpec().Explain(); !strings.Contains(e, "uid 1000") || !strings.Contains(e, "memory 64 MiB") || !strings.Contains(e, "network") {
		t.Errorf("explain:\n%s", e)
	}
}

// TestSchemaAllowSyscalls: the schema's list of allowable calls is the
// sandbox's deny list.
func TestSchemaAllowSyscalls(t *testing.T) {
	data, err := os.ReadFile(schemaFile)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Defs struct {
			Sandbox struct {
				Properties struct {
					AllowSyscalls struct {
						Items struct {
							Enum []string `json:"enum"`
						} `json:"items"`
					} `json:"allowSyscalls"`
				} `json:"properties"`
			} `json:"sandbox"`
		} `json:"$defs"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	got := slices.Sorted(slices.Values(doc.Defs.Sandbox.Properties.AllowSyscalls.Items.Enum))
	want := slices.Sorted(slices.Values(append(sandbox.Denied(nil), "clone", "clone3", "socket")))
	if !slices.Equal(got, want) {
		t.Errorf("schema allows %q,\nthe deny list is %q", got, want)
	}
	for _, n := range got {
		if !sandbox.IsDenied(n) {
			t.Errorf("%s in the schema is not denied", n)
		}
	}
}

func FuzzParseMemory(f *testing.F) {
	for _, s := range []string{"256M", "1.5G", "512MiB", "0", "-1K", "1e400", "NaN", "  8 g ", ".100", "0.5"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseMemory(s)
		if err == nil && (n <= 0 || n > 1<<50) {
			t.Errorf("ParseMemory(%q) = %d without error", s, n)
		}
	})
}

// ParseMemory takes exactly the schema's size grammar: ParseFloat alone
// took "2e7" and "5.", and the unit trimming took "5iB".
func TestParseMemoryGrammar(t *testing.T) {
	for _, ok := range []string{"256M", "1.5G", " 64 MiB ", "100", ".5K", "2kb"} {
		if _, err := ParseMemory(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"2e7", "5.", "0x10", "+5M", "-1M", "5iB", "Inf", "1_000", "5\u00a0M", "M"} {
		if n, err := ParseMemory(bad); err == nil {
			t.Errorf("%q accepted as %d", bad, n)
		}
	}
}
