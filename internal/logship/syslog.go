package logship

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"github.com/nodeboot/nodeboot/internal/crash"
	"net"
	"strconv"
	"sync"
	"time"
)

// Syslog facilities and severities (RFC 5424 section 6.2.1).
const (
	facUser   = 1
	facDaemon = 3

	sevErr     = 3
	sevWarning = 4
	sevInfo    = 6
)

// InitAppName is the APP-NAME (syslog) and service.name (OTLP) of PID 1's
// own lines.
const InitAppName = "nodeboot"

// priority maps a line to facility and severity: an app's stdout is
// user.info, its stderr user.err (node writes console.error and
// console.warn there, and uncaught exceptions), PID 1's lines
// daemon.info, the shipper's own notes daemon.warning.
func priority(r Record) (fac, sev int) {
	switch r.Stream {
	case Stdout:
		return facUser, sevInfo
	case Stderr:
		return facUser, sevErr
	case Notice:
		return facDaemon, sevWarning
	default:
		return facDaemon, sevInfo
	}
}

func msgID(s Stream) string {
	switch s {
	case Stdout:
		return "stdout"
	case Stderr:
		return "stderr"
	case Notice:
		return "notice"
	default:
		return "init"
	}
}

// header5424 cleans a header field: PRINTUSASCII only (RFC 5424 section
// 6), at most max characters, "-" when empty.
func header5424(s string, maxLen int) string {
	b := make([]byte, 0, min(len(s), maxLen))
	for i := 0; i < len(s) && len(b) < maxLen; i++ {
		c := s[i]
		if c < 33 || c > 126 {
			c = '_'
		}
		b = append(b, c)
	}
	if len(b) == 0 {
		return "-"
	}
	return string(b)
}

// appendRFC5424 appends r as an RFC 5424 message:
// <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD [SP MSG].
func appendRFC5424(b []byte, r Record, hostname string) []byte {
	fac, sev := priority(r)
	app := r.App
	if app == "" {
		app = InitAppName
	}
	b = append(b, '<')
	b = strconv.AppendInt(b, int64(fac*8+sev), 10)
	b = append(b, ">1 "...)
	b = r.Time.UTC().AppendFormat(b, "2006-01-02T15:04:05.000000Z07:00")
	b = append(b, ' ')
	b = append(b, header5424(hostname, 255)...)
	b = append(b, ' ')
	b = append(b, header5424(app, 48)...)
	b = append(b, " - "...)
	b = append(b, msgID(r.Stream)...)
	b = append(b, " -"...)
	if r.Msg != "" {
		b = append(b, ' ')
		b = append(b, r.Msg...)
	}
	return b
}

// syslogTransport writes RFC 5425 frames ("LEN SP MSG") over one TLS (or,
// when insecure, plain TCP) connection, reconnecting after an error.
// Syslog has no acknowledgement: a line counts as delivered once written
// to the connection. A receiver never sends anything, so a goroutine
// reads the connection only to see it closed, and the next batch goes to
// a new connection instead of into a dead one.
type syslogTransport struct {
	name     string // the URL, for errors
	addr     string
	tls      *tls.Config // nil: plain TCP
	hostname string
	timeout  time.Duration

	mu   sync.Mutex
	conn net.Conn
	bw   *bufio.Writer
	dead chan struct{}
}

func (t *syslogTransport) connected() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.conn == nil {
		return false
	}
	select {
	case <-t.dead:
		return false
	default:
		return true
	}
}

func (t *syslogTransport) dropLocked() {
	if t.conn != nil {
		t.conn.Close()
		t.conn, t.bw = nil, nil
	}
}

func (t *syslogTransport) dial(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	var conn net.Conn
	var err error
	nd := &net.Dialer{KeepAlive: 30 * time.Second}
	if t.tls != nil {
		conn, err = (&tls.Dialer{NetDialer: nd, Config: t.tls}).DialContext(ctx, "tcp", t.addr)
	} else {
		conn, err = nd.DialContext(ctx, "tcp", t.addr)
	}
	if err != nil {
		return fmt.Errorf("connecting to %s: %w", t.name, explainTLS(err))
	}
	dead := make(chan struct{})
	crash.Go("log shipper reader", func() {
		// Never returns data; ends when the peer closes or resets.
		buf := make([]byte, 512)
		for {
			if _, err := conn.Read(buf); err != nil {
				close(dead)
				return
			}
		}
	})
	t.conn, t.bw, t.dead = conn, bufio.NewWriterSize(conn, 64<<10), dead
	return nil
}

func (t *syslogTransport) send(ctx context.Context, recs []Record) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.conn != nil {
		select {
		case <-t.dead:
			t.dropLocked()
		default:
		}
	}
	if t.conn == nil {
		if err := t.dial(ctx); err != nil {
			return err
		}
	}
	_ = t.conn.SetWriteDeadline(time.Now().Add(t.timeout))
	var msg []byte
	for _, r := range recs {
		msg = appendRFC5424(msg[:0], r, t.hostname)
		t.bw.WriteString(strconv.Itoa(len(msg)))
		t.bw.WriteByte(' ')
		t.bw.Write(msg)
	}
	if err := t.bw.Flush(); err != nil {
		t.dropLocked()
		return fmt.Errorf("writing to %s: %w", t.name, explainTLS(err))
	}
	return nil
}

func (t *syslogTransport) close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.dropLocked()
}

// explainTLS adds what to do to the certificate errors an operator can
// fix in nodeboot.json.
func explainTLS(err error) error {
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var inv x509.CertificateInvalidError
	switch {
	case errors.As(err, &ua):
		return fmt.Errorf("the endpoint's certificate is not signed by the CA in logs.remote.ca (set \"ca\" to the PEM file of the CA that signed it): %w", err)
	case errors.As(err, &he):
		return fmt.Errorf("the endpoint's certificate does not name the host in logs.remote.url (use the name the certificate holds): %w", err)
	case errors.As(err, &inv):
		return fmt.Errorf("the endpoint's certificate is not valid (expired, or the node's clock is wrong): %w", err)
	}
	return err
}
