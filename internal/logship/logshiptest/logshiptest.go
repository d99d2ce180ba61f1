// Package logshiptest holds, for tests only, a real RFC 5425 syslog
// receiver (TLS or plain TCP, frames parsed with go-syslog's RFC 5424
// parser) and the certificates it needs: the unit tests of
// internal/logship and the e2e tests send to it.
package logshiptest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"strings"
	"sync"
	"time"

	syslog "github.com/leodido/go-syslog/v4"
	"github.com/leodido/go-syslog/v4/octetcounting"
	"github.com/leodido/go-syslog/v4/rfc5424"
)

// CA is a throwaway certificate authority.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
	PEM  []byte
}

// NewCA makes a CA named name.
func NewCA(name string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// Issue makes a certificate for the given IP addresses (server and
// client use) and returns it with its key, as PEM.
func (ca *CA) Issue(name string, ips ...net.IP) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, nil, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), nil
}

// Pool is a cert pool of ca alone.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// Message is one received syslog message.
type Message struct {
	Priority, Facility, Severity int
	Timestamp                    time.Time
	Hostname, App, MsgID, Msg    string
	Err                          error // the parser's, for a malformed frame
}

// Syslog is an RFC 5425 receiver on addr. Stop and Start take it down and
// up again on the same address.
type Syslog struct {
	Addr string
	tls  *tls.Config // nil: plain TCP

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]bool
	msgs  []Message
	got   chan struct{}
	wg    sync.WaitGroup
}

// NewSyslog starts a receiver on addr ("127.0.0.1:0" for any port) with
// tlsCfg (nil: plain TCP).
func NewSyslog(addr string, tlsCfg *tls.Config) (*Syslog, error) {
	s := &Syslog{Addr: addr, tls: tlsCfg, conns: map[net.Conn]bool{}, got: make(chan struct{}, 1)}
	if err := s.Start(); err != nil {
		return nil, err
	}
	return s, nil
}

// ServerTLS is a server config with a certificate of ca for the IPs;
// clientCAs, when set, requires client certificates signed by it.
func ServerTLS(ca *CA, clientCAs *x509.CertPool, ips ...net.IP) (*tls.Config, error) {
	certPEM, keyPEM, err := ca.Issue("syslog receiver", ips...)
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	c := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if clientCAs != nil {
		c.ClientCAs, c.ClientAuth = clientCAs, tls.RequireAndVerifyClientCert
	}
	return c, nil
}

// Start listens (again) on Addr.
func (s *Syslog) Start() error {
	var ln net.Listener
	var err error
	if s.tls != nil {
		ln, err = tls.Listen("tcp", s.Addr, s.tls)
	} else {
		ln, err = net.Listen("tcp", s.Addr)
	}
	if err != nil {
		return fmt.Errorf("syslog receiver: %w", err)
	}
	s.mu.Lock()
	s.ln, s.Addr = ln, ln.Addr().String()
	s.mu.Unlock()
	s.wg.Add(1)
	go s.accept(ln)
	return nil
}

func (s *Syslog) accept(ln net.Listener) {
	defer s.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns[c] = true
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				c.Close()
			}()
			p := octetcounting.NewParser(syslog.WithListener(func(r *syslog.Result) { s.add(r) }))
			p.Parse(c)
		}()
	}
}

func (s *Syslog) add(r *syslog.Result) {
	if r.Message == nil && r.Error != nil && strings.Contains(r.Error.Error(), "found EOF, expecting a MSGLEN") {
		return // the stream ended between frames (or before any)
	}
	var m Message
	m.Err = r.Error
	if sm, ok := r.Message.(*rfc5424.SyslogMessage); ok && sm != nil {
		str := func(p *string) string {
			if p == nil {
				return ""
			}
			return *p
		}
		if sm.Priority != nil {
			m.Priority, m.Facility, m.Severity = int(*sm.Priority), int(*sm.Facility), int(*sm.Severity)
		}
		if sm.Timestamp != nil {
			m.Timestamp = *sm.Timestamp
		}
		m.Hostname, m.App, m.MsgID, m.Msg = str(sm.Hostname), str(sm.Appname), str(sm.MsgID), str(sm.Message)
	}
	s.mu.Lock()
	s.msgs = append(s.msgs, m)
	s.mu.Unlock()
	select {
	case s.got <- struct{}{}:
	default:
	}
}

// Stop closes the listener and every connection.
func (s *Syslog) Stop() {
	s.mu.Lock()
	if s.ln != nil {
		s.ln.Close()
		s.ln = nil
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// Messages returns what arrived so far.
func (s *Syslog) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

// Wait waits until cond holds for the messages so far, or timeout.
func (s *Syslog) Wait(timeout time.Duration, cond func([]Message) bool) ([]Message, bool) {
	deadline := time.After(timeout)
	for {
		if m := s.Messages(); cond(m) {
			return m, true
		}
		select {
		case <-s.got:
		case <-deadline:
			return s.Messages(), false
		}
	}
}
