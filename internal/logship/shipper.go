package logship

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/nodeboot/nodeboot/internal/contract"
	"github.com/nodeboot/nodeboot/internal/crash"
)

// Kind is the endpoint's protocol.
type Kind int

const (
	Syslog Kind = iota // RFC 5424 messages, RFC 5425 framing
	OTLP               // OTLP/HTTP protobuf
)

// Endpoint says where lines go.
type Endpoint struct {
	// Name is the configured URL, shown in status and errors.
	Name string
	Kind Kind
	// Addr is host:port (Syslog); URL the full http(s) URL of the logs
	// path (OTLP).
	Addr string
	URL  string
	// TLS is the client configuration (CA, client certificate); nil
	// talks plain TCP or HTTP (nodeboot.json "insecure").
	TLS *tls.Config
}

// Config configures a Shipper.
type Config struct {
	Endpoint Endpoint
	// Dir holds the buffer (contract.LogsSpool on a node).
	Dir string
	// Cap bounds the buffer in bytes.
	Cap int64
	// Hostname is the node's, sent with every line.
	Hostname string
	// MinBackoff and MaxBackoff bound the wait between delivery attempts
	// (defaults 1 s and 1 min).
	MinBackoff, MaxBackoff time.Duration
	// Timeout bounds a connect or a write (default 30 s).
	Timeout time.Duration
	// Log receives the shipper's changes of state (connected, lost);
	// never called with a lock held, so it may log back into the shipper.
	Log func(format string, args ...any)
}

const (
	// batchBytes bounds one delivery: small enough for any OTLP
	// endpoint's request limit, big enough to catch up quickly.
	batchBytes = 256 << 10
	// queueBytes bounds the lines waiting in memory for the buffer on
	// /data (before it is open, or while a write is slow).
	queueBytes = 1 << 20
)

// Shipper sends log lines to an endpoint through a buffer on disk.
type Shipper struct {
	cfg Config
	tr  transport

	qmu      sync.Mutex
	queue    []Record
	queued   int
	qlimit   int
	qdropped uint64
	qunsaid  uint64 // lines dropped from the queue, not yet said in the stream
	refused  uint64 // lines the endpoint refused for good, not yet said
	wake     chan struct{}
	netUp    chan struct{} // NetworkUp; ends a backoff

	sp      *spool
	spWake  chan struct{}
	smu     sync.Mutex
	deliv   uint64
	lastErr string
	errAt   time.Time
	failing bool
	done    chan struct{}
	cancel  context.CancelFunc
}

type transport interface {
	send(ctx context.Context, recs []Record) error
	connected() bool
	close()
}

// New makes a shipper. Add works at once (lines wait in memory); Start
// opens the buffer and begins sending.
func New(cfg Config) *Shipper {
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = time.Second
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(time.Minute, cfg.MinBackoff)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	s := &Shipper{
		cfg:    cfg,
		qlimit: int(min(int64(queueBytes), max(cfg.Cap/4, 64<<10))),
		wake:   make(chan struct{}, 1),
		netUp:  make(chan struct{}, 1),
		spWake: make(chan struct{}, 1),
		done:   make(chan struct{}),
	}
	ep := cfg.Endpoint
	switch ep.Kind {
	case OTLP:
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.Proxy = nil
		tr.TLSClientConfig = ep.TLS
		tr.TLSHandshakeTimeout = cfg.Timeout
		s.tr = &otlpTransport{name: ep.Name, url: ep.URL, hostname: cfg.Hostname,
			client: &http.Client{Transport: tr, Timeout: cfg.Timeout}}
	default:
		s.tr = &syslogTransport{name: ep.Name, addr: ep.Addr, tls: ep.TLS, hostname: cfg.Hostname, timeout: cfg.Timeout}
	}
	return s
}

// Add queues one line. It never blocks: past the memory queue's bound
// the oldest queued lines are dropped and counted.
func (s *Shipper) Add(r Record) {
	if r.Time.IsZero() {
		r.Time = time.Now()
	}
	size := frameHeader + bodyFixed + len(r.App) + len(r.Msg)
	s.qmu.Lock()
	for s.queued+size > s.qlimit && len(s.queue) > 0 {
		old := s.queue[0]
		s.queue = s.queue[1:]
		s.queued -= frameHeader + bodyFixed + len(old.App) + len(old.Msg)
		s.qdropped++
		s.qunsaid++
	}
	s.queue = append(s.queue, r)
	s.queued += size
	s.qmu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Start opens the buffer in cfg.Dir and sends until ctx ends. A buffer
// that cannot be opened is an error (the lines stay in memory, bounded).
func (s *Shipper) Start(ctx context.Context) error {
	sp, err := openSpool(s.cfg.Dir, s.cfg.Cap)
	if err != nil {
		s.setErr(err)
		return err
	}
	s.sp = sp
	ctx, s.cancel = context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(2)
	crash.Go("log buffer", func() { defer wg.Done(); s.spoolLoop(ctx) })
	crash.Go("log shipper", func() { defer wg.Done(); s.sendLoop(ctx) })
	crash.Go("log shipper close", func() {
		wg.Wait()
		s.tr.close()
		sp.close()
		close(s.done)
	})
	return nil
}

// Done is closed once the shipper stopped after its context ended.
func (s *Shipper) Done() <-chan struct{} { return s.done }

// Stop moves the lines still queued in memory to the buffer, so they are
// sent after the next boot, then stops the shipper and closes its files
// (before /data is unmounted). It waits at most timeout: a write to a
// stuck endpoint must not hold a power-off.
func (s *Shipper) Stop(timeout time.Duration) {
	if s.cancel == nil {
		return
	}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		s.qmu.Lock()
		n := len(s.queue)
		s.qmu.Unlock()
		if n == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.cancel()
	select {
	case <-s.done:
	case <-time.After(time.Until(deadline)):
		// A send stuck on the endpoint (a write blocks up to
		// cfg.Timeout) keeps the loops running: close the buffer
		// now all the same, or its open segment keeps /data from
		// being unmounted at power-off. What the send then delivers
		// is not recorded, so it is sent again after the next boot.
		s.sp.close()
	}
}

// spoolLoop moves queued lines to the buffer on disk.
func (s *Shipper) spoolLoop(ctx context.Context) {
	for {
		s.qmu.Lock()
		batch := s.queue
		s.queue, s.queued = nil, 0
		s.qmu.Unlock()
		if len(batch) > 0 {
			if err := s.sp.append(batch); err != nil {
				s.setErr(err)
			}
			select {
			case s.spWake <- struct{}{}:
			default:
			}
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		}
	}
}

// sendLoop sends the buffer, oldest first, a batch at a time. A failed
// batch is read again from the buffer after the backoff (not kept in
// memory), so the lines arrive in order, and lines the cap dropped
// meanwhile are not sent after all.
func (s *Shipper) sendLoop(ctx context.Context) {
	attempt := 0
	for ctx.Err() == nil {
		recs, pos, err := s.sp.next(batchBytes)
		if err != nil {
			s.setErr(err)
			if !sleep(ctx, s.cfg.MaxBackoff) {
				return
			}
			continue
		}
		if len(recs) == 0 {
			select {
			case <-ctx.Done():
				return
			case <-s.spWake:
			}
			continue
		}
		// Dropped lines are said in the stream, where they are missing.
		s.qmu.Lock()
		qd, rf := s.qunsaid, s.refused
		s.qmu.Unlock()
		dl, sk := s.sp.unsaidCounts()
		if qd+dl+rf > 0 || sk > 0 {
			recs = append([]Record{notice(qd+dl, rf, sk)}, recs...)
		}
		err = s.tr.send(ctx, recs)
		if ctx.Err() != nil {
			return
		}
		switch {
		case err == nil:
			s.delivered(len(recs))
			attempt = 0
			// A network-up while delivery works is news to nobody:
			// it must not cut short the backoff of a later outage.
			select {
			case <-s.netUp:
			default:
			}
		case errors.Is(err, errPermanent):
			s.setErr(err)
			n := uint64(0)
			for _, r := range recs {
				if r.Stream != Notice {
					n++
				}
			}
			s.qmu.Lock()
			s.qdropped += n
			s.refused += n
			s.qmu.Unlock()
		default:
			s.setErr(err)
			woken, ok := s.backoffSleep(ctx, backoff(attempt, s.cfg.MinBackoff, s.cfg.MaxBackoff))
			if !ok {
				return
			}
			if woken {
				attempt = 0
			} else {
				attempt++
			}
			continue
		}
		s.qmu.Lock()
		s.qunsaid -= min(qd, s.qunsaid)
		s.refused -= min(rf, s.refused)
		s.qmu.Unlock()
		s.sp.said(dl, sk)
		if err := s.sp.commit(pos); err != nil {
			s.setErr(err)
		}
	}
}

func notice(full, refused uint64, skipped int64) Record {
	var parts []string
	if full > 0 {
		parts = append(parts, fmt.Sprintf("%d lines dropped (the buffer on /data was full)", full))
	}
	if refused > 0 {
		parts = append(parts, fmt.Sprintf("%d lines refused by the endpoint and dropped", refused))
	}
	if skipped > 0 {
		parts = append(parts, fmt.Sprintf("%d bytes of the buffer unreadable and skipped", skipped))
	}
	return Record{Time: time.Now(), Stream: Notice, Msg: "log shipper: " + strings.Join(parts, ", ")}
}

func backoff(attempt int, lo, hi time.Duration) time.Duration {
	d := lo
	for i := 0; i < attempt && d < hi; i++ {
		d *= 2
	}
	return min(d, hi)
}

// Reconnect drops the connection and tries the waiting lines at once:
// the client certificate changed (`nodeboot logs login`), and the next
// connection presents the new one.
func (s *Shipper) Reconnect() {
	s.tr.close()
	s.NetworkUp()
}

// backoffSleep waits d, or less when the network comes up (woken).
// A NetworkUp that came while the failed batch was being sent counts:
// it may be the very reason the batch failed.
func (s *Shipper) backoffSleep(ctx context.Context, d time.Duration) (woken, ok bool) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false, false
	case <-s.netUp:
		return true, true
	case <-t.C:
		return false, true
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (s *Shipper) delivered(n int) {
	s.smu.Lock()
	s.deliv += uint64(n)
	was := s.failing
	s.failing = false
	s.smu.Unlock()
	if was && s.cfg.Log != nil {
		s.cfg.Log("log shipper: delivering to %s again", s.cfg.Endpoint.Name)
	}
}

// setErr records err; the first of a run of failures is logged.
func (s *Shipper) setErr(err error) {
	s.smu.Lock()
	first := !s.failing || s.lastErr != err.Error()
	s.lastErr, s.errAt, s.failing = err.Error(), time.Now(), true
	s.smu.Unlock()
	if first && s.cfg.Log != nil {
		s.cfg.Log("log shipper: %v (lines wait in the buffer on /data)", err)
	}
}

// Status is the shipper's state for GET /v1/status and /metrics.
func (s *Shipper) Status() contract.LogsStatus {
	st := contract.LogsStatus{Endpoint: s.cfg.Endpoint.Name, CapBytes: s.cfg.Cap, Connected: s.tr.connected()}
	s.qmu.Lock()
	st.Dropped = s.qdropped
	st.BufferedLines = int64(len(s.queue))
	st.BufferedBytes = int64(s.queued)
	s.qmu.Unlock()
	if s.sp != nil {
		ss := s.sp.stats()
		st.BufferedBytes += ss.bytes
		st.BufferedLines += ss.lines
		st.Dropped += ss.dropped
	}
	s.smu.Lock()
	st.Delivered = s.deliv
	st.LastError, st.LastErrorAt = s.lastErr, s.errAt
	s.smu.Unlock()
	return st
}

// NetworkUp says the node's network just came up (a DHCP lease bound, a
// static address set): an endpoint that could not be reached may be
// reachable now, so a delivery waiting out its backoff is tried at once
// and the backoff starts again from MinBackoff. Without it the first
// lines of a boot could wait up to MaxBackoff for the failures made
// before the node had an address.
func (s *Shipper) NetworkUp() {
	select {
	case s.netUp <- struct{}{}:
	default:
	}
}
