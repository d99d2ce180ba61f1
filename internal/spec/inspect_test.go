package spec

import (
	"strings"
	"testing"
)

// TestAPIPortRefused: an app on 9443 would take the management API's port.
func TestAPIPortRefused(t *testing.T) {
	_, err := ParseConfig([]byte(`{"apps":[{"path":".","port":9443}]}`), "nodeboot.json")
	if err == nil || !strings.Contains(err.Error(), "apps[0].port") || !strings.Contains(err.Error(), "management API") {
		t.Errorf("err = %v, want apps[0].port refused as the management API's port", err)
	}
}

// TestInspectorRefused: node's inspector on a non-loopback address lets
// anyone on the network run code in the app; it needs an explicit opt-in.
func TestInspectorRefused(t *testing.T) {
	tests := []struct {
		start   string            // scripts.start
		env     map[string]string // the app's env in nodeboot.json
		allow   bool
		wantErr string
	}{
		{start: "node server.js"},
		{start: "node --inspect server.js"},
		{start: "node --inspect=9229 server.js"},
		{start: "node --inspect=127.0.0.1:9229 server.js"},
		{start: "node --inspect=localhost:9229 server.js"},
		{start: "node server.js", env: map[string]string{"NODE_OPTIONS": "--inspect=[::1]:9229"}},
		{start: "node --inspect-port 9230 server.js"},
		{start: "node --inspect=0.0.0.0:9229 server.js", wantErr: "--inspect=0.0.0.0:9229"},
		{start: "node --inspect-brk=0.0.0.0 server.js", wantErr: "--inspect-brk=0.0.0.0"},
		{start: "node --inspect-wait=10.0.0.5:9229 server.js", wantErr: "--inspect-wait=10.0.0.5:9229"},
		{start: "node --inspect-port=0.0.0.0:9229 server.js", wantErr: "--inspect-port=0.0.0.0:9229"},
		{start: "node server.js", env: map[string]string{"NODE_OPTIONS": "--inspect-port [::]:9229"}, wantErr: "--inspect-port [::]:9229"},
		{start: "node --debug-port=0.0.0.0:9229 server.js", wantErr: "--debug-port=0.0.0.0:9229"},
		{start: "node server.js", env: map[string]string{"NODE_OPTIONS": "--max-old-space-size=100 --inspect=0.0.0.0:9229"}, wantErr: "NODE_OPTIONS"},
		{start: "node server.js", env: map[string]string{"NODE_OPTIONS": "--inspect"}},
		{start: "node --inspect=0.0.0.0:9229 server.js", allow: true},
		// The script's own arguments are not node's flags.
		{start: "node server.js --inspect=0.0.0.0:9229"},
	}
	for _, tc := range tests {
		t.Run(tc.start+" "+tc.env["NODE_OPTIONS"], func(t *testing.T) {
			cfg := `{"apps":[{"path":"."`
			if tc.allow {
				cfg += `,"allowRemoteInspector":true`
			}
			if tc.env != nil {
				cfg += `,"env":{"NODE_OPTIONS":"` + tc.env["NODE_OPTIONS"] + `"}`
			}
			cfg += `}]}`
			dir := project(t, map[string]string{
				"package.json":  `{"name":"a","scripts":{"start":"` + tc.start + `"}}`,
				"server.js":     "",
				"nodeboot.json": cfg,
			})
			_, err := Load(dir, "")
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "allowRemoteInspector") {
				t.Errorf("err = %v, want it to name %q and the opt-in", err, tc.wantErr)
			}
		})
	}
}
