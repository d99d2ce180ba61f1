package pid1

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/nodeboot/nodeboot/internal/api"
	"github.com/nodeboot/nodeboot/internal/boot"
	"github.com/nodeboot/nodeboot/internal/contract"
	"github.com/nodeboot/nodeboot/internal/logship"
	"github.com/nodeboot/nodeboot/internal/spec"
)

// Remote logs (nodeboot.json "logs.remote"; internal/logship,
// docs/logs.md): PID 1's log lines reach the shipper through the
// logger's tee, each app's through one more writer beside the console
// and its log file. Both only queue in memory, so neither the apps nor
// PID 1 wait for /data or the network.

var shipping struct {
	sync.Mutex
	s   *logship.Shipper
	url string
	err error // why the shipper could not be set up
}

// startLogShipping starts the shipper when the image has logs.remote.
// It runs after /data is mounted (the buffer lives there) and before the
// apps start, so their first lines are shipped.
func startLogShipping(ctx context.Context, log *boot.Logger, rt *spec.Runtime) {
	if rt == nil || rt.Logs == nil {
		return
	}
	s, err := newShipper(log, rt.Logs)
	shipping.Lock()
	shipping.s, shipping.url, shipping.err = s, rt.Logs.URL, err
	shipping.Unlock()
	if err != nil {
		log.Printf("remote logs: %v: lines are not shipped", err)
		return
	}
	log.SetTee(func(msg string) { s.Add(logship.Record{Stream: logship.Init, Msg: msg}) })
	if err := s.Start(ctx); err != nil {
		log.Printf("remote logs: %v: lines wait in memory (bounded)", err)
		return
	}
	where := "on /data"
	if isTmpfs("/data") {
		where = "in RAM (/data is a tmpfs): a reboot loses what is not sent"
	}
	log.Printf("remote logs: shipping to %s, up to %d MiB buffered %s", rt.Logs.URL, rt.Logs.BufferBytes>>20, where)
}

func newShipper(log *boot.Logger, l *spec.RuntimeLogs) (*logship.Shipper, error) {
	e, err := spec.ParseLogsURL(l.URL, l.Insecure)
	if err != nil {
		return nil, err
	}
	ep := logship.Endpoint{Name: l.URL, Addr: e.Addr()}
	if e.Proto == "otlp" {
		ep.Kind, ep.URL = logship.OTLP, e.HTTPURL()
	}
	if e.TLS {
		ep.TLS, err = logsTLS(e.Host)
		if err != nil {
			return nil, err
		}
	}
	host, _ := os.Hostname()
	return logship.New(logship.Config{
		Endpoint: ep,
		Dir:      contract.LogsSpool,
		Cap:      l.BufferBytes,
		Hostname: host,
		Log:      log.Printf,
	}), nil
}

// logsTLS is the client side of the endpoint's TLS: its CA from the
// image, and the client certificate `nodeboot logs login` gave the node
// (on /data, read at each connection), presented when the endpoint asks.
func logsTLS(host string) (*tls.Config, error) {
	ca, err := os.ReadFile(contract.LogsCA)
	if err != nil {
		return nil, fmt.Errorf("the endpoint's CA: %w (rebuild the image)", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("%s holds no certificate (rebuild the image)", contract.LogsCA)
	}
	return &tls.Config{RootCAs: pool, ServerName: host, MinVersion: tls.VersionTLS12,
		GetClientCertificate: logship.ClientCertFile(contract.LogsClientFile)}, nil
}

// The API's PUT and DELETE /v1/logs/auth answer 501 for a node that is
// not one; this one must be.
var _ api.LogsAuthNode = (*node)(nil)

// shippingTLS is the endpoint's URL when the node ships its logs over
// TLS, the only case where a client certificate means anything.
func shippingTLS() (string, error) {
	shipping.Lock()
	s, url := shipping.s, shipping.url
	shipping.Unlock()
	if s == nil && url == "" {
		return "", fmt.Errorf("%w: nodeboot.json has no \"logs\": {\"remote\": ...}", api.ErrNoRemoteLogs)
	}
	if e, err := spec.ParseLogsURL(url, true); err == nil && !e.TLS {
		return "", fmt.Errorf("%w: %s is plain text; a client certificate is for syslog+tls:// or otlp+https://", api.ErrNoRemoteLogs, url)
	}
	return url, nil
}

// SetLogsClientCert implements api.LogsAuthNode: the API checked the
// pair; it is kept on /data (never in the image) and the shipper
// reconnects with it at once.
func (n *node) SetLogsClientCert(ctx context.Context, c contract.LogsClientCredentials) (*contract.LogsAuthResult, error) {
	url, err := shippingTLS()
	if err != nil {
		return nil, err
	}
	leaf, err := logship.ParseClientCert([]byte(c.Cert), []byte(c.Key), time.Now())
	if err != nil {
		return nil, err
	}
	if err := logship.WriteClientCert(contract.LogsClientFile, []byte(c.Cert), []byte(c.Key)); err != nil {
		return nil, fmt.Errorf("storing the client certificate on /data: %w", err)
	}
	n.log.Printf("remote logs: client certificate %s set (valid until %s)", leaf.Subject, leaf.NotAfter.UTC().Format(time.RFC3339))
	logsReconnect()
	return &contract.LogsAuthResult{Endpoint: url, Subject: leaf.Subject.String(), NotAfter: leaf.NotAfter}, nil
}

// RemoveLogsClientCert implements api.LogsAuthNode.
func (n *node) RemoveLogsClientCert(ctx context.Context) (*contract.LogsAuthResult, error) {
	url, err := shippingTLS()
	if err != nil {
		return nil, err
	}
	if err := os.Remove(contract.LogsClientFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("removing the client certificate: %w", err)
	}
	n.log.Printf("remote logs: client certificate removed")
	logsReconnect()
	return &contract.LogsAuthResult{Endpoint: url}, nil
}

func logsReconnect() {
	shipping.Lock()
	s := shipping.s
	shipping.Unlock()
	if s != nil {
		s.Reconnect()
	}
}

// appLogWriter is the shipper's writer among an app's console writers
// (nil when nothing is shipped). The supervisor writes one whole line per
// Write, prefixed "name: " (stdout) or "name[err]: " (stderr).
func appLogWriter(app string) io.Writer {
	shipping.Lock()
	s := shipping.s
	shipping.Unlock()
	if s == nil {
		return nil
	}
	return shipWriter{add: s.Add, app: app}
}

type shipWriter struct {
	add func(logship.Record)
	app string
}

func (w shipWriter) Write(p []byte) (int, error) {
	line := strings.TrimSuffix(string(p), "\n")
	st := logship.Stdout
	if rest, ok := strings.CutPrefix(line, w.app+"[err]: "); ok {
		line, st = rest, logship.Stderr
	} else if rest, ok := strings.CutPrefix(line, w.app+"[init]: "); ok {
		line, st = rest, logship.Init
	} else {
		line = strings.TrimPrefix(line, w.app+": ")
	}
	w.add(logship.Record{Stream: st, App: w.app, Msg: line})
	return len(p), nil
}

// logsNetworkUp ends the shipper's backoff: its first lines were tried
// before the network was configured.
func logsNetworkUp() {
	shipping.Lock()
	s := shipping.s
	shipping.Unlock()
	if s != nil {
		s.NetworkUp()
	}
}

// stopLogShipping moves the queued lines to the buffer on /data (sent
// after the next boot) and closes it, at most timeout.
func stopLogShipping(timeout time.Duration) {
	shipping.Lock()
	s := shipping.s
	shipping.Unlock()
	if s != nil {
		s.Stop(timeout)
	}
}

// logsStatus is the shipper's part of GET /v1/status; nil when the node
// ships nothing.
func logsStatus() *contract.LogsStatus {
	shipping.Lock()
	s, url, err := shipping.s, shipping.url, shipping.err
	shipping.Unlock()
	switch {
	case s != nil:
		st := s.Status()
		st.ClientCert = logship.DescribeClientCert(contract.LogsClientFile)
		return &st
	case err != nil:
		return &contract.LogsStatus{Endpoint: url, LastError: err.Error()}
	}
	return nil
}
