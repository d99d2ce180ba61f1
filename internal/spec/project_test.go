package spec

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestLoadSingleApp(t *testing.T) {
	tests := []struct {
		name     string
		files    map[string]string
		entry    string
		nodeArgs []string
		args     []string
		appName  string
	}{
		{
			name:    "main",
			files:   map[string]string{"package.json": `{"name":"hello","main":"server.js"}`, "server.js": ""},
			entry:   "server.js",
			appName: "hello",
		},
		{
			name:    "main without extension",
			files:   map[string]string{"package.json": `{"name":"hello","main":"./src/app"}`, "src/app.js": ""},
			entry:   "src/app.js",
			appName: "hello",
		},
		{
			name:    "main is a directory",
			files:   map[string]string{"package.json": `{"name":"hello","main":"lib"}`, "lib/index.js": ""},
			entry:   "lib/index.js",
			appName: "hello",
		},
		{
			name: "start with node options and args",
			files: map[string]string{
				"package.json": `{"name":"@acme/Web_Server","scripts":{"start":"node --enable-source-maps -r ./trace.js dist/main.js --port 3000 'a b'"}}`,
				"dist/main.js": "", "trace.js": "",
			},
			entry:    "dist/main.js",
			nodeArgs: []string{"--enable-source-maps", "-r", "./trace.js"},
			args:     []string{"--port", "3000", "a b"},
			appName:  "web-server",
		},
		{
			name: "main wins over start",
			files: map[string]string{"package.json": `{"main":"a.js","scripts":{"start":"node b.js x"}}`,
				"a.js": "", "b.js": ""},
			entry:   "a.js",
			appName: "app",
		},
		{
			// npm init -y writes "main": "index.js" whatever the app is.
			name: "missing main falls through to start",
			files: map[string]string{"package.json": `{"name":"x","main":"index.js","scripts":{"start":"node server.js"}}`,
				"server.js": ""},
			entry:   "server.js",
			appName: "x",
		},
		{
			// `npm start` puts node_modules/.bin on PATH: Node-RED's own
			// instructions are "start": "node-red", and npm init -y's
			// "main": "index.js" is missing.
			name: "start runs a dependency's node bin",
			files: map[string]string{
				"package.json":                 `{"name":"flows","main":"index.js","scripts":{"start":"node-red --userDir 'my data'"}}`,
				"node_modules/.bin/node-red":   "-> ../node-red/red.js",
				"node_modules/node-red/red.js": "#!/usr/bin/env node\nrequire('./lib')\n",
			},
			entry:   "node_modules/node-red/red.js",
			args:    []string{"--userDir", "my data"},
			appName: "flows",
		},
		{
			name: "a bin's shebang node options",
			files: map[string]string{
				"package.json":                 `{"name":"x","scripts":{"start":"srv"}}`,
				"node_modules/.bin/srv":        "-> ../srv/bin/srv.mjs",
				"node_modules/srv/bin/srv.mjs": "#!/usr/bin/env -S node --no-warnings\n",
			},
			entry:    "node_modules/srv/bin/srv.mjs",
			nodeArgs: []string{"--no-warnings"},
			appName:  "x",
		},
		{
			name:    "index.js fallback",
			files:   map[string]string{"package.json": `{"name":"x","scripts":{"test":"jest"}}`, "index.js": ""},
			entry:   "index.js",
			appName: "x",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := project(t, tc.files)
			p, err := Load(dir, "")
			if err != nil {
				t.Fatal(err)
			}
			if p.Dir != dir || p.ConfigPath != "" || len(p.Apps) != 1 {
				t.Fatalf("project %+v", p)
			}
			a := p.Apps[0]
			if a.Entry != tc.entry || !reflect.DeepEqual(a.NodeArgs, tc.nodeArgs) || !reflect.DeepEqual(a.Args, tc.args) {
				t.Errorf("entry %q nodeArgs %q args %q; want %q %q %q", a.Entry, a.NodeArgs, a.Args, tc.entry, tc.nodeArgs, tc.args)
			}
			if a.Name != tc.appName || p.Hostname != tc.appName || a.Port != DefaultPort || a.SrcDir != dir {
				t.Errorf("name %q hostname %q port %d srcdir %s", a.Name, p.Hostname, a.Port, a.SrcDir)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name   string
		files  map[string]string
		config string // a --config path relative to the project, if any
		is     error
		want   []string
	}{
		{
			name:  "no package.json",
			files: map[string]string{"server.js": ""},
			is:    ErrNoPackageJSON,
			want:  []string{"no package.json in ", ": nodeboot builds Node.js projects; run `npm init -y` there, or pass the app directory"},
		},
		{
			name:  "bad package.json",
			files: map[string]string{"package.json": `{"main":`},
			is:    ErrBadPackageJSON,
			want:  []string{"package.json: not valid JSON"},
		},
		{
			name:  "main missing",
			files: map[string]string{"package.json": `{"main":"dist/server.js"}`, "app.js": ""},
			is:    ErrNoEntry,
			want:  []string{`"main" is "dist/server.js", but there is no file dist/server.js in`, `set "main": "app.js" in package.json, or make scripts.start "node app.js"`},
		},
		{
			name:  "main escapes",
			files: map[string]string{"package.json": `{"main":"../server.js"}`},
			is:    ErrNoEntry,
			want:  []string{"../server.js is outside the app directory"},
		},
		{
			name:  "main absolute",
			files: map[string]string{"package.json": `{"main":"/srv/server.js"}`},
			is:    ErrNoEntry,
			want:  []string{"/srv/server.js is outside the app directory"},
		},
		{
			name:  "nothing to run",
			files: map[string]string{"package.json": `{"name":"x"}`},
			is:    ErrNoEntry,
			want:  []string{`has neither "main" nor scripts.start, and there is no index.js`, `set "main": "server.js" in package.json, or make scripts.start "node server.js"`},
		},
		{
			name:  "start is nodemon",
			files: map[string]string{"package.json": `{"scripts":{"start":"nodemon server.js"}}`, "server.js": ""},
			is:    ErrUnsupportedStart,
			want:  []string{`scripts.start "nodemon server.js" runs nodemon, not node`, `set "main": "server.js" in package.json, or make scripts.start "node server.js"`},
		},
		{
			name:  "start is npm run",
			files: map[string]string{"package.json": `{"scripts":{"start":"npm run serve"}}`, "app.js": ""},
			is:    ErrUnsupportedStart,
			want:  []string{"runs npm, not node", `set "main": "app.js"`},
		},
		{
			name:  "start sets env",
			files: map[string]string{"package.json": `{"scripts":{"start":"NODE_ENV=production node server.js"}}`, "server.js": ""},
			is:    ErrUnsupportedStart,
			want:  []string{`sets the environment variable NODE_ENV; put variables in nodeboot.json "env" instead`},
		},
		{
			name:  "start chains commands",
			files: map[string]string{"package.json": `{"scripts":{"start":"npm run build && node dist/index.js"}}`},
			is:    ErrUnsupportedStart,
			want:  []string{"needs a shell", `set "main": "server.js"`},
		},
		{
			name: "start runs a bin that is not a node script",
			files: map[string]string{
				"package.json":                 `{"scripts":{"start":"serve-it"}}`,
				"node_modules/.bin/serve-it":   "-> ../serve-it/run.sh",
				"node_modules/serve-it/run.sh": "#!/bin/sh\nexec node x.js\n",
			},
			is:   ErrUnsupportedStart,
			want: []string{`scripts.start "serve-it" runs node_modules/.bin/serve-it, which is not a node script (it starts "#!/bin/sh")`, "nodeboot runs node only"},
		},
		{
			name:  "start file missing",
			files: map[string]string{"package.json": `{"scripts":{"start":"node server.js"}}`},
			is:    ErrNoEntry,
			want:  []string{`scripts.start runs "server.js", but there is no file server.js`},
		},
		{
			name:  "bad start with missing main reports main",
			files: map[string]string{"package.json": `{"main":"index.js","scripts":{"start":"nodemon x.js"}}`},
			is:    ErrNoEntry,
			want:  []string{`"main" is "index.js", but there is no file index.js`},
		},
		{
			name:  "entry ignored",
			files: map[string]string{"package.json": `{"main":"dist/server.js"}`, "dist/server.js": "", IgnoreFile: "dist/\n"},
			is:    ErrNoEntry,
			want:  []string{"the entry file dist/server.js of ", "is left out of the image by .nodebootignore"},
		},
		{
			name:  "escaping symlink",
			files: map[string]string{"package.json": `{"main":"s.js"}`, "s.js": "", "node_modules/shared": "-> ../../shared"},
			is:    ErrSymlinkEscapes,
			want:  []string{"node_modules/shared -> ../../shared: leaves the app directory"},
		},
		{
			name:  "config error",
			files: map[string]string{"package.json": `{"main":"s.js"}`, "s.js": "", "nodeboot.json": `{"network":{"mod":"dhcp"}}`},
			is:    ErrInvalidConfig,
			want:  []string{`nodeboot.json: network.mod: unknown key (did you mean "mode"?)`},
		},
		{
			name:   "explicit config missing",
			files:  map[string]string{"package.json": `{"main":"s.js"}`, "s.js": ""},
			config: "prod.json",
			is:     os.ErrNotExist,
			want:   []string{"prod.json"},
		},
		{
			name: "app dir missing",
			files: map[string]string{"nodeboot.json": `{"apps":[{"path":"./api"}]}`,
				"package.json": `{}`},
			is:   os.ErrNotExist,
			want: []string{`nodeboot.json: apps[0] ("./api"): app directory`, "does not exist"},
		},
		{
			name: "app error names the app",
			files: map[string]string{"nodeboot.json": `{"apps":[{"path":"a"},{"path":"b"}]}`,
				"a/package.json": `{"main":"s.js"}`, "a/s.js": "", "b/x": ""},
			is:   ErrNoPackageJSON,
			want: []string{`nodeboot.json: apps[1] ("b"): no package.json in `},
		},
		{
			name: "default names collide",
			files: map[string]string{"nodeboot.json": `{"apps":[{"path":"a"},{"path":"b"}]}`,
				"a/package.json": `{"name":"api","main":"s.js"}`, "a/s.js": "",
				"b/package.json": `{"name":"@other/api","main":"s.js"}`, "b/s.js": ""},
			want: []string{`nodeboot.json: apps[1] and apps[0] are both named "api"`, `give them distinct "name"s`},
		},
		{
			name:  "default name reserved",
			files: map[string]string{"package.json": `{"name":"root","main":"s.js"}`, "s.js": ""},
			want:  []string{`package.json "name" "root" gives the app name "root", which is not usable`, `set "name" in nodeboot.json`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := project(t, tc.files)
			cfg := ""
			if tc.config != "" {
				cfg = filepath.Join(dir, tc.config)
			}
			p, err := Load(dir, cfg)
			if err == nil {
				t.Fatalf("loaded %+v", p)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v is not %v", err, tc.is)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error\n  %v\ndoes not say\n  %s", err, w)
				}
			}
		})
	}
}

func TestLoadNotADirectory(t *testing.T) {
	dir := project(t, map[string]string{"server.js": ""})
	_, err := Load(filepath.Join(dir, "server.js"), "")
	if err == nil || !strings.Contains(err.Error(), "is not a directory") {
		t.Errorf("got %v", err)
	}
	_, err = Load(filepath.Join(dir, "nope"), "")
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("got %v", err)
	}
}

func multiAppProject(t *testing.T) string {
	return project(t, map[string]string{
		"package.json": `{"name":"@acme/Shop","private":true}`,
		"nodeboot.json": `{
			"node": "22",
			"env": {"LOG": "info", "SHARED": "node"},
			"network": {"mode": "static", "address": "10.0.0.5/24", "gateway": "10.0.0.1", "dns": ["10.0.0.1"]},
			"apps": [
				{"name": "web", "path": "./web"},
				{"path": "api", "port": 8080, "env": {"SHARED": "api", "NODE_ENV": "staging"}},
				{"name": "worker", "path": "./jobs", "args": []}
			]
		}`,
		"web/package.json":           `{"name":"web","main":"server.js"}`,
		"web/server.js":              "",
		"api/package.json":           `{"name":"@acme/api","scripts":{"start":"node --enable-source-maps index.js --verbose"}}`,
		"api/index.js":               "",
		"jobs/package.json":          `{"name":"jobs","engines":{"node":">=22"},"scripts":{"start":"node run.js --once"}}`,
		"jobs/run.js":                "",
		"jobs/node_modules/x/x.node": "ELF",
	})
}

func TestLoadMultiApp(t *testing.T) {
	dir := multiAppProject(t)
	p, err := Load(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	if p.ConfigPath != filepath.Join(dir, "nodeboot.json") || p.Config.Node != "22" {
		t.Errorf("config %s %+v", p.ConfigPath, p.Config)
	}
	if p.Hostname != "shop" {
		t.Errorf("hostname %q, want the root package name", p.Hostname)
	}
	type summary struct {
		Name, SrcDir, Entry string
		Port                int
		Args                []string
		Engines             string
		Addons              []string
	}
	var got []summary
	for _, a := range p.Apps {
		got = append(got, summary{a.Name, a.SrcDir, a.Entry, a.Port, a.Args, a.Engines, a.Addons})
	}
	want := []summary{
		{"web", filepath.Join(dir, "web"), "server.js", 8081, nil, "", nil},
		{"api", filepath.Join(dir, "api"), "index.js", 8080, []string{"--verbose"}, "", nil},
		// "args": [] replaces the --once of scripts.start.
		{"worker", filepath.Join(dir, "jobs"), "run.js", 8082, []string{}, ">=22", []string{"node_modules/x/x.node"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}

	// The same project through --config from elsewhere: paths stay
	// relative to the config file.
	p2, err := Load("", filepath.Join(dir, "nodeboot.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(p2.Apps) != 3 || p2.Apps[2].SrcDir != filepath.Join(dir, "jobs") {
		t.Errorf("via --config: %+v", p2.Apps)
	}
}

func TestLoadExplicitConfigElsewhere(t *testing.T) {
	app := project(t, map[string]string{"package.json": `{"name":"hello","main":"s.js"}`, "s.js": "",
		"nodeboot.json": `{"hostname":"ignored-one"}`})
	cfgDir := t.TempDir()
	cfg := filepath.Join(cfgDir, "prod.json")
	if err := os.WriteFile(cfg, []byte(`{"hostname":"prod-1","env":{"A":"1"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := Load(app, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if p.Hostname != "prod-1" || p.Apps[0].SrcDir != app || p.ConfigPath != cfg {
		t.Errorf("%+v", p)
	}
}

func TestRuntime(t *testing.T) {
	dir := multiAppProject(t)
	p, err := Load(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	rt := p.Runtime("/usr/bin/node")
	if rt.Hostname != "shop" || rt.NodePath != "/usr/bin/node" {
		t.Errorf("runtime %+v", rt)
	}
	wantNet := Network{Mode: "static", Address: "10.0.0.5/24", Gateway: "10.0.0.1", DNS: []string{"10.0.0.1"}}
	if !reflect.DeepEqual(rt.Network, wantNet) {
		t.Errorf("network %+v", rt.Network)
	}
	want := []RuntimeApp{
		{
			Name: "web", Dir: "/apps/web", Entry: "server.js", Port: 8081, UID: 1000, GID: 1000, DataDir: "/data/state/web",
			Env: map[string]string{"LOG": "info", "SHARED": "node", "NODE_ENV": "production", "PORT": "8081",
				"HOME": "/data/state/web", "NODEBOOT_DATA_DIR": "/data/state/web",
				"NODE_OPTIONS": "--require=/usr/lib/nodeboot/noshell.js"},
		},
		{
			Name: "api", Dir: "/apps/api", Entry: "index.js", Port: 8080, UID: 1001, GID: 1001, DataDir: "/data/state/api",
			NodeArgs: []string{"--enable-source-maps"}, Args: []string{"--verbose"},
			Env: map[string]string{"LOG": "info", "SHARED": "api", "NODE_ENV": "staging", "PORT": "8080",
				"HOME": "/data/state/api", "NODEBOOT_DATA_DIR": "/data/state/api",
				"NODE_OPTIONS": "--require=/usr/lib/nodeboot/noshell.js"},
		},
		{
			Name: "worker", Dir: "/apps/worker", Entry: "run.js", Port: 8082, UID: 1002, GID: 1002, DataDir: "/data/state/worker",
			Args: []string{},
			Env: map[string]string{"LOG": "info", "SHARED": "node", "NODE_ENV": "production", "PORT": "8082",
				"HOME": "/data/state/worker", "NODEBOOT_DATA_DIR": "/data/state/worker",
				"NODE_OPTIONS": "--require=/usr/lib/nodeboot/noshell.js"},
		},
	}
	if !reflect.DeepEqual(rt.Apps, want) {
		t.Errorf("apps\n got  %+v\n want %+v", rt.Apps, want)
	}

	// What the build writes, PID 1 must read back unchanged.
	data, err := json.Marshal(rt)
	if err != nil {
		t.Fatal(err)
	}
	back, err := DecodeRuntime(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if back.Apps[1].Env["PORT"] != "8080" || back.Network.Mode != "static" || back.Apps[1].NodeArgs[0] != "--enable-source-maps" {
		t.Errorf("round trip: %+v", back)
	}

	// Runtime must not share slices with the project.
	rt.Apps[1].Args[0] = "changed"
	rt.Network.DNS[0] = "changed"
	if p.Apps[1].Args[0] != "--verbose" || p.Config.Network.DNS[0] != "10.0.0.1" {
		t.Errorf("Runtime aliases the project")
	}
}

func TestRuntimeDefaults(t *testing.T) {
	dir := project(t, map[string]string{"package.json": `{"name":"hello"}`, "index.js": "",
		"nodeboot.json": `{"env":{"NODE_ENV":"development"}}`})
	p, err := Load(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	rt := p.Runtime("/usr/bin/node")
	if rt.Network.Mode != "dhcp" || rt.Hostname != "hello" {
		t.Errorf("defaults: %+v", rt)
	}
	a := rt.Apps[0]
	if a.Env["NODE_ENV"] != "development" || a.Env["PORT"] != "8080" || a.UID != FirstUID || a.Dir != "/apps/hello" {
		t.Errorf("app: %+v", a)
	}
}

// TestShellOptIn: "shell": true gives the app busybox's dir and no preload;
// without it the dir is covered and the preload comes before the app's own
// NODE_OPTIONS.
func TestShellOptIn(t *testing.T) {
	dir := project(t, map[string]string{
		"nodeboot.json": `{"apps": [
			{"name": "sh", "path": "./a", "shell": true},
			{"name": "plain", "path": "./b", "env": {"NODE_OPTIONS": "--max-old-space-size=64"}}
		]}`,
		"a/package.json": `{"name":"a","main":"i.js"}`, "a/i.js": "",
		"b/package.json": `{"name":"b","main":"i.js"}`, "b/i.js": "",
	})
	p, err := Load(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	rt := p.Runtime("/usr/bin/node")
	sh, plain := rt.Apps[0], rt.Apps[1]
	if !sh.Shell || plain.Shell {
		t.Errorf("Shell: %v %v", sh.Shell, plain.Shell)
	}
	if _, ok := sh.Env["NODE_OPTIONS"]; ok {
		t.Errorf("the shell app got NODE_OPTIONS %q", sh.Env["NODE_OPTIONS"])
	}
	if got := plain.Env["NODE_OPTIONS"]; got != "--require=/usr/lib/nodeboot/noshell.js --max-old-space-size=64" {
		t.Errorf("NODE_OPTIONS = %q", got)
	}
	if slices.Contains(sh.SandboxSpec().Confine, "/usr/lib/nodeboot/shell") {
		t.Errorf("the shell app's busybox is covered: %v", sh.SandboxSpec().Confine)
	}
	if !slices.Contains(plain.SandboxSpec().Confine, "/usr/lib/nodeboot/shell") {
		t.Errorf("busybox is not covered for an app without the opt-in: %v", plain.SandboxSpec().Confine)
	}
	if _, err := ParseConfig([]byte(`{"apps": [{"path": ".", "shell": "yes"}]}`), "nodeboot.json"); err == nil || !strings.Contains(err.Error(), "apps[0].shell") {
		t.Errorf("a non-boolean shell: %v", err)
	}
}
