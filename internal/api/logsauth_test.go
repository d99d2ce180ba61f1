package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nodeboot/nodeboot/internal/contract"
	"github.com/nodeboot/nodeboot/internal/logship/logshiptest"
)

// fakeLogsCert is the fake node's client certificate for its logs.
type fakeLogsCert struct {
	mu       sync.Mutex
	shipping bool
	stored   *contract.LogsClientCredentials
}

func (f *fakeNode) SetLogsClientCert(ctx context.Context, c contract.LogsClientCredentials) (*contract.LogsAuthResult, error) {
	f.logsCert.mu.Lock()
	defer f.logsCert.mu.Unlock()
	if !f.logsCert.shipping {
		return nil, fmt.Errorf("%w: nodeboot.json has no logs.remote", ErrNoRemoteLogs)
	}
	f.logsCert.stored = &c
	return &contract.LogsAuthResult{Endpoint: "syslog+tls://10.0.2.2:6514", Subject: "CN=edge-1"}, nil
}

func (f *fakeNode) RemoveLogsClientCert(ctx context.Context) (*contract.LogsAuthResult, error) {
	f.logsCert.mu.Lock()
	defer f.logsCert.mu.Unlock()
	if !f.logsCert.shipping {
		return nil, fmt.Errorf("%w: nodeboot.json has no logs.remote", ErrNoRemoteLogs)
	}
	f.logsCert.stored = nil
	return &contract.LogsAuthResult{Endpoint: "syslog+tls://10.0.2.2:6514"}, nil
}

func body(t *testing.T, cert, key []byte) string {
	b, err := json.Marshal(contract.LogsClientCredentials{Cert: string(cert), Key: string(key)})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestLogsAuth: a good pair reaches the node; a bad one is refused with
// what is wrong before the node sees it; neither answers nor the log
// carry the key.
func TestLogsAuth(t *testing.T) {
	var logMu sync.Mutex
	var logs strings.Builder
	h := start(t, Options{Log: func(f string, a ...any) {
		logMu.Lock()
		defer logMu.Unlock()
		fmt.Fprintf(&logs, f+"\n", a...)
	}})
	owner := h.bearer()
	ca, err := logshiptest.NewCA("logs CA")
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := ca.Issue("edge-1")
	if err != nil {
		t.Fatal(err)
	}
	_, otherKey, err := ca.Issue("edge-2")
	if err != nil {
		t.Fatal(err)
	}
	keyBits := string(key[40:60]) // a piece of the key that must never show
	put := func(b string) answer {
		return h.do(t, "PUT", contract.PathLogsAuth, owner, strings.NewReader(b))
	}
	if a := put(body(t, cert, key)); a.code != http.StatusConflict || !strings.Contains(a.body, "sends no logs") {
		t.Errorf("on a node that ships no logs: %d %s", a.code, a.body)
	}
	h.fake.logsCert.shipping = true
	if a := h.do(t, "PUT", contract.PathLogsAuth, "", strings.NewReader(body(t, cert, key))); a.code != http.StatusUnauthorized || h.fake.logsCert.stored != nil {
		t.Errorf("without the owner's token: %d %s", a.code, a.body)
	}
	for _, c := range []struct{ body, want string }{
		{body(t, cert, otherKey), "the key does not belong to the certificate"},
		{body(t, []byte("not pem"), key), "the certificate is not PEM"},
		{body(t, cert, []byte("not pem")), "the key is not a PEM private key"},
		{body(t, key, cert), "swapped"},
		{`{"cert":"x"}`, "needs both"},
		{`{"cert":1,"key":"y"}`, "not a string"},
		{`{"cert":"x","key":"y","ca":"z"}`, "not a JSON object of"},
		{body(t, cert, key) + ` {}`, "trailing"},
		{`{"cert":"` + strings.Repeat("x", contract.MaxLogsCredentialsBytes) + `","key":"y"}`, "over"},
	} {
		a := put(c.body)
		if a.code/100 != 4 || !strings.Contains(a.body, c.want) || strings.Contains(a.body, keyBits) || h.fake.logsCert.stored != nil {
			t.Errorf("PUT %.60s: %d %s, want a 4xx saying %q", c.body, a.code, a.body, c.want)
		}
	}
	a := put(body(t, cert, key))
	if a.code != 200 || !strings.Contains(a.body, `"subject":"CN=edge-1"`) || strings.Contains(a.body, keyBits) {
		t.Errorf("set: %d %s", a.code, a.body)
	}
	if s := h.fake.logsCert.stored; s == nil || s.Key != string(key) || s.Cert != string(cert) {
		t.Errorf("stored %+v", s)
	}
	a = h.do(t, "DELETE", contract.PathLogsAuth, owner, nil)
	if a.code != 200 || h.fake.logsCert.stored != nil {
		t.Errorf("remove: %d %s, stored %v", a.code, a.body, h.fake.logsCert.stored)
	}
	logMu.Lock()
	defer logMu.Unlock()
	if !strings.Contains(logs.String(), "client certificate CN=edge-1 for the logs of syslog+tls://10.0.2.2:6514 set") || strings.Contains(logs.String(), keyBits) {
		t.Errorf("log:\n%s", logs.String())
	}
}

// FuzzParseLogsCredentials: the body of PUT /v1/logs/auth comes from the
// network; whatever it is, the parser answers without panicking, and what
// it accepts is a pair TLS can use.
func FuzzParseLogsCredentials(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseLogsCredentials(b, time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC))
		if err != nil {
			return
		}
		if c.Cert == "" || c.Key == "" {
			t.Fatal("accepted without a certificate or a key")
		}
	})
}
