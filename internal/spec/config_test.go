package spec

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseConfigGood(t *testing.T) {
	cfg, err := ParseConfig([]byte(`{
		"$schema": "../docs/nodeboot.schema.json",
		"hostname": "edge-1.example",
		"node": "22",
		"env": {"LOG_LEVEL": "info", "NODE_ENV": "staging"},
		"network": {"mode": "static", "address": "192.168.1.10/24", "gateway": "192.168.1.1",
			"dns": ["1.1.1.1", "2606:4700:4700::1111"], "ntp": ["pool.ntp.org", "10.0.0.1"]},
		"cmdline": "quiet loglevel=3",
		"apps": [
			{"name": "api", "path": "./api", "env": {"DB": "x"}, "args": ["--flag"], "port": 3000},
			{"path": "web", "args": [], "port": 8081.0}
		]
	}`), "nodeboot.json")
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Hostname: "edge-1.example",
		Node:     "22",
		Env:      map[string]string{"LOG_LEVEL": "info", "NODE_ENV": "staging"},
		Network: Network{Mode: "static", Address: "192.168.1.10/24", Gateway: "192.168.1.1",
			DNS: []string{"1.1.1.1", "2606:4700:4700::1111"}, NTP: []string{"pool.ntp.org", "10.0.0.1"}},
		Cmdline: "quiet loglevel=3",
		Apps: []AppConfig{
			{Name: "api", Path: "./api", Env: map[string]string{"DB": "x"}, Args: []string{"--flag"}, Port: 3000},
			{Path: "web", Args: []string{}, Port: 8081},
		},
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("got  %+v\nwant %+v", cfg, want)
	}

	for _, s := range []string{`{}`, `{"network": {}}`, `{"network": {"mode": "dhcp", "dns": ["9.9.9.9"]}}`, "\xef\xbb\xbf{}"} {
		if _, err := ParseConfig([]byte(s), "nodeboot.json"); err != nil {
			t.Errorf("ParseConfig(%s): %v", s, err)
		}
	}
}

// "ntp": [] turns NTP off; an absent key keeps the defaults; host:port is
// kept as written.
func TestParseConfigNTP(t *testing.T) {
	for _, tc := range []struct {
		json string
		off  bool
		ntp  []string
	}{
		{`{}`, false, nil},
		{`{"network":{"ntp":[]}}`, true, nil},
		{`{"network":{"ntp":["10.0.2.2:1123","ntp.lan","fd00::1"]}}`, false, []string{"10.0.2.2:1123", "ntp.lan", "fd00::1"}},
	} {
		c, err := ParseConfig([]byte(tc.json), "nodeboot.json")
		if err != nil {
			t.Fatalf("%s: %v", tc.json, err)
		}
		if c.Network.NTPOff != tc.off || len(c.Network.NTP) != len(tc.ntp) || (len(tc.ntp) > 0 && c.Network.NTP[0] != tc.ntp[0]) {
			t.Errorf("%s: network %+v", tc.json, c.Network)
		}
	}
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct {
		name, json string
		want       []string // each must appear in the error
	}{
		{"wrong type in app env", `{"apps":[{"path":"a"},{"path":"b","env":{"PORT":8080,"DEBUG":true}}]}`, []string{
			"nodeboot.json: apps[1].env.PORT: expected string, got number",
			"nodeboot.json: apps[1].env.DEBUG: expected string, got boolean true",
		}},
		{"typo key", `{"network":{"mod":"dhcp"}}`, []string{`nodeboot.json: network.mod: unknown key (did you mean "mode"?)`}},
		{"typo top key", `{"hostnme":"x"}`, []string{`nodeboot.json: hostnme: unknown key (did you mean "hostname"?)`}},
		{"case typo", `{"apps":[{"Path":"."}]}`, []string{`apps[0].Path: unknown key (did you mean "path"?)`, `apps[0]: missing "path"`}},
		{"unrelated key", `{"zzzzzz":1}`, []string{"zzzzzz: unknown key; known keys are $schema, hostname"}},
		{"odd key quoted", `{"env":{"A":"1"},"a.b":1}`, []string{`nodeboot.json: ["a.b"]: unknown key`}},
		{"misplaced ntp", `{"ntp":["pool.ntp.org"]}`, []string{`ntp: unknown key here: it goes inside "network"`}},
		{"misplaced port", `{"port":3000}`, []string{`port: unknown key here: ports are per app`}},
		{"duplicate key", `{"hostname":"a","hostname":"b"}`, []string{"hostname: key appears more than once"}},
		{"root not object", `[]`, []string{"nodeboot.json: expected object, got array"}},
		{"syntax", "{\n  \"hostname\": \"a\",\n}", []string{"nodeboot.json:3:1: invalid JSON"}},
		{"truncated", `{"hostname":`, []string{"nodeboot.json: invalid JSON: unexpected end of file"}},
		{"trailing data", `{} {}`, []string{"unexpected data after the top-level JSON value"}},
		{"empty", ``, []string{"empty file"}},
		{"bad hostname", `{"hostname":"my_app"}`, []string{`hostname: "my_app" is not a valid host name`}},
		{"hostname hyphen", `{"hostname":"-app"}`, []string{"is not a valid host name"}},
		{"hostname long label", `{"hostname":"` + strings.Repeat("a", 64) + `"}`, []string{"is not a valid host name"}},
		{"hostname empty", `{"hostname":""}`, []string{"hostname: must not be empty"}},
		{"hostname type", `{"hostname":1}`, []string{"hostname: expected string, got number 1"}},
		{"node empty", `{"node":""}`, []string{"node: must not be empty"}},
		{"env not object", `{"env":["A=1"]}`, []string{"env: expected object, got array"}},
		{"env reserved", `{"env":{"HOME":"/root"}}`, []string{"env.HOME: nodeboot sets HOME"}},
		{"env bad name", `{"env":{"A=B":"1"}}`, []string{`env["A=B"]: variable names cannot contain '='`}},
		{"env empty name", `{"env":{"":"1"}}`, []string{`env[""]: empty variable name`}},
		{"env NUL", `{"env":{"A":"x\u0000y"}}`, []string{"env.A: contains a NUL character"}},
		{"bad mode", `{"network":{"mode":"dchp"}}`, []string{`network.mode: "dchp" is not a network mode: use "dhcp" or "static"`}},
		{"bad CIDR", `{"network":{"mode":"static","address":"192.168.1.300/24"}}`, []string{`network.address: "192.168.1.300/24" is not an address in CIDR form`}},
		{"CIDR without length", `{"network":{"mode":"static","address":"192.168.1.10"}}`, []string{`lacks the prefix length: write it as CIDR, e.g. "192.168.1.10/24"`}},
		{"network address", `{"network":{"mode":"static","address":"192.168.1.0/24"}}`, []string{"is the network address of its subnet; give the node's own address, e.g. 192.168.1.1/24"}},
		{"broadcast address", `{"network":{"mode":"static","address":"10.0.0.255/24"}}`, []string{"is the broadcast address"}},
		{"static without address", `{"network":{"mode":"static","gateway":"192.168.1.1"}}`, []string{`nodeboot.json: network: "mode": "static" requires "address"`}},
		{"address without static", `{"network":{"address":"192.168.1.10/24"}}`, []string{`network.address: only used with "mode": "static"`}},
		{"bad gateway", `{"network":{"mode":"static","address":"10.0.0.2/8","gateway":"10.0.0.x"}}`, []string{`network.gateway: "10.0.0.x" is not an IP address`}},
		{"gateway family", `{"network":{"mode":"static","address":"10.0.0.2/8","gateway":"fe80::1"}}`, []string{"different IP versions"}},
		{"bad dns", `{"network":{"dns":["1.1.1.1","one.one"]}}`, []string{`network.dns[1]: "one.one" is not an IP address`}},
		{"dns not list", `{"network":{"dns":"1.1.1.1"}}`, []string{`network.dns: expected array of strings, got string "1.1.1.1"`}},
		{"bad ntp", `{"network":{"ntp":["pool ntp"]}}`, []string{`network.ntp[0]: "pool ntp" is neither a host name nor an IP address (optionally with :port), e.g. "pool.ntp.org"`}},
		{"ntp port zero", `{"network":{"ntp":["10.0.2.2:0"]}}`, []string{`network.ntp[0]: "10.0.2.2:0": the port after the colon must be a number from 1 to 65535`}},
		{"ntp port big", `{"network":{"ntp":["ntp.lan:65536"]}}`, []string{`the port after the colon must be a number from 1 to 65535`}},
		{"ntp port leading zero", `{"network":{"ntp":["ntp.lan:0123"]}}`, []string{`the port after the colon must be a number from 1 to 65535`}},
		{"ntp bracketed ipv6", `{"network":{"ntp":["[fd00::1]:123"]}}`, []string{`is neither a host name nor an IP address`}},
		{"cmdline type", `{"cmdline":["quiet"]}`, []string{"cmdline: expected string, got array"}},
		{"apps empty", `{"apps":[]}`, []string{"apps: is empty"}},
		{"apps not list", `{"apps":{"path":"."}}`, []string{"apps: expected array, got object"}},
		{"app not object", `{"apps":["./api"]}`, []string{`apps[0]: expected object, got string "./api"`}},
		{"app without path", `{"apps":[{"name":"api"}]}`, []string{`apps[0]: missing "path"`}},
		{"bad app name", `{"apps":[{"path":".","name":"My App"}]}`, []string{`apps[0].name: "My App" is not a valid app name`}},
		{"app name too long", `{"apps":[{"path":".","name":"` + strings.Repeat("a", 33) + `"}]}`, []string{"is not a valid app name"}},
		{"app name reserved", `{"apps":[{"path":".","name":"root"}]}`, []string{"system account"}},
		{"duplicate names", `{"apps":[{"path":"a","name":"api"},{"path":"b","name":"api"}]}`, []string{`apps[1].name: "api" is already the name of apps[0]`}},
		{"duplicate ports", `{"apps":[{"path":"a","port":80},{"path":"b"},{"path":"c","port":80}]}`, []string{"apps[2].port: 80 is already the port of apps[0]"}},
		{"port zero", `{"apps":[{"path":".","port":0}]}`, []string{"apps[0].port: 0 is not a port number: use 1-65535"}},
		{"port too big", `{"apps":[{"path":".","port":65536}]}`, []string{"is not a port number"}},
		{"port fraction", `{"apps":[{"path":".","port":80.5}]}`, []string{"apps[0].port: expected integer, got number 80.5"}},
		{"port string", `{"apps":[{"path":".","port":"80"}]}`, []string{`apps[0].port: expected integer, got string "80"`}},
		{"port huge", `{"apps":[{"path":".","port":1e999}]}`, []string{"is not a port number"}},
		{"args type", `{"apps":[{"path":".","args":["a",1]}]}`, []string{"apps[0].args[1]: expected string, got number 1"}},
		{"path empty", `{"apps":[{"path":""}]}`, []string{"apps[0].path: must not be empty"}},
		{"persist absolute", `{"apps":[{"path":".","persist":["/data"]}]}`, []string{"apps[0].persist[0]", "relative"}},
		{"persist escapes", `{"apps":[{"path":".","persist":["./a/../../x"]}]}`, []string{"apps[0].persist[0]", "inside the app"}},
		{"persist the app dir", `{"apps":[{"path":".","persist":["."]}]}`, []string{"apps[0].persist[0]", "inside the app"}},
		{"persist node_modules", `{"apps":[{"path":".","persist":["node_modules/x"]}]}`, []string{"apps[0].persist[0]", "node_modules is code"}},
		{"persist twice", `{"apps":[{"path":".","persist":["db","./db"]}]}`, []string{"apps[0].persist[1]", "listed twice"}},
		{"persist type", `{"apps":[{"path":".","persist":"db"}]}`, []string{"apps[0].persist: expected array"}},
		{"health unknown", `{"apps":[{"path":".","health":"http"}]}`, []string{"apps[0].health", `must be "ready"`}},
		{"maxLockSeconds zero", `{"apps":[{"path":".","maxLockSeconds":0}]}`, []string{"apps[0].maxLockSeconds", "from 1 to 86400"}},
		{"maxLockSeconds fraction", `{"apps":[{"path":".","maxLockSeconds":1.5}]}`, []string{"apps[0].maxLockSeconds", "whole number"}},
		{"maxLockSeconds type", `{"apps":[{"path":".","maxLockSeconds":"5"}]}`, []string{"apps[0].maxLockSeconds: expected number"}},
		{"too deep", strings.Repeat("[", 100) + strings.Repeat("]", 100), []string{"nested deeper than"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ParseConfig([]byte(tc.json), "nodeboot.json")
			if err == nil {
				t.Fatalf("accepted %s as %+v", tc.json, cfg)
			}
			if cfg != nil {
				t.Errorf("returned a config with the error")
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("error %v does not match ErrInvalidConfig", err)
			}
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.File != "nodeboot.json" {
				t.Errorf("error %v is not a *ConfigError naming the file", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error\n  %v\ndoes not say\n  %s", err, w)
				}
			}
		})
	}
}

func TestParseConfigReportsAllInOrder(t *testing.T) {
	_, err := ParseConfig([]byte(`{"zeta":1,"hostname":"_","alpha":2}`), "c.json")
	if err == nil {
		t.Fatal("no error")
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "c.json: zeta:") ||
		!strings.HasPrefix(lines[1], "c.json: hostname:") || !strings.HasPrefix(lines[2], "c.json: alpha:") {
		t.Errorf("errors not in document order:\n%v", err)
	}

	var many strings.Builder
	many.WriteString("{")
	for i := range 30 {
		if i > 0 {
			many.WriteString(",")
		}
		many.WriteString(`"k` + strings.Repeat("x", i) + `":1`)
	}
	many.WriteString("}")
	_, err = ParseConfig([]byte(many.String()), "c.json")
	if n := strings.Count(err.Error(), "\n") + 1; n != maxConfigErrors+1 || !strings.Contains(err.Error(), "and 10 more problems") {
		t.Errorf("got %d lines, want capped at %d:\n%v", n, maxConfigErrors+1, err)
	}
}

func TestSuggest(t *testing.T) {
	for key, want := range map[string]string{
		"mod": "mode", "Mode": "mode", "adress": "address", "gatway": "gateway",
		"dsn": "dns", "x": "", "network": "", "ntps": "ntp",
	} {
		if got := suggest(key, networkKeys); got != want {
			t.Errorf("suggest(%q) = %q, want %q", key, got, want)
		}
	}
}
