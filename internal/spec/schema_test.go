package spec

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// schemaFile is the editors' schema of nodeboot.json. The Go validator is
// the one nodeboot runs; the tests here keep the two in agreement.
var schemaFile = filepath.Join("..", "..", "docs", "nodeboot.schema.json")

var (
	schemaOnce     sync.Once
	compiledSchema *jsonschema.Schema
	schemaErr      error
)

func loadSchema(t testing.TB) *jsonschema.Schema {
	t.Helper()
	schemaOnce.Do(func() {
		f, err := os.Open(schemaFile)
		if err != nil {
			schemaErr = err
			return
		}
		defer f.Close()
		doc, err := jsonschema.UnmarshalJSON(f)
		if err != nil {
			schemaErr = err
			return
		}
		c := jsonschema.NewCompiler()
		c.AssertFormat() // "ipv4"/"ipv6" are checks here, as in nodeboot
		if err := c.AddResource("nodeboot.schema.json", doc); err != nil {
			schemaErr = err
			return
		}
		compiledSchema, schemaErr = c.Compile("nodeboot.schema.json")
	})
	if schemaErr != nil {
		t.Fatalf("schema %s: %v", schemaFile, schemaErr)
	}
	return compiledSchema
}

// schemaAccepts validates config bytes against the schema; ok is false when
// the bytes are not JSON at all.
func schemaAccepts(t testing.TB, data []byte) (valid, ok bool, err error) {
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))))
	if err != nil {
		return false, false, err
	}
	err = loadSchema(t).Validate(inst)
	return err == nil, true, err
}

func TestSchemaAgreesWithValidator(t *testing.T) {
	tests := []struct {
		name, json string
		valid      bool
		// semantic: the schema cannot express the rule, so it accepts
		// what nodeboot rejects. Every such case is listed on purpose.
		semantic bool
	}{
		{"empty", `{}`, true, false},
		{"schema key", `{"$schema": "./nodeboot.schema.json"}`, true, false},
		{"comment string", `{"$comment": "why"}`, true, false},
		{"comment list", `{"$comment": ["one", "two"]}`, true, false},
		{"comment not text", `{"$comment": 1}`, false, false},
		{"comment list not text", `{"$comment": ["one", 2]}`, false, false},
		{"full", `{"hostname":"edge-1.lan","node":"22.11.0","env":{"A":"1","NODE_ENV":"x"},
			"network":{"mode":"static","address":"10.1.2.3/16","gateway":"10.1.0.1","dns":["1.1.1.1","::1"],"ntp":["pool.ntp.org","10.0.0.1","fd00::1","10.0.2.2:1123"]},
			"cmdline":"quiet","apps":[{"name":"api","path":"./api","env":{"B":"2"},"args":["--x",""],"port":3000},{"path":"w","port":8081.0}]}`, true, false},
		{"dhcp with dns", `{"network":{"mode":"dhcp","dns":["9.9.9.9"],"ntp":[]}}`, true, false},
		{"health ready", `{"apps":[{"path":".","health":"ready","maxLockSeconds":30}]}`, true, false},
		{"health port", `{"apps":[{"path":".","health":"port"}]}`, true, false},
		{"health other", `{"apps":[{"path":".","health":"tcp"}]}`, false, false},
		{"maxLockSeconds too big", `{"apps":[{"path":".","maxLockSeconds":86401}]}`, false, false},
		{"network without mode", `{"network":{"dns":["9.9.9.9"]}}`, true, false},
		{"static v6", `{"network":{"mode":"static","address":"2001:db8::5/64","gateway":"2001:db8::1"}}`, true, false},
		{"static /32", `{"network":{"mode":"static","address":"203.0.113.7/32","gateway":"172.31.1.1"}}`, true, false},
		{"name one letter", `{"apps":[{"path":".","name":"a"}]}`, true, false},
		{"name 32", `{"apps":[{"path":".","name":"a` + strings.Repeat("b", 31) + `"}]}`, true, false},
		{"port bounds", `{"apps":[{"path":"a","port":1},{"path":"b","port":65535}]}`, true, false},
		{"hostname 63", `{"hostname":"` + strings.Repeat("a", 63) + `"}`, true, false},

		{"root array", `[]`, false, false},
		{"root string", `"x"`, false, false},
		{"unknown top", `{"nmae":"x"}`, false, false},
		{"misplaced ntp", `{"ntp":["a"]}`, false, false},
		{"unknown network", `{"network":{"mod":"dhcp"}}`, false, false},
		{"unknown app", `{"apps":[{"path":".","entry":"x.js"}]}`, false, false},
		{"schema not string", `{"$schema":1}`, false, false},
		{"hostname type", `{"hostname":true}`, false, false},
		{"hostname underscore", `{"hostname":"my_app"}`, false, false},
		{"hostname hyphen end", `{"hostname":"app-"}`, false, false},
		{"hostname empty label", `{"hostname":"a..b"}`, false, false},
		{"hostname long label", `{"hostname":"` + strings.Repeat("a", 64) + `"}`, false, false},
		{"hostname too long", `{"hostname":"` + strings.Repeat("abcdefghi.", 26) + `a"}`, false, false},
		{"hostname empty", `{"hostname":""}`, false, false},
		{"node empty", `{"node":""}`, false, false},
		{"node number", `{"node":22}`, false, false},
		{"node blank", `{"node":"  "}`, false, false},
		{"env array", `{"env":[]}`, false, false},
		{"env number value", `{"env":{"A":1}}`, false, false},
		{"env null value", `{"env":{"A":null}}`, false, false},
		{"env PORT", `{"env":{"PORT":"80"}}`, false, false},
		{"env HOME", `{"apps":[{"path":".","env":{"HOME":"/x"}}]}`, false, false},
		{"env data dir", `{"env":{"NODEBOOT_DATA_DIR":"/x"}}`, false, false},
		{"env =", `{"env":{"A=B":"1"}}`, false, false},
		{"env empty name", `{"env":{"":"1"}}`, false, false},
		{"env NUL", `{"env":{"A":"\u0000"}}`, false, false},
		{"network string", `{"network":"dhcp"}`, false, false},
		{"bad mode", `{"network":{"mode":"auto"}}`, false, false},
		{"static no address", `{"network":{"mode":"static"}}`, false, false},
		{"dhcp address", `{"network":{"mode":"dhcp","address":"10.0.0.2/8"}}`, false, false},
		{"address no mode", `{"network":{"address":"10.0.0.2/8"}}`, false, false},
		{"gateway no mode", `{"network":{"gateway":"10.0.0.1"}}`, false, false},
		{"address no length", `{"network":{"mode":"static","address":"10.0.0.2"}}`, false, false},
		{"address hostname", `{"network":{"mode":"static","address":"router/24"}}`, false, false},
		{"bad gateway", `{"network":{"mode":"static","address":"10.0.0.2/8","gateway":"gw"}}`, false, false},
		{"bad dns", `{"network":{"dns":["dns.google"]}}`, false, false},
		{"dns not array", `{"network":{"dns":"1.1.1.1"}}`, false, false},
		{"bad ntp", `{"network":{"ntp":["-bad-"]}}`, false, false},
		{"ntp port zero", `{"network":{"ntp":["ntp.lan:0"]}}`, false, false},
		{"ntp port big", `{"network":{"ntp":["ntp.lan:65536"]}}`, false, false},
		{"ntp ipv6 port", `{"network":{"ntp":["[fd00::1]:123"]}}`, false, false},
		{"cmdline array", `{"cmdline":["a"]}`, false, false},
		{"apps object", `{"apps":{}}`, false, false},
		{"apps empty", `{"apps":[]}`, false, false},
		{"app string", `{"apps":["."]}`, false, false},
		{"app no path", `{"apps":[{"name":"a"}]}`, false, false},
		{"path empty", `{"apps":[{"path":""}]}`, false, false},
		{"path number", `{"apps":[{"path":1}]}`, false, false},
		{"name upper", `{"apps":[{"path":".","name":"Api"}]}`, false, false},
		{"name digit", `{"apps":[{"path":".","name":"1api"}]}`, false, false},
		{"name 33", `{"apps":[{"path":".","name":"a` + strings.Repeat("b", 32) + `"}]}`, false, false},
		{"name root", `{"apps":[{"path":".","name":"root"}]}`, false, false},
		{"args string", `{"apps":[{"path":".","args":"--x"}]}`, false, false},
		{"args number", `{"apps":[{"path":".","args":[1]}]}`, false, false},
		{"port 0", `{"apps":[{"path":".","port":0}]}`, false, false},
		{"port big", `{"apps":[{"path":".","port":70000}]}`, false, false},
		{"port fraction", `{"apps":[{"path":".","port":1.5}]}`, false, false},
		{"port string", `{"apps":[{"path":".","port":"80"}]}`, false, false},

		{"limits", `{"apps":[{"path":".","limits":{"memory":"256M","memoryHigh":"200MiB","cpuWeight":100,"cpuMax":"50%","pids":256}}]}`, true, false},
		{"limits bytes", `{"apps":[{"path":".","limits":{"memory":1073741824,"memoryHigh":"0.5G"}}]}`, true, false},
		{"limits empty", `{"apps":[{"path":".","limits":{}}]}`, true, false},
		{"sandbox", `{"apps":[{"path":".","sandbox":{"network":"none","allowSyscalls":["ptrace","io_uring_setup"]}}]}`, true, false},
		{"sandbox off", `{"apps":[{"path":".","sandbox":{"enabled":false}}]}`, true, false},
		{"limits unknown", `{"apps":[{"path":".","limits":{"mem":"1G"}}]}`, false, false},
		{"limits memory unit", `{"apps":[{"path":".","limits":{"memory":"256X"}}]}`, false, false},
		{"limits memory tiny", `{"apps":[{"path":".","limits":{"memory":256}}]}`, false, false},
		{"limits memory bool", `{"apps":[{"path":".","limits":{"memory":true}}]}`, false, false},
		{"limits weight 0", `{"apps":[{"path":".","limits":{"cpuWeight":0}}]}`, false, false},
		{"limits weight big", `{"apps":[{"path":".","limits":{"cpuWeight":10001}}]}`, false, false},
		{"limits cpuMax number", `{"apps":[{"path":".","limits":{"cpuMax":50}}]}`, false, false},
		{"limits cpuMax no percent", `{"apps":[{"path":".","limits":{"cpuMax":"0.5"}}]}`, false, false},
		{"limits pids few", `{"apps":[{"path":".","limits":{"pids":8}}]}`, false, false},
		{"limits pids fraction", `{"apps":[{"path":".","limits":{"pids":20.5}}]}`, false, false},
		{"limits not object", `{"apps":[{"path":".","limits":"256M"}]}`, false, false},
		{"sandbox unknown", `{"apps":[{"path":".","sandbox":{"enable":false}}]}`, false, false},
		{"sandbox enabled string", `{"apps":[{"path":".","sandbox":{"enabled":"no"}}]}`, false, false},
		{"sandbox network", `{"apps":[{"path":".","sandbox":{"network":"host"}}]}`, false, false},
		{"sandbox allow unknown", `{"apps":[{"path":".","sandbox":{"allowSyscalls":["read"]}}]}`, false, false},
		{"sandbox allow twice", `{"apps":[{"path":".","sandbox":{"allowSyscalls":["ptrace","ptrace"]}}]}`, false, false},
		{"sandbox allow string", `{"apps":[{"path":".","sandbox":{"allowSyscalls":"ptrace"}}]}`, false, false},
		{"limits high over max", `{"apps":[{"path":".","limits":{"memory":"100M","memoryHigh":"200M"}}]}`, false, true},
		{"sandbox off with more", `{"apps":[{"path":".","sandbox":{"enabled":false,"network":"none"}}]}`, false, true},

		{"follow", `{"follow":{"ref":"registry.example.com/shop/web:stable","interval":"30s","insecure":true}}`, true, false},
		{"follow port registry", `{"follow":{"ref":"127.0.0.1:5000/web:stable"}}`, true, false},
		{"follow interval compound", `{"follow":{"ref":"r.example/a/b:c","interval":"1h30m"}}`, true, false},
		{"follow no ref", `{"follow":{"interval":"5m"}}`, false, false},
		{"follow no tag", `{"follow":{"ref":"registry.example.com/shop/web"}}`, false, false},
		{"follow digest", `{"follow":{"ref":"r.example/web@sha256:` + strings.Repeat("a", 64) + `"}}`, false, false},
		{"follow no registry", `{"follow":{"ref":"web:stable"}}`, false, false},
		{"follow interval words", `{"follow":{"ref":"r.example/web:stable","interval":"5 minutes"}}`, false, false},
		{"follow interval number", `{"follow":{"ref":"r.example/web:stable","interval":300}}`, false, false},
		{"follow insecure string", `{"follow":{"ref":"r.example/web:stable","insecure":"yes"}}`, false, false},
		{"follow unknown", `{"follow":{"ref":"r.example/web:stable","tag":"x"}}`, false, false},
		{"follow interval short", `{"follow":{"ref":"r.example/web:stable","interval":"10ms"}}`, false, true},
		{"follow interval long", `{"follow":{"ref":"r.example/web:stable","interval":"48h"}}`, false, true},
		{"follow upper repo", `{"follow":{"ref":"r.example/Web:stable"}}`, false, true},

		{"logs syslog tls", `{"logs":{"remote":{"url":"syslog+tls://logs.example.com:6514","ca":"certs/ca.pem","bufferSize":"64M"}}}`, true, false},
		{"logs client cert", `{"logs":{"remote":{"url":"syslog+tls://[fd00::1]","ca":"ca.pem","cert":"c.pem","key":"k.pem","insecure":false}}}`, false, false},
		{"logs ipv6 not insecure", `{"logs":{"remote":{"url":"syslog+tls://[fd00::1]","ca":"ca.pem","insecure":false}}}`, true, false},
		{"logs otlp path", `{"logs":{"remote":{"url":"otlp+https://otel.example.com/ingest/v1/logs","ca":"ca.pem","bufferSize":1048576}}}`, true, false},
		{"logs insecure tcp", `{"logs":{"remote":{"url":"syslog+tcp://10.0.2.2:5514","insecure":true}}}`, true, false},
		{"logs insecure otlp", `{"logs":{"remote":{"url":"otlp+http://10.0.2.2:4318","insecure":true}}}`, true, false},
		{"logs empty", `{"logs":{}}`, true, false},
		{"logs no url", `{"logs":{"remote":{"ca":"a"}}}`, false, false},
		{"logs bad scheme", `{"logs":{"remote":{"url":"https://h","ca":"a"}}}`, false, false},
		{"logs tls no ca", `{"logs":{"remote":{"url":"syslog+tls://h"}}}`, false, false},
		{"logs tcp not insecure", `{"logs":{"remote":{"url":"syslog+tcp://h"}}}`, false, false},
		{"logs tcp with ca", `{"logs":{"remote":{"url":"syslog+tcp://h","insecure":true,"ca":"a"}}}`, false, false},
		{"logs tls insecure", `{"logs":{"remote":{"url":"otlp+https://h","ca":"a","insecure":true}}}`, false, false},
		{"logs cert alone", `{"logs":{"remote":{"url":"syslog+tls://h","ca":"a","cert":"c"}}}`, false, false},
		{"logs user", `{"logs":{"remote":{"url":"syslog+tls://u@h","ca":"a"}}}`, false, false},
		{"logs query", `{"logs":{"remote":{"url":"otlp+https://h/v1/logs?a","ca":"a"}}}`, false, false},
		{"logs buffer small", `{"logs":{"remote":{"url":"syslog+tls://h","ca":"a","bufferSize":1024}}}`, false, false},
		{"logs buffer words", `{"logs":{"remote":{"url":"syslog+tls://h","ca":"a","bufferSize":"lots"}}}`, false, false},
		{"logs unknown", `{"logs":{"remote":{"url":"syslog+tls://h","ca":"a","tls":true}}}`, false, false},
		{"logs remote string", `{"logs":{"remote":"syslog+tls://h"}}`, false, false},
		{"logs buffer small unit", `{"logs":{"remote":{"url":"syslog+tls://h","ca":"a","bufferSize":"1K"}}}`, false, true},
		{"logs syslog path", `{"logs":{"remote":{"url":"syslog+tls://h/x","ca":"a"}}}`, false, true},
		{"logs bad host", `{"logs":{"remote":{"url":"syslog+tls://my_host","ca":"a"}}}`, false, true},
		{"logs port 0", `{"logs":{"remote":{"url":"syslog+tls://h:0","ca":"a"}}}`, false, true},

		{"duplicate names", `{"apps":[{"path":"a","name":"x"},{"path":"b","name":"x"}]}`, false, true},
		{"duplicate ports", `{"apps":[{"path":"a","port":80},{"path":"b","port":80}]}`, false, true},
		{"duplicate key", `{"hostname":"a","hostname":"b"}`, false, true},
		{"bad CIDR octet", `{"network":{"mode":"static","address":"10.0.0.300/8"}}`, false, true},
		{"bad CIDR length", `{"network":{"mode":"static","address":"10.0.0.3/33"}}`, false, true},
		{"network address", `{"network":{"mode":"static","address":"10.0.0.0/8"}}`, false, true},
		{"gateway other family", `{"network":{"mode":"static","address":"10.0.0.2/8","gateway":"::1"}}`, false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, goErr := ParseConfig([]byte(tc.json), "nodeboot.json")
			schemaValid, ok, schemaErr := schemaAccepts(t, []byte(tc.json))
			if !ok {
				t.Fatalf("test case is not JSON: %v", schemaErr)
			}
			if (goErr == nil) != tc.valid {
				t.Errorf("validator: valid=%v, want %v (%v)", goErr == nil, tc.valid, goErr)
			}
			wantSchema := tc.valid || tc.semantic
			if schemaValid != wantSchema {
				t.Errorf("schema: valid=%v, want %v (%v)", schemaValid, wantSchema, schemaErr)
			}
		})
	}
}

// TestSchemaShape checks the schema is strict where the validator is, and
// declares the same keys and name rules.
func TestSchemaShape(t *testing.T) {
	data, err := os.ReadFile(schemaFile)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	if doc["$schema"] != "https://json-schema.org/draft/2020-12/schema" {
		t.Errorf("$schema = %v, want draft 2020-12", doc["$schema"])
	}
	defs := doc["$defs"].(map[string]any)
	keysOf := func(s map[string]any) []string {
		var keys []string
		for k := range s["properties"].(map[string]any) {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		return keys
	}
	sorted := func(s []string) []string {
		s = slices.Clone(s)
		sort.Strings(s)
		return s
	}
	for _, c := range []struct {
		name   string
		schema map[string]any
		keys   []string
	}{
		{"root", doc, configKeys},
		{"network", defs["network"].(map[string]any), networkKeys},
		{"app", defs["app"].(map[string]any), appKeys},
		{"limits", defs["limits"].(map[string]any), limitsKeys},
		{"sandbox", defs["sandbox"].(map[string]any), sandboxKeys},
		{"follow", doc["properties"].(map[string]any)["follow"].(map[string]any), followKeys},
		{"logs", doc["properties"].(map[string]any)["logs"].(map[string]any), logsKeys},
		{"logs.remote", doc["properties"].(map[string]any)["logs"].(map[string]any)["properties"].(map[string]any)["remote"].(map[string]any), remoteLogsKeys},
	} {
		if got := keysOf(c.schema); !slices.Equal(got, sorted(c.keys)) {
			t.Errorf("%s: schema keys %q, validator keys %q", c.name, got, sorted(c.keys))
		}
	}

	// Every object schema either closes its properties or, for a map like
	// env, constrains its values.
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			if _, hasProps := v["properties"]; hasProps && v["type"] == "object" {
				if v["additionalProperties"] != false {
					t.Errorf("%s: object schema without \"additionalProperties\": false", path)
				}
			}
			if v["type"] == "object" {
				if _, ok := v["additionalProperties"]; !ok {
					t.Errorf("%s: object schema without additionalProperties", path)
				}
			}
			if _, ok := v["properties"]; ok && v["type"] == "object" {
				for k, p := range v["properties"].(map[string]any) {
					if ps, ok := p.(map[string]any); ok {
						if _, ok := ps["description"]; !ok {
							t.Errorf("%s.%s: no description for editors", path, k)
						}
					}
				}
			}
			for k, e := range v {
				walk(path+"/"+k, e)
			}
		case []any:
			for i, e := range v {
				walk(path+"/"+string(rune('0'+i)), e)
			}
		}
	}
	walk("#", doc)

	name := defs["app"].(map[string]any)["properties"].(map[string]any)["name"].(map[string]any)
	if name["pattern"] != appNameRE.String() {
		t.Errorf("app name pattern %v, validator %v", name["pattern"], appNameRE)
	}
	var reserved []string
	for _, r := range name["not"].(map[string]any)["enum"].([]any) {
		reserved = append(reserved, r.(string))
	}
	if !slices.Equal(sorted(reserved), sorted(reservedAppNames)) {
		t.Errorf("reserved names: schema %q, validator %q", reserved, reservedAppNames)
	}
	var envReserved []string
	for _, r := range defs["env"].(map[string]any)["propertyNames"].(map[string]any)["not"].(map[string]any)["enum"].([]any) {
		envReserved = append(envReserved, r.(string))
	}
	var goReserved []string
	for k := range reservedEnv {
		goReserved = append(goReserved, k)
	}
	if !slices.Equal(sorted(envReserved), sorted(goReserved)) {
		t.Errorf("reserved env: schema %q, validator %q", envReserved, goReserved)
	}
	label := strings.TrimSuffix(strings.TrimPrefix(hostnameLabelRE.String(), "^"), "$")
	if host := defs["hostname"].(map[string]any)["pattern"].(string); !strings.HasPrefix(host, "^"+label+`(\.`+label+")*$") {
		t.Errorf("hostname pattern %q does not repeat the validator's label %q", host, label)
	}
}
