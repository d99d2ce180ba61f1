package spec

import (
	"errors"
	"strings"
	"testing"
)

// FuzzLoadConfig feeds arbitrary bytes to the nodeboot.json validator. It
// must never panic; a rejection must be a *ConfigError (so the CLI reports it
// as a user error); an accepted config must satisfy the invariants the rest
// of the build relies on, and must be accepted by the schema editors use.
func FuzzLoadConfig(f *testing.F) {
	for _, s := range []string{
		`{}`,
		`{"hostname":"a","node":"22","env":{"A":"b"},"cmdline":"quiet"}`,
		`{"network":{"mode":"static","address":"192.168.1.10/24","gateway":"192.168.1.1","dns":["1.1.1.1"],"ntp":["pool.ntp.org"]}}`,
		`{"apps":[{"name":"api","path":"./api","env":{"X":"1"},"args":["--a"],"port":8080},{"path":"b","port":8081.0}]}`,
		`{"apps":[{"path":"a","port":1e2}]}`,
		`{"apps":[{"path":"a","limits":{"memory":"256M","memoryHigh":2e8,"cpuWeight":1,"cpuMax":"50%","pids":16},"sandbox":{"enabled":true,"network":"none","allowSyscalls":["ptrace"]}}]}`,
		`{"apps":[{"path":"a","limits":{"memory":"1e400K"},"sandbox":{"enabled":false,"allowSyscalls":["read","read"]}}]}`,
		`{"network":{"mod":"dhcp"}}`,
		`{"hostname":"a","hostname":"b"}`,
		`{"env":{"PORT":1}}`,
		`{"follow":{"ref":"127.0.0.1:5000/shop:stable","interval":"3s","insecure":true}}`,
		`{"follow":{"ref":"web@sha256:00","interval":"5 m"}}`,
		`{"logs":{"remote":{"url":"syslog+tls://logs.example.com:6514","ca":"ca.pem","cert":"c.pem","key":"k.pem","bufferSize":"64M"}}}`,
		`{"logs":{"remote":{"url":"otlp+http://[fd00::1]:4318/v1/logs","insecure":true,"bufferSize":2097152}}}`,
		`{"logs":{"remote":{"url":"SYSLOG+TCP://h:","ca":"","bufferSize":"2e7"}}}`,
		"\xef\xbb\xbf{}",
		`[[[[[[]]]]]]`,
		`{"a":`,
		``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := ParseConfig(data, "nodeboot.json")
		if err != nil {
			if cfg != nil {
				t.Fatalf("config returned with error %v", err)
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("error %v is not ErrInvalidConfig", err)
			}
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Error() == "" {
				t.Fatalf("error %v carries no *ConfigError", err)
			}
			return
		}
		if cfg == nil {
			t.Fatal("nil config without error")
		}
		if cfg.Hostname != "" && checkHostname(cfg.Hostname) != nil {
			t.Fatalf("accepted hostname %q", cfg.Hostname)
		}
		if m := cfg.Network.Mode; m != "" && m != "dhcp" && m != "static" {
			t.Fatalf("accepted mode %q", m)
		}
		if cfg.Network.Mode == "static" && cfg.Network.Address == "" {
			t.Fatal("accepted static without address")
		}
		names, ports := map[string]bool{}, map[int]bool{}
		for _, a := range cfg.Apps {
			if a.Path == "" {
				t.Fatal("accepted app without path")
			}
			if a.Name != "" {
				if checkAppName(a.Name) != nil || names[a.Name] {
					t.Fatalf("accepted app name %q", a.Name)
				}
				names[a.Name] = true
			}
			if a.Port != 0 {
				if a.Port < 1 || a.Port > 65535 || ports[a.Port] {
					t.Fatalf("accepted port %d", a.Port)
				}
				ports[a.Port] = true
			}
		}
		for _, env := range append([]map[string]string{cfg.Env}, appEnvs(cfg)...) {
			for k := range env {
				if reservedEnv[k] != "" || k == "" {
					t.Fatalf("accepted env name %q", k)
				}
			}
		}
		if l := cfg.Logs; l != nil && l.Remote != nil {
			if err := runtimeLogs(l).Check(); err != nil {
				t.Fatalf("accepted logs.remote %+v: %v", l.Remote, err)
			}
		}
		// What nodeboot accepts, the editor's schema must not flag.
		if valid, ok, serr := schemaAccepts(t, data); ok && !valid {
			t.Fatalf("validator accepts what the schema rejects: %q\n%v", data, serr)
		}
	})
}

func appEnvs(cfg *Config) []map[string]string {
	var out []map[string]string
	for _, a := range cfg.Apps {
		out = append(out, a.Env)
	}
	return out
}

// FuzzPackageJSON feeds arbitrary bytes to the package.json reader and the
// scripts.start parser: no panics, and errors of the documented kinds.
func FuzzPackageJSON(f *testing.F) {
	for _, s := range []string{
		`{"name":"x","main":"server.js"}`,
		`{"scripts":{"start":"node --enable-source-maps -r dotenv/config server.js --port 3000"}}`,
		`{"scripts":{"start":"node \"a b.js\" 'c d' e\\ f"}}`,
		`{"scripts":{"start":"NODE_ENV=production nodemon server.js && echo"}}`,
		`{"scripts":{"start":"node 'unterminated"}}`,
		`{"engines":["node"],"main":1}`,
		`null`,
		`[]`,
		"\xef\xbb\xbf{}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParsePackage(data, "package.json")
		if err != nil {
			if p != nil || !errors.Is(err, ErrBadPackageJSON) {
				t.Fatalf("ParsePackage: %v (package %v)", err, p)
			}
			return
		}
		start, ok := p.Scripts["start"]
		if !ok {
			return
		}
		cmd, err := ParseStart(start)
		if err != nil {
			if cmd != nil || err.Error() == "" {
				t.Fatalf("ParseStart(%q): %v with %v", start, err, cmd)
			}
			return
		}
		if cmd.File == "" && len(cmd.NodeArgs) == 0 && len(cmd.Args) == 0 {
			// An empty quoted file name ("node ''") is the only way to
			// get here; resolveEntry rejects it.
			if _, err := resolveEntry(t.TempDir(), cmd.File); err == nil {
				t.Fatalf("empty entry resolved")
			}
		}
	})
}

// FuzzNodeShebang feeds arbitrary first lines of a dependency's command
// (node_modules/.bin) to the shebang reader: no panics; what it accepts
// starts with "#!", names node, and gives node options without blanks.
func FuzzNodeShebang(f *testing.F) {
	for _, s := range []string{"#!/usr/bin/env node", "#!/usr/bin/env -S node --no-warnings", "#!/bin/sh", "#!node", "\x7fELF", "#!/usr/bin/env"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		args, ok := nodeShebang(line)
		if !ok {
			if args != nil {
				t.Fatalf("%q: refused with options %q", line, args)
			}
			return
		}
		if !strings.HasPrefix(line, "#!") || !strings.Contains(line, "node") {
			t.Fatalf("%q accepted as a node script", line)
		}
		for _, a := range args {
			if a == "" || strings.ContainsAny(a, " \t\n") {
				t.Fatalf("%q: option %q", line, a)
			}
		}
	})
}
