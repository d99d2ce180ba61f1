package spec

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseStart(t *testing.T) {
	good := []struct {
		script string
		want   StartCommand
	}{
		{"node server.js", StartCommand{File: "server.js"}},
		{"  node   ./server.js  ", StartCommand{File: "./server.js"}},
		{"node server.js --port 3000", StartCommand{File: "server.js", Args: []string{"--port", "3000"}}},
		{`node "my server.js" 'a b' c\ d`, StartCommand{File: "my server.js", Args: []string{"a b", "c d"}}},
		{`node server.js '$HOME is literal' "quoted \"x\""`, StartCommand{File: "server.js", Args: []string{"$HOME is literal", `quoted "x"`}}},
		{`node server.js ""`, StartCommand{File: "server.js", Args: []string{""}}},
		{"node --enable-source-maps server.js", StartCommand{NodeArgs: []string{"--enable-source-maps"}, File: "server.js"}},
		{"node -r dotenv/config server.js", StartCommand{NodeArgs: []string{"-r", "dotenv/config"}, File: "server.js"}},
		{"node --max-old-space-size=512 --require ./trace.js dist/main.js -v", StartCommand{
			NodeArgs: []string{"--max-old-space-size=512", "--require", "./trace.js"}, File: "dist/main.js", Args: []string{"-v"}}},
		{"node -- -weird-name.js", StartCommand{File: "-weird-name.js"}},
		{"node --env-file .env index.mjs", StartCommand{NodeArgs: []string{"--env-file", ".env"}, File: "index.mjs"}},
	}
	for _, tc := range good {
		got, err := ParseStart(tc.script)
		if err != nil {
			t.Errorf("ParseStart(%q): %v", tc.script, err)
			continue
		}
		if !reflect.DeepEqual(*got, tc.want) {
			t.Errorf("ParseStart(%q) = %+v, want %+v", tc.script, *got, tc.want)
		}
	}

	bad := []struct{ script, why string }{
		{"", "is empty"},
		{"nodemon server.js", "runs nodemon, not node"},
		{"npm run serve", "runs npm, not node"},
		{"ts-node src/index.ts", "runs ts-node"},
		{"NODE_ENV=production node server.js", "sets the environment variable NODE_ENV"},
		{"node server.js && echo done", `uses '&'`},
		{"node server.js | tee log", `uses '|'`},
		{"node server.js; echo", `uses ';'`},
		{"node server.js > out.log", `uses '>'`},
		{"node server.js < in", `uses '<'`},
		{"node $ENTRY", `uses '$'`},
		{"node \"$ENTRY\"", `uses '$'`},
		{"node `which app`", "uses '`'"},
		{"node dist/*.js", `uses '*'`},
		{"node", "without a file"},
		{"node --inspect", "without a file"},
		{"node -e 'require(1)'", "node -e, which does not run a file"},
		{"node --test", "does not run a file"},
		{"node -r", "without its value"},
		{"node - < x", `uses '<'`},
		{"node -", "standard input"},
		{"node 'server.js", "unterminated ' quote"},
		{`node server.js\`, "ends with a backslash"},
	}
	for _, tc := range bad {
		_, err := ParseStart(tc.script)
		if err == nil {
			t.Errorf("ParseStart(%q) succeeded, want error %q", tc.script, tc.why)
			continue
		}
		if !strings.Contains(err.Error(), tc.why) {
			t.Errorf("ParseStart(%q) = %q, want it to say %q", tc.script, err, tc.why)
		}
	}
}

func TestParsePackage(t *testing.T) {
	p, err := ParsePackage([]byte("\xef\xbb\xbf"+`{"name":"@acme/api","version":"1.0.0","main":"lib/index.js",
		"scripts":{"start":"node lib/index.js","weird":{"x":1}},"engines":{"node":">=20","npm":"*"},"other":[1,2]}`), "package.json")
	if err != nil {
		t.Fatal(err)
	}
	want := &Package{Name: "@acme/api", Version: "1.0.0", Main: "lib/index.js", Scripts: map[string]string{"start": "node lib/index.js"}}
	want.Engines.Node = ">=20"
	if !reflect.DeepEqual(p, want) {
		t.Errorf("got %+v, want %+v", p, want)
	}
	// Legacy "engines" arrays are ignored, as npm does.
	if p, err := ParsePackage([]byte(`{"engines":["node >= 0.8"]}`), "package.json"); err != nil || p.Engines.Node != "" {
		t.Errorf("legacy engines: %+v, %v", p, err)
	}

	bad := []struct{ json, want string }{
		{`{"main": 3}`, "package.json: main: expected string, got number 3"},
		{`{"name": ["x"]}`, "package.json: name: expected string, got array"},
		{`{"scripts": []}`, "package.json: scripts: expected object, got array"},
		{`{"scripts": {"start": true}}`, "package.json: scripts.start: expected string, got boolean"},
		{`{"engines": {"node": 20}}`, "package.json: engines.node: expected string, got number 20"},
		{`{"name": "x",}`, "package.json: not valid JSON"},
		{`null`, "expected a JSON object"},
		{`[]`, "not valid JSON"},
	}
	for _, tc := range bad {
		_, err := ParsePackage([]byte(tc.json), "package.json")
		if err == nil || !errors.Is(err, ErrBadPackageJSON) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParsePackage(%s) = %v, want ErrBadPackageJSON saying %q", tc.json, err, tc.want)
		}
	}
}

func TestSanitizeName(t *testing.T) {
	for in, want := range map[string]string{
		"hello":                   "hello",
		"@acme/My_API.server":     "my-api-server",
		"123-go":                  "go",
		"":                        "app",
		"@scope/":                 "app",
		"日本語":                     "app",
		"a--b__c":                 "a-b-c",
		strings.Repeat("x", 40):   strings.Repeat("x", 32),
		strings.Repeat("ab-", 20): "ab-ab-ab-ab-ab-ab-ab-ab-ab-ab-ab",
	} {
		got := SanitizeName(in)
		if got != want {
			t.Errorf("SanitizeName(%q) = %q, want %q", in, got, want)
		}
		if checkAppName(got) != nil && got != "root" {
			t.Errorf("SanitizeName(%q) = %q is not a valid app name", in, got)
		}
	}
}
