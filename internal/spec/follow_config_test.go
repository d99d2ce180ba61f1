package spec

import (
	"strings"
	"testing"
	"time"
)

func TestFollowConfig(t *testing.T) {
	cfg, err := ParseConfig([]byte(`{"follow": {"ref": "127.0.0.1:5000/shop/web:stable", "interval": "30s", "insecure": true}}`), "nodeboot.json")
	if err != nil || cfg.Follow == nil || cfg.Follow.Ref != "127.0.0.1:5000/shop/web:stable" || cfg.Follow.Interval != "30s" || !cfg.Follow.Insecure {
		t.Fatalf("%+v, %v", cfg.Follow, err)
	}
	if d, _ := ParseFollowInterval(""); d != DefaultFollowInterval {
		t.Errorf("default interval %v", d)
	}
	if d, _ := ParseFollowInterval("1h30m"); d != 90*time.Minute {
		t.Errorf("1h30m is %v", d)
	}
	for doc, want := range map[string]string{
		`{"follow": {}}`:                                                  `follow: missing "ref"`,
		`{"follow": {"ref": "web:stable"}}`:                               `follow.ref: "web:stable" is not a registry/repository:tag reference`,
		`{"follow": {"ref": "r.example/web"}}`:                            `follow.ref: "r.example/web" is not a registry/repository:tag reference`,
		`{"follow": {"ref": "r.example/web@sha256:abc"}}`:                 "names a digest, which never changes: follow a tag",
		`{"follow": {"ref": "r.example/web:stable", "interval": "5"}}`:    `follow.interval: "5" is not a duration: write it like "5m"`,
		`{"follow": {"ref": "r.example/web:stable", "interval": "1ms"}}`:  "follow.interval: 1ms is not between 1s and 24h0m0s",
		`{"follow": {"ref": "r.example/web:stable", "interval": ""}}`:     `follow.interval: must not be empty; leave "interval" out for the default, 5m0s`,
		`{"follow": {"ref": "r.example/web:stable", "interval": 300}}`:    "follow.interval: expected string, got number",
		`{"follow": {"ref": "r.example/web:stable", "insecure": "true"}}`: "follow.insecure: expected boolean",
		`{"follow": {"ref": "r.example/web:stable", "tag": "x"}}`:         "follow.tag: unknown key",
		`{"follow": "r.example/web:stable"}`:                              "follow: expected object",
	} {
		_, err := ParseConfig([]byte(doc), "nodeboot.json")
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error with %q", doc, err, want)
		}
	}
}

func TestFollowInRuntime(t *testing.T) {
	good := `{"hostname":"h","network":{},"nodePath":"/usr/bin/node","apps":[],"follow":{"ref":"127.0.0.1:5000/web:stable","interval":"3s","insecure":true}}`
	rt, err := DecodeRuntime(strings.NewReader(good))
	if err != nil || rt.Follow == nil || rt.Follow.Interval != "3s" {
		t.Fatalf("%+v, %v", rt, err)
	}
	for _, bad := range []string{
		strings.Replace(good, "127.0.0.1:5000/web:stable", "web", 1),
		strings.Replace(good, `"3s"`, `"3 s"`, 1),
	} {
		if _, err := DecodeRuntime(strings.NewReader(bad)); err == nil || !strings.Contains(err.Error(), "follow.") {
			t.Errorf("%s: %v, want a follow error", bad, err)
		}
	}
}

func TestParseFollowRefParts(t *testing.T) {
	for _, ok := range []string{"r.example/web:stable", "127.0.0.1:5000/web:v1", "localhost:5000/a/b:_x", "[::1]:5000/web:1.0"} {
		if _, err := ParseFollowRef(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{":/0:.0", "r.example/web:.x", "r.example/web:-x", "shop/web:stable", "r.example:0/web:a", "r.example:99999/web:a", "-r.example/web:a"} {
		if _, err := ParseFollowRef(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}
