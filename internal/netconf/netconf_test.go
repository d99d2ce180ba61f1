package netconf

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestRenderResolvConf(t *testing.T) {
	got := string(renderResolvConf("DHCP on eth0",
		[]string{"10.0.2.3", "bogus", "0.0.0.0", "10.0.2.3", "2001:db8::53", "::ffff:192.0.2.1", "192.0.2.9"},
		[]string{"Example.COM.", "corp.example.com lab.example.com", "evil\noptions ndots:15", "bad..name", "-x.example", "example.com"}))
	want := "# Written by nodeboot at boot (DHCP on eth0). Do not edit: it is rewritten on every lease change.\n" +
		"nameserver 10.0.2.3\n" +
		"nameserver 2001:db8::53\n" +
		"nameserver 192.0.2.1\n" +
		"search example.com corp.example.com lab.example.com\n"
	if got != want {
		t.Errorf("renderResolvConf:\n got %q\nwant %q", got, want)
	}

	// Nothing known: a file with no directive at all, so that stale
	// nameservers disappear.
	got = string(renderResolvConf("static configuration", nil, nil))
	if strings.Count(got, "\n") != 1 || !strings.HasPrefix(got, "#") {
		t.Errorf("empty resolv.conf = %q, want only the comment", got)
	}
}

func TestSearchDomainLimits(t *testing.T) {
	var many []string
	for i := range 10 {
		many = append(many, fmt.Sprintf("d%d.example", i))
	}
	if got := searchDomains(many...); len(got) != maxSearchDomains {
		t.Errorf("searchDomains kept %d domains, want %d", len(got), maxSearchDomains)
	}
	long := strings.Repeat("a", 60) + "." + strings.Repeat("b", 60) + "." + strings.Repeat("c", 60)
	got := searchDomains(long+".one", long+".two", "short.example")
	if n := len("search " + strings.Join(got, " ")); n > maxSearchLen {
		t.Errorf("search line is %d bytes, want at most %d", n, maxSearchLen)
	}
	for _, bad := range []string{"", ".", "a b", "x;y", "a/b", strings.Repeat("a", 64) + ".com", "-a.com", "a-.com"} {
		if d, ok := cleanDomain(bad); ok {
			t.Errorf("cleanDomain(%q) = %q, want rejected", bad, d)
		}
	}
}

func TestMergeDNS(t *testing.T) {
	got := mergeDNS([]string{"192.0.2.99", " 192.0.2.53 "}, []string{"192.0.2.53", "192.0.2.54", "x"})
	want := []string{"192.0.2.99", "192.0.2.53", "192.0.2.54"}
	if !slices.Equal(got, want) {
		t.Errorf("mergeDNS = %v, want %v", got, want)
	}
}

func TestNTPServerList(t *testing.T) {
	if got := NTPServerList(nil, nil); !slices.Equal(got, DefaultNTPServers) {
		t.Errorf("no servers: got %v, want the defaults", got)
	}
	got := NTPServerList([]string{"192.0.2.1", "192.0.2.2"}, []string{"time.example", "192.0.2.2"})
	want := []string{"192.0.2.1", "192.0.2.2", "time.example"}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	got = NTPServerList([]string{"192.0.2.1"}, nil)
	if got[0] != "192.0.2.1" || len(got) != 1+len(DefaultNTPServers) {
		t.Errorf("DHCP servers then defaults: got %v", got)
	}
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "resolv.conf")
	for _, content := range []string{"first\n", "second\n"} {
		if err := writeFileAtomic(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil || string(b) != content {
			t.Fatalf("read %q, %v; want %q", b, err, content)
		}
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, %v; want 0644", fi.Mode(), err)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}
}

// ntpEpochOffset is the number of seconds between 1900 and 1970.
const ntpEpochOffset = 2208988800

func ntpTimestamp(t time.Time) uint64 {
	secs := uint64(t.Unix() + ntpEpochOffset)
	frac := uint64(t.Nanosecond()) << 32 / 1e9
	return secs<<32 | frac
}

// serveNTP answers NTP client requests on conn with the local time shifted by
// offset, until conn is closed. drop, if not nil, is asked for each request
// and makes the server ignore it when true.
func serveNTP(conn net.PacketConn, offset time.Duration, drop func() bool) {
	buf := make([]byte, 512)
	for {
		n, peer, err := conn.ReadFrom(buf)
		if err != nil {
			return
		}
		if n < 48 || buf[0]&7 != 3 || (drop != nil && drop()) {
			continue
		}
		now := time.Now().Add(offset)
		resp := make([]byte, 48)
		resp[0] = 0<<6 | 4<<3 | 4                  // no leap warning, version 4, server mode
		resp[1] = 2                                // stratum
		resp[2] = 6                                // poll
		resp[3] = 0xec                             // precision, 2^-20 s
		binary.BigEndian.PutUint32(resp[8:], 0x10) // root dispersion
		copy(resp[12:16], "TEST")                  // reference id
		binary.BigEndian.PutUint64(resp[16:], ntpTimestamp(now.Add(-time.Minute)))
		copy(resp[24:32], buf[40:48]) // origin = the client's transmit time
		binary.BigEndian.PutUint64(resp[32:], ntpTimestamp(now))
		binary.BigEndian.PutUint64(resp[40:], ntpTimestamp(now))
		conn.WriteTo(resp, peer)
	}
}

// collector gathers what SyncTime does.
type collector struct {
	mu   sync.Mutex
	sets []time.Time
	logs []string
}

func (c *collector) log(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.logs = append(c.logs, fmt.Sprintf(format, args...))
}

func (c *collector) set(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sets = append(c.sets, t)
	return nil
}

func (c *collector) snapshot() ([]time.Time, []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.sets), slices.Clone(c.logs)
}

func TestSyncTime(t *testing.T) {
	for _, v := range []*time.Duration{&ntpQueryTimeout, &ntpRetryMin, &ntpRetryMax, &ntpResync} {
		old := *v
		t.Cleanup(func() { *v = old })
	}
	ntpQueryTimeout = 300 * time.Millisecond
	ntpRetryMin = 20 * time.Millisecond
	ntpRetryMax = 100 * time.Millisecond
	ntpResync = 200 * time.Millisecond

	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// A closed port: the first server fails at once.
	dead, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.LocalAddr().String()
	dead.Close()

	const offset = time.Hour
	var mu sync.Mutex
	dropped := 0
	go serveNTP(conn, offset, func() bool {
		mu.Lock()
		defer mu.Unlock()
		if dropped < 2 { // the first round fails: retried with backoff
			dropped++
			return true
		}
		return false
	})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var c collector
	began := time.Now()
	SyncTime(ctx, []string{deadAddr, conn.LocalAddr().String()}, c.log, c.set)
	if time.Since(began) > 50*time.Millisecond {
		t.Errorf("SyncTime blocked for %v", time.Since(began))
	}

	deadline := time.Now().Add(10 * time.Second)
	for {
		sets, logs := c.snapshot()
		if len(sets) >= 2 { // the first sync, then the periodic one
			for _, s := range sets {
				if d := s.Sub(time.Now().Add(offset)); d < -5*time.Second || d > 5*time.Second {
					t.Errorf("clock set to %v, want about now+%v", s, offset)
				}
			}
			if !slices.ContainsFunc(logs, func(l string) bool { return strings.Contains(l, "retrying") }) {
				t.Errorf("no retry logged: %q", logs)
			}
			if !slices.ContainsFunc(logs, func(l string) bool { return strings.Contains(l, "clock set from "+conn.LocalAddr().String()) }) {
				t.Errorf("no clock-set event logged: %q", logs)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("clock set %d times in 10s; log: %q", len(sets), logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
}

// SyncTimeWith hands the caller the server that answered and its offset,
// for internal/clock to step or slew and to report as the source.
func TestSyncTimeWith(t *testing.T) {
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	go serveNTP(conn, -2*time.Hour, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type answer struct {
		server string
		offset time.Duration
	}
	got := make(chan answer, 1)
	SyncTimeWith(ctx, []string{conn.LocalAddr().String()}, func(string, ...any) {}, func(server string, offset time.Duration) error {
		select {
		case got <- answer{server, offset}:
		default:
		}
		return nil
	})
	a := <-got
	if a.server != conn.LocalAddr().String() {
		t.Errorf("server %q, want %q", a.server, conn.LocalAddr())
	}
	if d := a.offset + 2*time.Hour; d < -5*time.Second || d > 5*time.Second {
		t.Errorf("offset %v, want about -2h", a.offset)
	}
}
