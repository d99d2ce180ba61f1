package e2e

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nodeboot/nodeboot/internal/logship/logshiptest"
)

// remoteLogs is a TLS syslog receiver (RFC 5425) on the host, which a
// guest on QEMU's user network reaches at 10.0.2.2, and the
// nodeboot.json "logs" that points a node at it. It requires a client
// certificate signed by its CA (mutual TLS), which the node gets from
// `nodeboot logs login`, never from the image.
type remoteLogs struct {
	recv   *logshiptest.Syslog
	ca     *logshiptest.CA
	config string // the "logs" member of nodeboot.json
}

// clientCert issues a client certificate for a node and writes it and
// its key to files, for `nodeboot logs login`.
func (r *remoteLogs) clientCert(t *testing.T, node string) (certFile, keyFile string) {
	t.Helper()
	cert, key, err := r.ca.Issue(node)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, node+".pem"), filepath.Join(dir, node+".key")
	if err := os.WriteFile(certFile, cert, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, key, 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func startRemoteLogs(t *testing.T) *remoteLogs {
	t.Helper()
	ca, err := logshiptest.NewCA("e2e logs CA")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := logshiptest.ServerTLS(ca, ca.Pool(), net.IPv4(10, 0, 2, 2), net.IPv4(127, 0, 0, 1))
	if err != nil {
		t.Fatal(err)
	}
	recv, err := logshiptest.NewSyslog("127.0.0.1:0", srv)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(recv.Stop)
	// Outside the project, so the CA is not one of the app's files.
	caFile := filepath.Join(t.TempDir(), "logs-ca.pem")
	if err := os.WriteFile(caFile, ca.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(recv.Addr)
	return &remoteLogs{recv: recv, ca: ca, config: fmt.Sprintf(`"logs": {"remote": {"url": "syslog+tls://10.0.2.2:%s", "ca": %q, "bufferSize": "4M"}}`, port, caFile)}
}

// wait waits until a line of app (InitAppName for PID 1) containing
// text arrives, and returns its index among the messages.
func (r *remoteLogs) wait(t *testing.T, app, text string) int {
	t.Helper()
	at := -1
	find := func(msgs []logshiptest.Message) bool {
		for i, m := range msgs {
			if m.App == app && strings.Contains(m.Msg, text) {
				at = i
				return true
			}
		}
		return false
	}
	if msgs, ok := r.recv.Wait(3*time.Minute, find); !ok {
		var tail []string
		for _, m := range msgs[max(0, len(msgs)-20):] {
			tail = append(tail, fmt.Sprintf("%s %s: %s (%v)", m.App, m.MsgID, m.Msg, m.Err))
		}
		t.Fatalf("the syslog receiver got no line of %s with %q; %d messages, the last:\n  %s", app, text, len(msgs), strings.Join(tail, "\n  "))
	}
	return at
}
