package spec

import (
	"strings"
	"testing"
)

func TestLogsConfig(t *testing.T) {
	cfg, err := ParseConfig([]byte(`{"logs": {"remote": {"url": "syslog+tls://logs.example.com", "ca": "certs/ca.pem", "bufferSize": "64M"}}}`), "nodeboot.json")
	if err != nil || cfg.Logs == nil || cfg.Logs.Remote == nil {
		t.Fatalf("%+v, %v", cfg, err)
	}
	r := cfg.Logs.Remote
	if r.URL != "syslog+tls://logs.example.com" || r.CA != "certs/ca.pem" || r.BufferBytes != 64<<20 {
		t.Errorf("%+v", r)
	}
	rl := runtimeLogs(cfg.Logs)
	if rl.URL != r.URL || rl.BufferBytes != 64<<20 || rl.Check() != nil {
		t.Errorf("runtime %+v", rl)
	}
	if rl := runtimeLogs(&LogsConfig{Remote: &RemoteLogs{URL: "otlp+http://h", Insecure: true}}); rl.BufferBytes != DefaultLogsBuffer {
		t.Errorf("default buffer %d", rl.BufferBytes)
	}
	if runtimeLogs(&LogsConfig{}) != nil || runtimeLogs(nil) != nil {
		t.Error("no remote, yet runtime logs")
	}

	for doc, want := range map[string]string{
		`{"logs": {"remote": {}}}`:                                                        `logs.remote: missing "url", where the logs go: write e.g. "syslog+tls://`,
		`{"logs": {"remote": {"url": "https://logs.example.com"}}}`:                       `logs.remote.url: scheme "https" is not one nodeboot sends logs to`,
		`{"logs": {"remote": {"url": "logs.example.com:6514"}}}`:                          `logs.remote.url: "logs.example.com:6514" is not a URL with a host`,
		`{"logs": {"remote": {"url": "syslog+tcp://10.0.2.2:5514"}}}`:                     `logs.remote.url: syslog+tcp:// sends the logs in plain text: add "insecure": true`,
		`{"logs": {"remote": {"url": "otlp+http://h"}}}`:                                  `use otlp+https://`,
		`{"logs": {"remote": {"url": "syslog+tls://h"}}}`:                                 `logs.remote: missing "ca": a node has no CA certificates of its own`,
		`{"logs": {"remote": {"url": "syslog+tls://h", "ca": "a", "insecure": true}}}`:    `logs.remote.insecure: is only for syslog+tcp:// and otlp+http://`,
		`{"logs": {"remote": {"url": "syslog+tcp://h", "insecure": true, "ca": "a"}}}`:    `"ca" is for TLS`,
		`{"logs": {"remote": {"url": "syslog+tls://h", "ca": "a", "cert": "c"}}}`:         `logs.remote.cert: a client certificate and its key are not built into the image`,
		`{"logs": {"remote": {"url": "syslog+tls://h", "ca": "a", "key": "k.pem"}}}`:      "remove \"cert\" and \"key\" and give each node its own with `nodeboot logs login NODE --cert node.pem --key node.key`",
		`{"logs": {"remote": {"url": "syslog+tls://h:0", "ca": "a"}}}`:                    `logs.remote.url: port "0" is not a number from 1 to 65535`,
		`{"logs": {"remote": {"url": "syslog+tls://h:", "ca": "a"}}}`:                     `port "" is not a number`,
		`{"logs": {"remote": {"url": "syslog+tls://h/x", "ca": "a"}}}`:                    `a syslog endpoint has no path: write syslog+tls://h`,
		`{"logs": {"remote": {"url": "syslog+tls://u@h", "ca": "a"}}}`:                    `a user, query or fragment has no meaning here`,
		`{"logs": {"remote": {"url": "otlp+https://h/v1/logs?x=1", "ca": "a"}}}`:          `a user, query or fragment has no meaning here`,
		`{"logs": {"remote": {"url": "syslog+tls://my_host", "ca": "a"}}}`:                `"my_host" is not a host name or address`,
		`{"logs": {"remote": {"url": "SYSLOG+TLS://h", "ca": "a"}}}`:                      `write the scheme in lower case`,
		`{"logs": {"remote": {"url": "syslog+tls://h", "ca": ""}}}`:                       `logs.remote.ca: must name a PEM file`,
		`{"logs": {"remote": {"url": "syslog+tls://h", "ca": "a", "bufferSize": "1K"}}}`:  `logs.remote.bufferSize: must be from 1M to 1G`,
		`{"logs": {"remote": {"url": "syslog+tls://h", "ca": "a", "bufferSize": "2e7"}}}`: `logs.remote.bufferSize: "2e7" is not a size`,
		`{"logs": {"remote": {"url": "syslog+tls://h", "ca": "a", "bufferSize": 1.5}}}`:   `is not a whole number of bytes`,
		`{"logs": {"remote": {"url": "syslog+tls://h", "ca": "a", "bufferSize": true}}}`:  `logs.remote.bufferSize: expected size`,
		`{"logs": {"remote": {"url": 5}}}`:                                                `logs.remote.url: expected string`,
		`{"logs": {"remote": {"url": "syslog+tls://h", "ca": "a", "tls": true}}}`:         `logs.remote.tls: unknown key`,
		`{"logs": {"remote": "syslog+tls://h"}}`:                                          `logs.remote: expected object`,
		`{"logs": {"remot": {}}}`:                                                         `logs.remot: unknown key`,
		`{"logs": []}`:                                                                    `logs: expected object`,
	} {
		_, err := ParseConfig([]byte(doc), "nodeboot.json")
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error with %q", doc, err, want)
		}
	}
}

func TestParseLogsURL(t *testing.T) {
	for in, want := range map[string]LogsEndpoint{
		"syslog+tls://logs.example.com":       {Proto: "syslog", TLS: true, Host: "logs.example.com", Port: 6514},
		"syslog+tcp://10.0.2.2:5514":          {Proto: "syslog", Host: "10.0.2.2", Port: 5514},
		"otlp+https://otel.example.com":       {Proto: "otlp", TLS: true, Host: "otel.example.com", Port: 4318, Path: "/v1/logs"},
		"otlp+http://[fd00::1]:4000/ingest/x": {Proto: "otlp", Host: "fd00::1", Port: 4000, Path: "/ingest/x"},
	} {
		got, err := ParseLogsURL(in, true)
		if err != nil || got != want {
			t.Errorf("%s: %+v, %v; want %+v", in, got, err, want)
		}
	}
	e, _ := ParseLogsURL("otlp+http://[fd00::1]:4000", true)
	if e.HTTPURL() != "http://[fd00::1]:4000/v1/logs" || e.Addr() != "[fd00::1]:4000" {
		t.Errorf("%s %s", e.HTTPURL(), e.Addr())
	}
}

func TestLogsInRuntime(t *testing.T) {
	good := `{"hostname":"h","network":{},"nodePath":"/usr/bin/node","apps":[],"logs":{"url":"syslog+tls://10.0.2.2:6514","bufferBytes":1048576}}`
	rt, err := DecodeRuntime(strings.NewReader(good))
	if err != nil || rt.Logs == nil || rt.Logs.URL != "syslog+tls://10.0.2.2:6514" {
		t.Fatalf("%+v, %v", rt, err)
	}
	for _, bad := range []string{
		strings.Replace(good, "syslog+tls", "syslog+tcp", 1),
		strings.Replace(good, "1048576", "10", 1),
	} {
		if _, err := DecodeRuntime(strings.NewReader(bad)); err == nil || !strings.Contains(err.Error(), "runtime config: logs:") {
			t.Errorf("%s: %v, want a logs error", bad, err)
		}
	}
}
