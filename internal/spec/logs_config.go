package spec

import (
	"fmt"
	"math"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"
)

// LogsConfig is nodeboot.json's "logs" (docs/logs.md).
type LogsConfig struct {
	// Remote sends every app's and PID 1's log lines to an endpoint;
	// nil: lines stay on the node (/data/logs, the console).
	Remote *RemoteLogs `json:"remote,omitempty"`
}

// RemoteLogs is "logs.remote".
type RemoteLogs struct {
	// URL is the endpoint: syslog+tls://host[:6514],
	// otlp+https://host[:4318][/v1/logs], or with "insecure" true
	// syslog+tcp://host[:514], otlp+http://host[:4318].
	URL string `json:"url"`
	// CA is the PEM file (relative to the project dir) of the CA(s) the
	// endpoint's certificate is checked against; required for TLS: a
	// node has no CA bundle of its own.
	CA string `json:"ca,omitempty"`
	// A client certificate (mutual TLS) is not here: each node is given
	// its own (`nodeboot logs login`, contract.LogsClientFile).
	// Insecure allows the plain-text schemes (tests, a trusted LAN).
	Insecure bool `json:"insecure,omitempty"`
	// BufferBytes bounds the buffer on /data; 0 means DefaultLogsBuffer.
	BufferBytes int64 `json:"bufferSize,omitempty"`
}

const (
	// DefaultLogsBuffer is the buffer's default cap on /data.
	DefaultLogsBuffer = 16 << 20
	// MinLogsBuffer and MaxLogsBuffer bound "bufferSize".
	MinLogsBuffer = 1 << 20
	MaxLogsBuffer = 1 << 30
)

var (
	logsKeys       = []string{"remote"}
	remoteLogsKeys = []string{"url", "ca", "insecure", "bufferSize"}
)

// LogsEndpoint is a parsed logs.remote.url.
type LogsEndpoint struct {
	Proto string // "syslog" or "otlp"
	TLS   bool
	Host  string // as written, without brackets
	Port  int
	Path  string // OTLP only: the logs path, default /v1/logs
}

// Addr is host:port.
func (e LogsEndpoint) Addr() string {
	if strings.Contains(e.Host, ":") {
		return "[" + e.Host + "]:" + strconv.Itoa(e.Port)
	}
	return e.Host + ":" + strconv.Itoa(e.Port)
}

// HTTPURL is the OTLP endpoint's http(s) URL.
func (e LogsEndpoint) HTTPURL() string {
	s := "http"
	if e.TLS {
		s = "https"
	}
	return s + "://" + e.Addr() + e.Path
}

const logsURLExample = `write e.g. "syslog+tls://logs.example.com:6514" or "otlp+https://otel.example.com:4318"`

// ParseLogsURL checks logs.remote.url. insecure says whether the config
// allows the plain-text schemes.
func ParseLogsURL(s string, insecure bool) (LogsEndpoint, error) {
	var e LogsEndpoint
	u, err := url.Parse(s)
	if err != nil || u.Opaque != "" || u.Host == "" {
		return e, fmt.Errorf("%q is not a URL with a host: %s", s, logsURLExample)
	}
	if !strings.HasPrefix(s, u.Scheme+"://") {
		return e, fmt.Errorf("%q: write the scheme in lower case, followed by ://: %s", s, logsURLExample)
	}
	defPort := 0
	switch u.Scheme {
	case "syslog+tls":
		e.Proto, e.TLS, defPort = "syslog", true, 6514
	case "syslog+tcp":
		e.Proto, defPort = "syslog", 514
	case "otlp+https":
		e.Proto, e.TLS, defPort = "otlp", true, 4318
	case "otlp+http":
		e.Proto, defPort = "otlp", 4318
	default:
		return e, fmt.Errorf("scheme %q is not one nodeboot sends logs to: %s (syslog+tcp:// and otlp+http:// with \"insecure\": true)", u.Scheme, logsURLExample)
	}
	if !e.TLS && !insecure {
		return e, fmt.Errorf("%s:// sends the logs in plain text: add \"insecure\": true for a test or trusted LAN endpoint, or use %s+%s://", u.Scheme, e.Proto, map[string]string{"syslog": "tls", "otlp": "https"}[e.Proto])
	}
	if u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.ContainsAny(s, "#?@") {
		return e, fmt.Errorf("%q: a user, query or fragment has no meaning here: %s", s, logsURLExample)
	}
	e.Host = u.Hostname()
	if a, err := netip.ParseAddr(e.Host); err == nil {
		if a.Zone() != "" {
			return e, fmt.Errorf("%q: an address with a zone is not supported", s)
		}
	} else if strings.HasPrefix(u.Host, "[") || checkHostname(e.Host) != nil {
		return e, fmt.Errorf("%q is not a host name or address: %s", e.Host, logsURLExample)
	}
	e.Port = defPort
	if p := u.Port(); p != "" || strings.HasSuffix(u.Host, ":") {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != p {
			return e, fmt.Errorf("port %q is not a number from 1 to 65535", p)
		}
		e.Port = n
	}
	switch {
	case e.Proto == "syslog" && u.Path != "":
		return e, fmt.Errorf("%q: a syslog endpoint has no path: write %s://%s", s, u.Scheme, u.Host)
	case e.Proto == "otlp" && (u.Path == "" || u.Path == "/"):
		e.Path = "/v1/logs"
	case e.Proto == "otlp":
		if u.RawPath != "" || strings.IndexFunc(u.Path, func(r rune) bool { return r <= ' ' || r > '~' }) >= 0 {
			return e, fmt.Errorf("%q: write the path without escapes or spaces", s)
		}
		e.Path = u.Path
	}
	return e, nil
}

func (c *configChecker) logsConfig(v *jval, p jsonPath) *LogsConfig {
	var l LogsConfig
	members, ok := c.object(v, p)
	if !ok {
		return nil
	}
	for _, m := range members {
		if !c.known(m, p, logsKeys, nil) {
			continue
		}
		if m.key == "remote" {
			l.Remote = c.remoteLogs(m.val, p.key(m.key))
		}
	}
	return &l
}

func (c *configChecker) remoteLogs(v *jval, p jsonPath) *RemoteLogs {
	var r RemoteLogs
	members, ok := c.object(v, p)
	if !ok {
		return nil
	}
	var urlVal *jval
	for _, m := range members {
		kp := p.key(m.key)
		if m.key == "cert" || m.key == "key" {
			// Once part of logs.remote: the answer says why they are
			// gone rather than "unknown".
			c.fail(kp, "a client certificate and its key are not built into the image (its OS update is pushed to registries and carried on sticks, and a key shared by the whole fleet cannot be revoked for one node): remove \"cert\" and \"key\" and give each node its own with `nodeboot logs login NODE --cert node.pem --key node.key` (docs/logs.md)")
			continue
		}
		if !c.known(m, p, remoteLogsKeys, nil) {
			continue
		}
		switch m.key {
		case "url":
			urlVal = m.val
		case "ca":
			if s, ok := c.str(m.val, kp); ok {
				if strings.TrimSpace(s) == "" || !c.noNUL(s, kp) {
					if strings.TrimSpace(s) == "" {
						c.fail(kp, "must name a PEM file (relative to the project directory)")
					}
					break
				}
				r.CA = s
			}
		case "insecure":
			if m.val.kind != kindBool {
				c.wrongType(kp, "boolean", m.val)
				break
			}
			r.Insecure = m.val.boolean
		case "bufferSize":
			r.BufferBytes = c.logsBuffer(m.val, kp)
		}
	}
	if urlVal == nil {
		c.fail(p, `missing "url", where the logs go: %s`, logsURLExample)
		return &r
	}
	s, ok := c.str(urlVal, p.key("url"))
	if !ok {
		return &r
	}
	r.URL = s
	e, err := ParseLogsURL(s, r.Insecure)
	if err != nil {
		c.fail(p.key("url"), "%v", err)
		return &r
	}
	if e.TLS {
		if r.Insecure {
			c.fail(p.key("insecure"), `is only for syslog+tcp:// and otlp+http://; remove it (the endpoint is TLS)`)
		}
		if r.CA == "" {
			c.fail(p, `missing "ca": a node has no CA certificates of its own; name the PEM file of the CA that signed the endpoint's certificate, e.g. "ca": "certs/logs-ca.pem" (for a public endpoint, the build host's bundle: "/etc/ssl/certs/ca-certificates.crt")`)
		}
	} else if r.CA != "" {
		c.fail(p, `"ca" is for TLS: use syslog+tls:// or otlp+https://, or remove it`)
	}
	return &r
}

// sizeRE is the schema's size pattern (Go's \s spelled out): ParseFloat
// alone would also take "2e7" or "0x1p24", which the schema (and a
// reader) would not. ParseMemory checks it first.
var sizeRE = regexp.MustCompile(`^[\t\n\f\r ]*[0-9]*\.?[0-9]+[\t\n\f\r ]*([KkMmGgTt][Ii]?)?[Bb]?[\t\n\f\r ]*$`)

// logsBuffer reads "bufferSize": a size with a unit ("64M") or a number
// of bytes.
func (c *configChecker) logsBuffer(v *jval, p jsonPath) int64 {
	var n int64
	switch v.kind {
	case kindString:
		var err error
		if n, err = ParseMemory(v.str); err != nil {
			c.fail(p, "%v", err)
			return 0
		}
	case kindNumber:
		f, err := strconv.ParseFloat(string(v.num), 64)
		if err != nil || f != math.Trunc(f) {
			c.fail(p, "%s is not a whole number of bytes; write e.g. \"64M\"", v.num)
			return 0
		}
		n = int64(min(f, 1<<62))
	default:
		c.wrongType(p, `size (e.g. "64M")`, v)
		return 0
	}
	if n < MinLogsBuffer || n > MaxLogsBuffer {
		c.fail(p, "must be from 1M to 1G, e.g. \"64M\" (default 16M)")
		return 0
	}
	return n
}

// RuntimeLogs is runtime.json's "logs": what PID 1 needs to ship its log
// lines. The CA is a file of the image (contract.LogsCA); the client
// certificate, if any, is on /data (contract.LogsClientFile).
type RuntimeLogs struct {
	URL         string `json:"url"`
	Insecure    bool   `json:"insecure,omitempty"`
	BufferBytes int64  `json:"bufferBytes"`
}

// runtimeLogs is the runtime form of logs.remote (nil when unset).
func runtimeLogs(c *LogsConfig) *RuntimeLogs {
	if c == nil || c.Remote == nil {
		return nil
	}
	r := c.Remote
	rl := &RuntimeLogs{URL: r.URL, Insecure: r.Insecure, BufferBytes: r.BufferBytes}
	if rl.BufferBytes == 0 {
		rl.BufferBytes = DefaultLogsBuffer
	}
	return rl
}

// Check validates a decoded runtime.json "logs".
func (r *RuntimeLogs) Check() error {
	if _, err := ParseLogsURL(r.URL, r.Insecure); err != nil {
		return err
	}
	if r.BufferBytes < MinLogsBuffer || r.BufferBytes > MaxLogsBuffer {
		return fmt.Errorf("bufferBytes %d is not from %d to %d", r.BufferBytes, MinLogsBuffer, MaxLogsBuffer)
	}
	return nil
}
