package netconf

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/nodeboot/nodeboot/internal/spec"
)

// The integration tests run the client as PID 1 would: a whole process in a
// network namespace. The test binary re-executes itself through
// `ip netns exec`, with helperEnv holding the helper's configuration; the
// helper reports what happens as JSON lines on stdout. The DHCP and NTP
// servers run in this process, their sockets opened in the server namespace.
const helperEnv = "NODEBOOT_NETCONF_TEST_HELPER"

func TestMain(m *testing.M) {
	if cfg := os.Getenv(helperEnv); cfg != "" {
		os.Exit(runHelper(cfg))
	}
	os.Exit(m.Run())
}

type helperConfig struct {
	Net        spec.Network
	Hostname   string
	ResolvConf string
	TimeSync   bool
	Timeout    time.Duration
}

type helperEvent struct {
	Kind    string // firstether, started, error, log, ntpset
	Msg     string
	Time    time.Time
	Elapsed time.Duration
	Addrs   []string
	DNS     []string
	Search  []string
	NTP     []string
	Gateway string
}

func runHelper(cfgJSON string) int {
	var hc helperConfig
	if err := json.Unmarshal([]byte(cfgJSON), &hc); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	var mu sync.Mutex
	enc := json.NewEncoder(os.Stdout)
	emit := func(ev helperEvent) {
		mu.Lock()
		defer mu.Unlock()
		enc.Encode(ev)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := LoopbackUp(); err != nil {
		emit(helperEvent{Kind: "error", Msg: err.Error()})
		return 1
	}
	eth, err := FirstEthernet()
	if err != nil {
		emit(helperEvent{Kind: "error", Msg: err.Error()})
		return 1
	}
	emit(helperEvent{Kind: "firstether", Msg: eth})
	began := time.Now()
	st, err := Start(ctx, Config{
		Net:        hc.Net,
		Hostname:   hc.Hostname,
		ResolvConf: hc.ResolvConf,
		Timeout:    hc.Timeout,
		NoTimeSync: !hc.TimeSync,
		Log: func(format string, args ...any) {
			emit(helperEvent{Kind: "log", Msg: fmt.Sprintf(format, args...)})
		},
		NTPSet: func(t time.Time) error {
			emit(helperEvent{Kind: "ntpset", Time: t})
			return nil
		},
	})
	if err != nil {
		emit(helperEvent{Kind: "error", Msg: err.Error(), Elapsed: time.Since(began)})
		return 1
	}
	emit(helperEvent{Kind: "started", Elapsed: time.Since(began), Msg: st.Interface(),
		Addrs: st.Addrs(), DNS: st.DNS(), Search: st.Search(), NTP: st.NTPServers(), Gateway: st.Gateway()})
	// Run until the test closes stdin.
	io.Copy(io.Discard, os.Stdin)
	return 0
}

// helper is a running helper process.
type helper struct {
	t      *testing.T
	events chan helperEvent
}

func startHelper(t *testing.T, ns string, hc helperConfig) *helper {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	js, err := json.Marshal(hc)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", ns, exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+string(js))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &helper{t: t, events: make(chan helperEvent, 1000)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(h.events)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var ev helperEvent
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				ev = helperEvent{Kind: "junk", Msg: sc.Text()}
			}
			h.events <- ev
		}
	}()
	t.Cleanup(func() {
		stdin.Close()
		exited := make(chan error, 1)
		go func() { <-done; exited <- cmd.Wait() }()
		select {
		case <-exited:
		case <-time.After(3 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if s := stderr.String(); s != "" {
			t.Logf("helper stderr:\n%s", s)
		}
	})
	return h
}

// next consumes events until one satisfies match and returns it; it fails the
// test when none does within timeout.
func (h *helper) next(timeout time.Duration, what string, match func(helperEvent) bool) helperEvent {
	h.t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case ev, ok := <-h.events:
			if !ok {
				h.t.Fatalf("helper exited while waiting for %s", what)
			}
			h.t.Logf("helper: %s %s %v", ev.Kind, ev.Msg, ev.Addrs)
			if match(ev) {
				return ev
			}
		case <-timer.C:
			h.t.Fatalf("no %s from the helper within %v", what, timeout)
		}
	}
}

func kind(k string) func(helperEvent) bool {
	return func(ev helperEvent) bool { return ev.Kind == k || (k != "error" && ev.Kind == "error") }
}

func logContains(s string) func(helperEvent) bool {
	return func(ev helperEvent) bool { return ev.Kind == "log" && strings.Contains(ev.Msg, s) }
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// requireNetns skips the test unless it can create network namespaces.
func requireNetns(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root to create network namespaces (run `go test` as root)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("skipping: needs the `ip` command (iproute2)")
	}
}

func runIP(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

var nsSeq atomic.Int32

// newNetnsPair creates two network namespaces joined by a veth pair: eth0 in
// the client one, srv0 (up, with serverAddr) in the server one. Both are
// removed when the test ends.
func newNetnsPair(t *testing.T, serverAddr string) (client, server string) {
	t.Helper()
	requireNetns(t)
	n := nsSeq.Add(1)
	client = fmt.Sprintf("nbtest-%d-%d-c", os.Getpid(), n)
	server = fmt.Sprintf("nbtest-%d-%d-s", os.Getpid(), n)
	for _, ns := range []string{client, server} {
		if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
			t.Skipf("skipping: cannot create a network namespace (%v: %s)", err, bytes.TrimSpace(out))
		}
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	}
	runIP(t, "link", "add", "eth0", "netns", client, "type", "veth", "peer", "name", "srv0", "netns", server)
	runIP(t, "-n", server, "link", "set", "lo", "up")
	runIP(t, "-n", server, "link", "set", "srv0", "up")
	runIP(t, "-n", server, "addr", "add", serverAddr, "dev", "srv0")
	return client, server
}

// inNetns runs fn on an OS thread switched into network namespace ns (the
// sockets fn opens stay in ns); the thread is thrown away if it cannot be
// switched back.
func inNetns(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		target, err := netns.GetFromName(ns)
		if err != nil {
			errc <- err
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			errc <- err
			return
		}
		err = fn()
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// netlinkIn returns a netlink handle working in namespace ns.
func netlinkIn(t *testing.T, ns string) *netlink.Handle {
	t.Helper()
	nsh, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nsh.Close() })
	h, err := netlink.NewHandleAt(nsh)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

func addrsOf(t *testing.T, h *netlink.Handle, ifname string, family int) []netlink.Addr {
	t.Helper()
	link, err := h.LinkByName(ifname)
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := h.AddrList(link, family)
	if err != nil {
		t.Fatal(err)
	}
	return addrs
}

func findAddr(addrs []netlink.Addr, cidr string) *netlink.Addr {
	for i := range addrs {
		if addrs[i].IPNet.String() == cidr {
			return &addrs[i]
		}
	}
	return nil
}

// defaultRoute returns the default route of ifname in h's namespace.
func defaultRoute(t *testing.T, h *netlink.Handle, ifname string, family int) *netlink.Route {
	t.Helper()
	link, err := h.LinkByName(ifname)
	if err != nil {
		t.Fatal(err)
	}
	routes, err := h.RouteList(link, family)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range routes {
		if r.Dst == nil {
			return &routes[i]
		}
		if ones, _ := r.Dst.Mask.Size(); ones == 0 {
			return &routes[i]
		}
	}
	return nil
}

// testDHCPServer hands out one address with a short lease. It reads with
// IP_PKTINFO so that it knows whether a request came unicast or broadcast.
type testDHCPServer struct {
	serverIP, clientIP net.IP
	lease              time.Duration
	mute               atomic.Bool // ignore everything
	ignoreUnicast      atomic.Bool // ignore unicast requests (renewals)

	mu   sync.Mutex
	seen []seenMsg
}

type seenMsg struct {
	typ      dhcpv4.MessageType
	ciaddr   net.IP
	peer     net.IP // source address
	dst      net.IP // destination address
	hostname string
	at       time.Time
}

func (m seenMsg) String() string {
	return fmt.Sprintf("%v ciaddr=%v %v->%v", m.typ, m.ciaddr, m.peer, m.dst)
}

// serve answers on conn until it is closed. The socket comes from server4,
// which opens it bound to the link with broadcast allowed.
func (s *testDHCPServer) serve(conn *net.UDPConn) error {
	rc, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_PKTINFO, 1)
	}); err != nil {
		return err
	}
	if serr != nil {
		return serr
	}
	go func() {
		buf := make([]byte, 1500)
		oob := make([]byte, 256)
		for {
			n, oobn, _, peer, err := conn.ReadMsgUDP(buf, oob)
			if err != nil {
				return
			}
			var dst net.IP
			if cms, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
				for _, cm := range cms {
					// struct in_pktinfo: ifindex, spec_dst, addr (the
					// header's destination).
					if cm.Header.Level == unix.IPPROTO_IP && cm.Header.Type == unix.IP_PKTINFO && len(cm.Data) >= 12 {
						dst = net.IP(slices.Clone(cm.Data[8:12]))
					}
				}
			}
			m, err := dhcpv4.FromBytes(buf[:n])
			if err != nil {
				continue
			}
			s.handle(conn, peer, dst, m)
		}
	}()
	return nil
}

func (s *testDHCPServer) handle(conn *net.UDPConn, peer *net.UDPAddr, dst net.IP, m *dhcpv4.DHCPv4) {
	if m.OpCode != dhcpv4.OpcodeBootRequest || s.mute.Load() {
		return
	}
	unicast := !dst.Equal(net.IPv4bcast)
	if unicast && s.ignoreUnicast.Load() {
		return
	}
	s.mu.Lock()
	s.seen = append(s.seen, seenMsg{typ: m.MessageType(), ciaddr: m.ClientIPAddr, peer: peer.IP, dst: dst, hostname: m.HostName(), at: time.Now()})
	s.mu.Unlock()

	var typ dhcpv4.MessageType
	switch m.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		typ = dhcpv4.MessageTypeOffer
	case dhcpv4.MessageTypeRequest:
		want := m.RequestedIPAddress()
		if want == nil || want.IsUnspecified() {
			want = m.ClientIPAddr
		}
		typ = dhcpv4.MessageTypeAck
		if !want.Equal(s.clientIP) {
			typ = dhcpv4.MessageTypeNak
		}
	default:
		return
	}
	mods := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(typ),
		dhcpv4.WithServerIP(s.serverIP),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(s.serverIP)),
	}
	if typ != dhcpv4.MessageTypeNak {
		mods = append(mods,
			dhcpv4.WithYourIP(s.clientIP),
			dhcpv4.WithOption(dhcpv4.OptSubnetMask(net.CIDRMask(24, 32))),
			dhcpv4.WithOption(dhcpv4.OptRouter(s.serverIP)),
			dhcpv4.WithOption(dhcpv4.OptDNS(net.ParseIP("192.0.2.53"), net.ParseIP("192.0.2.54"))),
			dhcpv4.WithOption(dhcpv4.OptDomainName("example.test")),
			dhcpv4.WithOption(dhcpv4.OptNTPServers(s.serverIP)),
			dhcpv4.WithOption(dhcpv4.OptIPAddressLeaseTime(s.lease)),
		)
	}
	resp, err := dhcpv4.NewReplyFromRequest(m, mods...)
	if err != nil {
		return
	}
	to := &net.UDPAddr{IP: peer.IP, Port: dhcpv4.ClientPort}
	if peer.IP.IsUnspecified() {
		to.IP = net.IPv4bcast
	}
	conn.WriteTo(resp.ToBytes(), to)
}

// mark returns the number of messages seen so far.
func (s *testDHCPServer) mark() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.seen)
}

// waitSeen waits until the server has seen a message (at index from or
// later) that satisfies match, and returns it with its index.
func (s *testDHCPServer) waitSeen(t *testing.T, timeout time.Duration, from int, what string, match func(seenMsg) bool) (seenMsg, int) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s.mu.Lock()
		for i := from; i < len(s.seen); i++ {
			if match(s.seen[i]) {
				m := s.seen[i]
				s.mu.Unlock()
				return m, i
			}
		}
		seen := slices.Clone(s.seen)
		s.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("the DHCP server saw no %s within %v; it saw %v", what, timeout, seen)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestStartDHCP(t *testing.T) {
	client, server := newNetnsPair(t, "192.0.2.1/24")
	srv := &testDHCPServer{
		serverIP: net.ParseIP("192.0.2.1").To4(),
		clientIP: net.ParseIP("192.0.2.100").To4(),
		lease:    4 * time.Second,
	}
	const ntpOffset = time.Hour
	var dhcpConn *net.UDPConn
	var ntpConn net.PacketConn
	err := inNetns(server, func() error {
		var err error
		if dhcpConn, err = server4.NewIPv4UDPConn("srv0", &net.UDPAddr{Port: dhcpv4.ServerPort}); err != nil {
			return err
		}
		ntpConn, err = net.ListenPacket("udp4", "192.0.2.1:123")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dhcpConn.Close(); ntpConn.Close() })
	if err := srv.serve(dhcpConn); err != nil {
		t.Fatal(err)
	}
	go serveNTP(ntpConn, ntpOffset, nil)

	resolv := filepath.Join(t.TempDir(), "run", "resolv.conf")
	h := startHelper(t, client, helperConfig{
		Net:        spec.Network{Mode: "dhcp", DNS: []string{"192.0.2.99"}},
		Hostname:   "nodetest",
		ResolvConf: resolv,
		TimeSync:   true,
	})
	if ev := h.next(5*time.Second, "first Ethernet link", kind("firstether")); ev.Msg != "eth0" {
		t.Fatalf("FirstEthernet = %q (%s), want eth0", ev.Msg, ev.Kind)
	}
	ev := h.next(15*time.Second, "start", kind("started"))
	if ev.Kind != "started" {
		t.Fatalf("Start failed: %s", ev.Msg)
	}
	t.Logf("first lease in %v", ev.Elapsed)
	if ev.Elapsed > 3*time.Second {
		t.Errorf("Start took %v with a local DHCP server, want well under a second", ev.Elapsed)
	}
	if want := []string{"192.0.2.100/24"}; !slices.Equal(ev.Addrs, want) {
		t.Errorf("State.Addrs = %v, want %v", ev.Addrs, want)
	}
	if want := []string{"192.0.2.99", "192.0.2.53", "192.0.2.54"}; !slices.Equal(ev.DNS, want) {
		t.Errorf("State.DNS = %v, want %v", ev.DNS, want)
	}
	if ev.Gateway != "192.0.2.1" || !slices.Equal(ev.NTP, []string{"192.0.2.1"}) || !slices.Equal(ev.Search, []string{"example.test"}) {
		t.Errorf("State: gateway %q, ntp %v, search %v", ev.Gateway, ev.NTP, ev.Search)
	}

	// What the server saw: a broadcast DISCOVER, then a REQUEST, with the
	// host name.
	req, firstReq := srv.waitSeen(t, time.Second, 0, "REQUEST", func(m seenMsg) bool { return m.typ == dhcpv4.MessageTypeRequest })
	if req.hostname != "nodetest" {
		t.Errorf("host name option = %q, want nodetest", req.hostname)
	}
	if !req.dst.Equal(net.IPv4bcast) || !req.peer.IsUnspecified() {
		t.Errorf("first REQUEST went %v -> %v, want 0.0.0.0 -> 255.255.255.255", req.peer, req.dst)
	}

	// The link as the kernel has it.
	nl := netlinkIn(t, client)
	a := findAddr(addrsOf(t, nl, "eth0", netlink.FAMILY_V4), "192.0.2.100/24")
	if a == nil {
		t.Fatalf("192.0.2.100/24 not on eth0: %v", addrsOf(t, nl, "eth0", netlink.FAMILY_V4))
	}
	if !a.Broadcast.Equal(net.ParseIP("192.0.2.255")) {
		t.Errorf("broadcast = %v, want 192.0.2.255", a.Broadcast)
	}
	if a.ValidLft <= 0 || a.ValidLft > 4 {
		t.Errorf("address valid lifetime = %d s, want the lease's (at most 4 s)", a.ValidLft)
	}
	r := defaultRoute(t, nl, "eth0", netlink.FAMILY_V4)
	if r == nil || !r.Gw.Equal(srv.serverIP) {
		t.Fatalf("default route = %v, want via 192.0.2.1", r)
	}
	if r.Protocol != unix.RTPROT_DHCP {
		t.Errorf("default route protocol = %v, want dhcp", r.Protocol)
	}

	b, err := os.ReadFile(resolv)
	if err != nil {
		t.Fatal(err)
	}
	wantResolv := "nameserver 192.0.2.99\nnameserver 192.0.2.53\nnameserver 192.0.2.54\nsearch example.test\n"
	if _, body, _ := strings.Cut(string(b), "\n"); body != wantResolv {
		t.Errorf("resolv.conf:\n%s\nwant (after the comment):\n%s", b, wantResolv)
	}

	// NTP: the DHCP-announced server is asked first, and the clock set.
	ev = h.next(10*time.Second, "clock set", kind("ntpset"))
	if ev.Kind != "ntpset" {
		t.Fatalf("error instead of clock set: %s", ev.Msg)
	}
	if d := ev.Time.Sub(time.Now().Add(ntpOffset)); d < -10*time.Second || d > 10*time.Second {
		t.Errorf("clock set to %v, want about now+%v", ev.Time, ntpOffset)
	}

	// Renewal at T1: a REQUEST unicast from the leased address to the
	// server, within the lease.
	ren, _ := srv.waitSeen(t, 4*time.Second, firstReq+1, "renewal REQUEST", func(m seenMsg) bool {
		return m.typ == dhcpv4.MessageTypeRequest && m.ciaddr.Equal(srv.clientIP)
	})
	if !ren.peer.Equal(srv.clientIP) || !ren.dst.Equal(srv.serverIP) {
		t.Errorf("renewal went %v -> %v, want %v -> %v", ren.peer, ren.dst, srv.clientIP, srv.serverIP)
	}
	if d := ren.at.Sub(req.at); d >= srv.lease {
		t.Errorf("renewal came %v after the lease began, after its end", d)
	}
	h.next(2*time.Second, "renewal", logContains("renewing: extended"))

	// The server stops answering unicast: renewing fails, and at T2 the
	// client rebinds by broadcast.
	srv.ignoreUnicast.Store(true)
	from := srv.mark()
	h.next(8*time.Second, "rebinding", logContains("rebinding: extended"))
	reb, _ := srv.waitSeen(t, time.Second, from, "rebinding REQUEST", func(m seenMsg) bool {
		return m.typ == dhcpv4.MessageTypeRequest && m.ciaddr.Equal(srv.clientIP)
	})
	if !reb.dst.Equal(net.IPv4bcast) || !reb.peer.Equal(srv.clientIP) {
		t.Errorf("rebinding went %v -> %v, want %v -> 255.255.255.255", reb.peer, reb.dst, srv.clientIP)
	}
	if findAddr(addrsOf(t, nl, "eth0", netlink.FAMILY_V4), "192.0.2.100/24") == nil {
		t.Fatal("address gone after rebinding")
	}

	// The server goes silent: the lease expires, the address and route go,
	// and the client starts over from DISCOVER.
	srv.mute.Store(true)
	h.next(8*time.Second, "lease loss", logContains("discovering again"))
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		a := findAddr(addrsOf(t, nl, "eth0", netlink.FAMILY_V4), "192.0.2.100/24")
		r := defaultRoute(t, nl, "eth0", netlink.FAMILY_V4)
		if a == nil && r == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the lease expired: address %v, default route %v; want both gone", a, r)
		}
	}
	from = srv.mark()
	srv.ignoreUnicast.Store(false)
	srv.mute.Store(false)
	srv.waitSeen(t, 10*time.Second, from, "new DISCOVER", func(m seenMsg) bool { return m.typ == dhcpv4.MessageTypeDiscover })
	h.next(10*time.Second, "new lease", logContains("bound to"))
	if findAddr(addrsOf(t, nl, "eth0", netlink.FAMILY_V4), "192.0.2.100/24") == nil {
		t.Error("address not back after the new lease")
	}
	if defaultRoute(t, nl, "eth0", netlink.FAMILY_V4) == nil {
		t.Error("default route not back after the new lease")
	}
}

func TestStartStatic(t *testing.T) {
	client, _ := newNetnsPair(t, "198.51.100.1/24")
	resolv := filepath.Join(t.TempDir(), "resolv.conf")
	h := startHelper(t, client, helperConfig{
		Net: spec.Network{
			Mode:    "static",
			Address: "198.51.100.10/24",
			Gateway: "198.51.100.1",
			DNS:     []string{"198.51.100.53", "2001:db8::53"},
		},
		ResolvConf: resolv,
	})
	ev := h.next(10*time.Second, "start", kind("started"))
	if ev.Kind != "started" {
		t.Fatalf("Start failed: %s", ev.Msg)
	}
	if !slices.Equal(ev.Addrs, []string{"198.51.100.10/24"}) || ev.Gateway != "198.51.100.1" ||
		!slices.Equal(ev.DNS, []string{"198.51.100.53", "2001:db8::53"}) {
		t.Errorf("State: addrs %v, gateway %q, dns %v", ev.Addrs, ev.Gateway, ev.DNS)
	}
	nl := netlinkIn(t, client)
	a := findAddr(addrsOf(t, nl, "eth0", netlink.FAMILY_V4), "198.51.100.10/24")
	if a == nil {
		t.Fatalf("198.51.100.10/24 not on eth0")
	}
	if !a.Broadcast.Equal(net.ParseIP("198.51.100.255")) {
		t.Errorf("broadcast = %v, want 198.51.100.255", a.Broadcast)
	}
	if r := defaultRoute(t, nl, "eth0", netlink.FAMILY_V4); r == nil || !r.Gw.Equal(net.ParseIP("198.51.100.1")) {
		t.Errorf("default route = %v, want via 198.51.100.1", r)
	}
	link, err := nl.LinkByName("lo")
	if err != nil || link.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("lo is not up (%v)", err)
	}
	b, err := os.ReadFile(resolv)
	if err != nil {
		t.Fatal(err)
	}
	if _, body, _ := strings.Cut(string(b), "\n"); body != "nameserver 198.51.100.53\nnameserver 2001:db8::53\n" {
		t.Errorf("resolv.conf:\n%s", b)
	}
}

func TestStartStaticIPv6(t *testing.T) {
	client, _ := newNetnsPair(t, "2001:db8:1::1/64")
	h := startHelper(t, client, helperConfig{
		Net: spec.Network{Mode: "static", Address: "2001:db8:1::10/64", Gateway: "2001:db8:1::1"},
	})
	ev := h.next(10*time.Second, "start", kind("started"))
	if ev.Kind != "started" {
		t.Fatalf("Start failed: %s", ev.Msg)
	}
	nl := netlinkIn(t, client)
	if findAddr(addrsOf(t, nl, "eth0", netlink.FAMILY_V6), "2001:db8:1::10/64") == nil {
		t.Errorf("2001:db8:1::10/64 not on eth0")
	}
	if r := defaultRoute(t, nl, "eth0", netlink.FAMILY_V6); r == nil || !r.Gw.Equal(net.ParseIP("2001:db8:1::1")) {
		t.Errorf("default route = %v, want via 2001:db8:1::1", r)
	}
}

func TestStartDHCPTimeout(t *testing.T) {
	client, _ := newNetnsPair(t, "192.0.2.1/24") // no DHCP server
	h := startHelper(t, client, helperConfig{Timeout: time.Second})
	ev := h.next(10*time.Second, "error", kind("error"))
	if !strings.Contains(ev.Msg, "no DHCP lease within 1s") {
		t.Errorf("error = %q, want a time-out", ev.Msg)
	}
	if ev.Elapsed > 3*time.Second {
		t.Errorf("Start gave up after %v, want about 1s", ev.Elapsed)
	}
}

func TestStartBadMode(t *testing.T) {
	_, err := Start(context.Background(), Config{Net: spec.Network{Mode: "carrier-pigeon"}})
	if err == nil || !strings.Contains(err.Error(), "carrier-pigeon") {
		t.Errorf("Start with a bad mode: %v", err)
	}
}

func TestParseLease(t *testing.T) {
	ack, err := dhcpv4.New(
		dhcpv4.WithMessageType(dhcpv4.MessageTypeAck),
		dhcpv4.WithYourIP(net.ParseIP("10.0.2.15")),
		dhcpv4.WithOption(dhcpv4.OptSubnetMask(net.CIDRMask(24, 32))),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP("10.0.2.2"))),
		dhcpv4.WithOption(dhcpv4.OptRouter(net.ParseIP("10.0.2.2"))),
		dhcpv4.WithOption(dhcpv4.OptDNS(net.ParseIP("10.0.2.3"))),
		dhcpv4.WithOption(dhcpv4.OptDomainName("example.com\x00")),
		dhcpv4.WithOption(dhcpv4.OptIPAddressLeaseTime(time.Hour)),
		dhcpv4.WithOption(dhcpv4.OptRenewTimeValue(20*time.Minute)),
		dhcpv4.WithGeneric(dhcpv4.OptionInterfaceMTU, []byte{0x05, 0xdc}),
	)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	l, err := parseLease(ack, start)
	if err != nil {
		t.Fatal(err)
	}
	if l.addr.String() != "10.0.2.15/24" || !l.bcast.Equal(net.ParseIP("10.0.2.255")) || !l.server.Equal(net.ParseIP("10.0.2.2")) {
		t.Errorf("addr %v bcast %v server %v", l.addr, l.bcast, l.server)
	}
	if l.duration != time.Hour || l.t1 != 20*time.Minute || l.t2 != time.Hour*7/8 || l.infinite {
		t.Errorf("lease %v t1 %v t2 %v infinite %v", l.duration, l.t1, l.t2, l.infinite)
	}
	if !l.renewAt().Equal(start.Add(20 * time.Minute)) {
		t.Errorf("renewAt = %v", l.renewAt())
	}
	if len(l.routes) != 1 || l.routes[0].dst != nil || !l.routes[0].gw.Equal(net.ParseIP("10.0.2.2")) {
		t.Errorf("routes = %v", l.routes)
	}
	if !slices.Equal(l.dns, []string{"10.0.2.3"}) || !slices.Equal(l.search, []string{"example.com"}) || l.mtu != 1500 {
		t.Errorf("dns %v search %v mtu %d", l.dns, l.search, l.mtu)
	}

	// Classless static routes replace the router option; an infinite
	// lease is never renewed; no netmask means the classful one.
	ack.UpdateOption(dhcpv4.OptClasslessStaticRoute(
		&dhcpv4.Route{Dest: &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}, Router: net.ParseIP("10.0.2.254")},
		&dhcpv4.Route{Dest: &net.IPNet{IP: net.ParseIP("172.16.0.0").To4(), Mask: net.CIDRMask(12, 32)}, Router: net.IPv4zero},
	))
	ack.UpdateOption(dhcpv4.OptIPAddressLeaseTime(dhcpv4.MaxLeaseTime))
	ack.DeleteOption(dhcpv4.OptionSubnetMask)
	l, err = parseLease(ack, start)
	if err != nil {
		t.Fatal(err)
	}
	if !l.infinite || l.addr.String() != "10.0.2.15/8" {
		t.Errorf("infinite %v addr %v", l.infinite, l.addr)
	}
	if len(l.routes) != 2 || !l.gateway.Equal(net.ParseIP("10.0.2.254")) || l.routes[1].gw != nil || l.routes[1].dst.String() != "172.16.0.0/12" {
		t.Errorf("routes %v gateway %v", l.routes, l.gateway)
	}

	ack.YourIPAddr = net.IPv4zero
	if _, err := parseLease(ack, start); err == nil {
		t.Error("a lease without an address was accepted")
	}
}
