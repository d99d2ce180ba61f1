package logship

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nodeboot/nodeboot/internal/contract"
	"github.com/nodeboot/nodeboot/internal/logship/logshiptest"
)

// generous bounds waits for the goroutines; nothing here measures time.
const generous = 60 * time.Second

type tlsEnv struct {
	ca   *logshiptest.CA
	recv *logshiptest.Syslog
}

func newTLSEnv(t *testing.T) *tlsEnv {
	t.Helper()
	ca, err := logshiptest.NewCA("test logs CA")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := logshiptest.ServerTLS(ca, nil, net.IPv4(127, 0, 0, 1))
	if err != nil {
		t.Fatal(err)
	}
	recv, err := logshiptest.NewSyslog("127.0.0.1:0", srv)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(recv.Stop)
	return &tlsEnv{ca: ca, recv: recv}
}

func (e *tlsEnv) config(dir string) Config {
	return Config{
		Endpoint: Endpoint{Name: "syslog+tls://" + e.recv.Addr, Kind: Syslog, Addr: e.recv.Addr,
			TLS: &tls.Config{RootCAs: e.ca.Pool(), MinVersion: tls.VersionTLS12}},
		Dir: dir, Cap: 16 << 20, Hostname: "edge-1",
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
	}
}

// start starts a shipper and stops it (waiting) at the test's end.
func start(t *testing.T, cfg Config) (*Shipper, context.CancelFunc) {
	t.Helper()
	s := New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	stop := func() {
		cancel()
		<-s.Done()
	}
	t.Cleanup(stop)
	return s, stop
}

func waitStatus(t *testing.T, s *Shipper, what string, cond func(contract.LogsStatus) bool) contract.LogsStatus {
	t.Helper()
	deadline := time.Now().Add(generous)
	for {
		st := s.Status()
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: status %+v", what, st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func count(n int) func([]logshiptest.Message) bool {
	return func(m []logshiptest.Message) bool { return len(m) >= n }
}

func line(i int) string { return fmt.Sprintf("line %05d", i) }

// checkSeq checks that msgs are line(from) .. line(to-1), in order.
func checkSeq(t *testing.T, msgs []logshiptest.Message, from, to int) {
	t.Helper()
	if len(msgs) != to-from {
		t.Fatalf("got %d messages, want %d (lines %d..%d)", len(msgs), to-from, from, to-1)
	}
	for i, m := range msgs {
		if m.Err != nil {
			t.Fatalf("message %d did not parse: %v", i, m.Err)
		}
		if want := line(from + i); m.Msg != want {
			t.Fatalf("message %d is %q, want %q (order or loss)", i, m.Msg, want)
		}
	}
}

func TestSyslogTLSDeliversInOrder(t *testing.T) {
	env := newTLSEnv(t)
	s, _ := start(t, env.config(t.TempDir()))
	ts := time.Date(2026, 12, 3, 10, 0, 0, 123456000, time.UTC)
	s.Add(Record{Time: ts, Stream: Init, Msg: "init says hello"})
	s.Add(Record{Time: ts, Stream: Stdout, App: "web", Msg: "listening"})
	s.Add(Record{Time: ts, Stream: Stderr, App: "web", Msg: "oops: ünïcode"})
	s.Add(Record{Time: ts, Stream: Stdout, App: "worker", Msg: ""})
	msgs, ok := env.recv.Wait(generous, count(4))
	if !ok {
		t.Fatalf("got %d messages of 4", len(msgs))
	}
	want := []logshiptest.Message{
		{Priority: 30, Facility: 3, Severity: 6, Timestamp: ts, Hostname: "edge-1", App: "nodeboot", MsgID: "init", Msg: "init says hello"},
		{Priority: 14, Facility: 1, Severity: 6, Timestamp: ts, Hostname: "edge-1", App: "web", MsgID: "stdout", Msg: "listening"},
		{Priority: 11, Facility: 1, Severity: 3, Timestamp: ts, Hostname: "edge-1", App: "web", MsgID: "stderr", Msg: "oops: ünïcode"},
		{Priority: 14, Facility: 1, Severity: 6, Timestamp: ts, Hostname: "edge-1", App: "worker", MsgID: "stdout", Msg: ""},
	}
	for i, w := range want {
		g := msgs[i]
		if g.Err != nil || !g.Timestamp.Equal(w.Timestamp) {
			t.Errorf("message %d: %+v", i, g)
		}
		g.Timestamp, w.Timestamp = time.Time{}, time.Time{}
		if g != w {
			t.Errorf("message %d:\n got %+v\nwant %+v", i, g, w)
		}
	}

	// Many lines, from several writers: all arrive, each writer's in order.
	const n = 3000
	for i := 0; i < n; i++ {
		s.Add(Record{Stream: Stdout, App: "web", Msg: line(i)})
	}
	msgs, ok = env.recv.Wait(generous, count(4+n))
	if !ok {
		t.Fatalf("got %d of %d", len(msgs), 4+n)
	}
	checkSeq(t, msgs[4:], 0, n)
	st := waitStatus(t, s, "delivered count", func(st contract.LogsStatus) bool { return st.Delivered == 4+n })
	if !st.Connected || st.BufferedLines != 0 || st.Dropped != 0 || st.LastError != "" {
		t.Errorf("status after delivery: %+v", st)
	}
}

func TestSyslogEndpointDownThenUp(t *testing.T) {
	env := newTLSEnv(t)
	s, _ := start(t, env.config(t.TempDir()))
	for i := 0; i < 10; i++ {
		s.Add(Record{Stream: Stdout, App: "web", Msg: line(i)})
	}
	if _, ok := env.recv.Wait(generous, count(10)); !ok {
		t.Fatal("first lines not delivered")
	}
	env.recv.Stop()
	waitStatus(t, s, "the connection seen closed", func(st contract.LogsStatus) bool { return !st.Connected })
	for i := 10; i < 500; i++ {
		s.Add(Record{Stream: Stdout, App: "web", Msg: line(i)})
	}
	st := waitStatus(t, s, "a delivery error and buffered lines", func(st contract.LogsStatus) bool {
		return st.LastError != "" && st.BufferedLines == 490
	})
	if !strings.Contains(st.LastError, "connecting to syslog+tls://") || st.BufferedBytes <= 0 {
		t.Errorf("status while down: %+v", st)
	}
	if err := env.recv.Start(); err != nil {
		t.Fatal(err)
	}
	msgs, ok := env.recv.Wait(generous, count(500))
	if !ok {
		t.Fatalf("after the endpoint returned: %d of 500", len(msgs))
	}
	checkSeq(t, msgs, 0, 500)
	waitStatus(t, s, "connected, buffer empty", func(st contract.LogsStatus) bool {
		return st.Connected && st.BufferedLines == 0 && st.Delivered == 500
	})
}

// A port nothing listens on: the endpoint is down.
func deadAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().String()
	ln.Close()
	return a
}

func TestCapDropsOldestAndSaysSo(t *testing.T) {
	addr := deadAddr(t)
	cfg := Config{
		Endpoint:   Endpoint{Name: "syslog+tcp://" + addr, Kind: Syslog, Addr: addr},
		Dir:        t.TempDir(),
		Cap:        64 << 10,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
	}
	s, _ := start(t, cfg)
	const n = 3000
	pad := strings.Repeat("x", 60)
	for i := 0; i < n; i++ {
		s.Add(Record{Stream: Stdout, App: "web", Msg: line(i) + pad})
	}
	// The status counts lines still queued in memory as buffered too; the
	// cap is the disk buffer's, so wait until the queue reached the disk
	// (checking the cap earlier failed now and then with the queue full).
	st := waitStatus(t, s, "every line buffered on disk or dropped", func(st contract.LogsStatus) bool {
		return int64(st.Dropped)+st.BufferedLines == n && st.BufferedLines > 0 && queueEmpty(s)
	})
	if st.Dropped == 0 || st.BufferedBytes > cfg.Cap {
		t.Fatalf("over the cap: %+v", st)
	}
	recv, err := logshiptest.NewSyslog(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer recv.Stop()
	kept := int(st.BufferedLines)
	msgs, ok := recv.Wait(generous, count(1+kept))
	if !ok {
		t.Fatalf("got %d of %d", len(msgs), 1+kept)
	}
	want := fmt.Sprintf("log shipper: %d lines dropped (the buffer on /data was full)", st.Dropped)
	if msgs[0].Msg != want || msgs[0].MsgID != "notice" || msgs[0].Severity != 4 {
		t.Fatalf("first message %+v, want the notice %q", msgs[0], want)
	}
	// The newest lines are kept, the oldest dropped.
	for i := range msgs[1:] {
		msgs[1+i].Msg = strings.TrimSuffix(msgs[1+i].Msg, pad)
	}
	checkSeq(t, msgs[1:], n-kept, n)
}

func TestRestartKeepsBufferAndCursor(t *testing.T) {
	env := newTLSEnv(t)
	dir := t.TempDir()
	cfg := env.config(dir)
	// First boot: 50 lines delivered, then the endpoint goes away and 50
	// more wait in the buffer when the node stops.
	s, stop := start(t, cfg)
	for i := 0; i < 50; i++ {
		s.Add(Record{Stream: Stdout, App: "web", Msg: line(i)})
	}
	if _, ok := env.recv.Wait(generous, count(50)); !ok {
		t.Fatal("first lines not delivered")
	}
	waitStatus(t, s, "delivered", func(st contract.LogsStatus) bool { return st.Delivered == 50 })
	env.recv.Stop()
	waitStatus(t, s, "disconnected", func(st contract.LogsStatus) bool { return !st.Connected })
	for i := 50; i < 100; i++ {
		s.Add(Record{Stream: Stdout, App: "web", Msg: line(i)})
	}
	waitStatus(t, s, "buffered", func(st contract.LogsStatus) bool { return st.BufferedLines == 50 && st.LastError != "" })
	stop()

	// Second boot: the buffer is sent first, without the lines already
	// delivered, then the new lines.
	if err := env.recv.Start(); err != nil {
		t.Fatal(err)
	}
	s2, _ := start(t, cfg)
	if st := s2.Status(); st.BufferedLines != 50 {
		t.Errorf("reopened buffer holds %d lines, want 50", st.BufferedLines)
	}
	for i := 100; i < 120; i++ {
		s2.Add(Record{Stream: Stdout, App: "web", Msg: line(i)})
	}
	msgs, ok := env.recv.Wait(generous, count(120))
	if !ok {
		t.Fatalf("got %d of 120", len(msgs))
	}
	checkSeq(t, msgs, 0, 120)
}

func TestCorruptBufferIsSkippedNotFatal(t *testing.T) {
	dir := t.TempDir()
	addr := deadAddr(t)
	cfg := Config{
		Endpoint: Endpoint{Name: "syslog+tcp://" + addr, Kind: Syslog, Addr: addr},
		Dir:      dir, Cap: 1 << 20,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
	}
	s, stop := start(t, cfg)
	for i := 0; i < 100; i++ {
		s.Add(Record{Stream: Stdout, App: "web", Msg: line(i)})
	}
	waitStatus(t, s, "buffered", func(st contract.LogsStatus) bool { return st.BufferedLines == 100 })
	stop()

	segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	var seg string
	for _, p := range segs {
		if fi, _ := os.Stat(p); fi.Size() > 0 {
			seg = p
		}
	}
	b, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	// Damage record 40 (every record here has the same size), and leave
	// a torn write and a garbage cursor behind.
	recSize := len(b) / 100
	b[40*recSize+frameHeader+3] ^= 0xff
	b = append(b, 0x20, 0, 0)
	if err := os.WriteFile(seg, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, cursorFile), []byte("\x00garbage\xff"), 0o600); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "ffff.seg"), []byte("not a segment name we write"), 0o600)

	recv, err := logshiptest.NewSyslog(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer recv.Stop()
	s2, _ := start(t, cfg)
	s2.Add(Record{Stream: Stdout, App: "web", Msg: "after"})
	msgs, ok := recv.Wait(generous, count(42))
	if !ok {
		t.Fatalf("got %d messages", len(msgs))
	}
	checkSeq(t, msgs[:40], 0, 40)
	skipped := int64(len(b) - 40*recSize)
	if want := fmt.Sprintf("log shipper: %d bytes of the buffer unreadable and skipped", skipped); msgs[40].Msg != want {
		t.Errorf("notice %q, want %q", msgs[40].Msg, want)
	}
	if msgs[41].Msg != "after" {
		t.Errorf("then %q, want the new line", msgs[41].Msg)
	}
}

func TestWrongCARefusedWithClearError(t *testing.T) {
	env := newTLSEnv(t)
	other, err := logshiptest.NewCA("another CA")
	if err != nil {
		t.Fatal(err)
	}
	cfg := env.config(t.TempDir())
	cfg.Endpoint.TLS.RootCAs = other.Pool()
	s, _ := start(t, cfg)
	s.Add(Record{Stream: Stdout, App: "web", Msg: "secret"})
	st := waitStatus(t, s, "a TLS error", func(st contract.LogsStatus) bool { return st.LastError != "" })
	if !strings.Contains(st.LastError, "not signed by the CA in logs.remote.ca") || !strings.Contains(st.LastError, "certificate signed by unknown authority") {
		t.Errorf("error %q does not say the CA is wrong", st.LastError)
	}
	if st.Connected || st.Delivered != 0 || st.BufferedLines != 1 {
		t.Errorf("status %+v", st)
	}
	if m := env.recv.Messages(); len(m) != 0 {
		t.Errorf("the receiver got %v", m)
	}
}

// An endpoint that requires a client certificate: until the node has one
// nothing is sent (a TLS 1.3 server would refuse it only after the lines
// were written, and they would be lost) and the status says how to give
// one; once written, Reconnect delivers what waited.
func TestClientCertificate(t *testing.T) {
	ca, err := logshiptest.NewCA("logs CA")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := logshiptest.ServerTLS(ca, ca.Pool(), net.IPv4(127, 0, 0, 1))
	if err != nil {
		t.Fatal(err)
	}
	recv, err := logshiptest.NewSyslog("127.0.0.1:0", srv)
	if err != nil {
		t.Fatal(err)
	}
	defer recv.Stop()
	certPEM, keyPEM, err := ca.Issue("node")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "client", "client.pem")
	cfg := Config{
		Endpoint: Endpoint{Name: "syslog+tls://" + recv.Addr, Kind: Syslog, Addr: recv.Addr,
			TLS: &tls.Config{RootCAs: ca.Pool(), GetClientCertificate: ClientCertFile(file)}},
		Dir: t.TempDir(), Cap: 1 << 20, MinBackoff: time.Hour, MaxBackoff: time.Hour,
	}
	s, _ := start(t, cfg)
	s.Add(Record{Stream: Stdout, App: "web", Msg: line(0)})
	st := waitStatus(t, s, "the refusal", func(st contract.LogsStatus) bool { return st.LastError != "" })
	if !strings.Contains(st.LastError, "asks for a client certificate and this node has none") || !strings.Contains(st.LastError, "nodeboot logs login") {
		t.Errorf("error without a certificate: %q", st.LastError)
	}
	if m := recv.Messages(); len(m) != 0 {
		t.Fatalf("the receiver got %v without a client certificate", m)
	}
	if _, err := ParseClientCert(certPEM, keyPEM, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := WriteClientCert(file, certPEM, keyPEM); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o400 {
		t.Fatalf("stored pair: %v %v", fi, err)
	}
	if fi, err := os.Stat(filepath.Dir(file)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("its directory: %v %v", fi, err)
	}
	if d := DescribeClientCert(file); !strings.Contains(d, "CN=node") || !strings.Contains(d, "valid until") {
		t.Errorf("described as %q", d)
	}
	s.Reconnect()
	msgs, ok := recv.Wait(generous, count(1))
	if !ok {
		t.Fatalf("not delivered with a client certificate: %+v", s.Status())
	}
	checkSeq(t, msgs, 0, 1)
}

func TestAddNeverBlocks(t *testing.T) {
	// Not started: nothing drains the queue. Add still returns, keeping
	// the newest lines within the bound and counting the rest.
	s := New(Config{Endpoint: Endpoint{Kind: Syslog, Addr: "127.0.0.1:1"}, Cap: 1 << 20})
	big := strings.Repeat("y", 1000)
	for i := 0; i < 10000; i++ {
		s.Add(Record{Stream: Stdout, App: "web", Msg: big})
	}
	st := s.Status()
	if st.Dropped == 0 || st.BufferedBytes > int64(s.qlimit) || int64(st.Dropped)+st.BufferedLines != 10000 {
		t.Errorf("status %+v (queue bound %d)", st, s.qlimit)
	}
}

func TestRFC5424Header(t *testing.T) {
	r := Record{Time: time.Date(2026, 1, 2, 3, 4, 5, 6000, time.FixedZone("x", 3600)), Stream: Stderr, App: "a b", Msg: "m"}
	got := string(appendRFC5424(nil, r, "héllo"))
	want := "<11>1 2026-01-02T02:04:05.000006Z h__llo a_b - stderr - m"
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	if got := string(appendRFC5424(nil, Record{Time: r.Time, Msg: ""}, "")); !bytes.HasSuffix([]byte(got), []byte(" - nodeboot - init -")) {
		t.Errorf("empty message: %q", got)
	}
}

func TestStopKeepsQueuedLinesForTheNextBoot(t *testing.T) {
	addr := deadAddr(t)
	cfg := Config{
		Endpoint: Endpoint{Name: "syslog+tcp://" + addr, Kind: Syslog, Addr: addr},
		Dir:      t.TempDir(), Cap: 1 << 20, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
	}
	s := New(cfg)
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 200; i++ {
		s.Add(Record{Stream: Stdout, App: "web", Msg: line(i)})
	}
	s.Stop(generous)
	select {
	case <-s.Done():
	default:
		t.Fatal("Stop returned before the shipper stopped")
	}
	recv, err := logshiptest.NewSyslog(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer recv.Stop()
	start(t, cfg)
	msgs, ok := recv.Wait(generous, count(200))
	if !ok {
		t.Fatalf("got %d of 200", len(msgs))
	}
	checkSeq(t, msgs, 0, 200)
}

func queueEmpty(s *Shipper) bool {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	return len(s.queue) == 0
}

// The endpoint cannot be reached until the node's network is up; PID 1
// then calls NetworkUp, and the first delivery must not wait out the
// backoff the failures before it built up (an hour here, so only the
// wake can deliver within the test's wait).
func TestNetworkUpEndsTheBackoff(t *testing.T) {
	env := newTLSEnv(t)
	env.recv.Stop()
	cfg := env.config(t.TempDir())
	cfg.MinBackoff, cfg.MaxBackoff = time.Hour, time.Hour
	s, _ := start(t, cfg)
	s.Add(Record{Stream: Init, Msg: "booting"})
	waitStatus(t, s, "a failed delivery", func(st contract.LogsStatus) bool { return st.LastError != "" })
	if err := env.recv.Start(); err != nil {
		t.Fatal(err)
	}
	s.NetworkUp()
	msgs, ok := env.recv.Wait(generous, count(1))
	if !ok {
		t.Fatalf("after NetworkUp: %d messages delivered, want 1 (still in the backoff)", len(msgs))
	}
	if msgs[0].Msg != "booting" {
		t.Errorf("delivered %q", msgs[0].Msg)
	}
}

// stuckTransport is an endpoint whose send never returns until released,
// whatever the context: a write blocked on a peer that stopped reading.
type stuckTransport struct {
	entered chan struct{}
	release chan struct{}
}

func (t *stuckTransport) send(ctx context.Context, recs []Record) error {
	select {
	case t.entered <- struct{}{}:
	default:
	}
	<-t.release
	return errors.New("released")
}
func (t *stuckTransport) connected() bool { return false }
func (t *stuckTransport) close()          {}

// TestStopClosesTheBufferPastAStuckSend: at power-off Stop returns after
// its timeout even while a send is stuck, and the buffer's files are closed
// by then, or /data could not be unmounted; the shipper writes no file
// there afterwards.
func TestStopClosesTheBufferPastAStuckSend(t *testing.T) {
	dir := t.TempDir()
	s := New(Config{Endpoint: Endpoint{Name: "stuck", Kind: Syslog, Addr: "127.0.0.1:9"}, Dir: dir, Cap: 1 << 20})
	tr := &stuckTransport{entered: make(chan struct{}, 1), release: make(chan struct{})}
	s.tr = tr
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	s.Add(Record{Stream: Stdout, App: "web", Msg: line(0)})
	<-tr.entered
	s.Add(Record{Stream: Stdout, App: "web", Msg: line(1)})
	s.Stop(100 * time.Millisecond)
	if open := openUnder(t, dir); len(open) > 0 {
		t.Errorf("after Stop the shipper still holds %q open", open)
	}
	close(tr.release)
	<-s.Done()
	if open := openUnder(t, dir); len(open) > 0 {
		t.Errorf("after the send returned the shipper holds %q open", open)
	}
}

// openUnder lists this process's open files under dir.
func openUnder(t *testing.T, dir string) []string {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	var out []string
	for _, fd := range fds {
		if p, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); err == nil && strings.HasPrefix(p, dir+"/") {
			out = append(out, p)
		}
	}
	return out
}
