package netconf

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/nodeboot/nodeboot/internal/crash"
)

// Timing of the DHCP client; variables so that tests can change them.
var (
	// dhcpFirstTimeout is the wait for the first answer to a DISCOVER or
	// REQUEST; it doubles on every retransmission of a round (up to
	// dhcpMaxTimeout). Local servers (QEMU's user network, a LAN router)
	// answer within milliseconds, so the first retransmission comes early.
	dhcpFirstTimeout = 250 * time.Millisecond
	dhcpMaxTimeout   = 2 * time.Second
	// dhcpTries is the number of transmissions in one round before the
	// exchange starts again with a new transaction (and a longer first
	// wait): the waits of the rounds are 0.25+0.5+1 s, 0.5+1+2 s, 1+2+4 s,
	// then 2+4+8 s.
	dhcpTries = 3
	// dhcpCarrierWait bounds the wait for the link's carrier before the
	// first DISCOVER.
	dhcpCarrierWait = 5 * time.Second
	// During RENEWING and REBINDING the client waits half of the time left
	// before the next transmission (RFC 2131, 4.4.5), down to a minimum of
	// dhcpMinRetry (the RFC's one minute) or, for leases so short that a
	// minute makes no sense, a sixteenth of the lease.
	dhcpMinRetry = 60 * time.Second
	// dhcpMinLease is the shortest lease honoured; shorter ones are treated
	// as this long.
	dhcpMinLease = 2 * time.Second
)

// infiniteLease is the lease time meaning "forever" (RFC 2131, 3.3).
const infiniteLease = dhcpv4.Duration(0xffffffff * time.Second)

// requestedOptions is the Parameter Request List sent with every request.
var requestedOptions = []dhcpv4.OptionCode{
	dhcpv4.OptionSubnetMask,
	dhcpv4.OptionRouter,
	dhcpv4.OptionDomainNameServer,
	dhcpv4.OptionDomainName,
	dhcpv4.OptionInterfaceMTU,
	dhcpv4.OptionBroadcastAddress,
	dhcpv4.OptionNTPServers,
	dhcpv4.OptionIPAddressLeaseTime,
	dhcpv4.OptionRenewTimeValue,
	dhcpv4.OptionRebindingTimeValue,
	dhcpv4.OptionDNSDomainSearchList,
	dhcpv4.OptionClasslessStaticRoute,
}

// lease is a DHCP lease, decoded from the ACK that granted it.
type lease struct {
	ack      *dhcpv4.DHCPv4
	addr     *net.IPNet
	bcast    net.IP
	server   net.IP // server identifier; nil if the server sent none
	routes   []route
	gateway  net.IP
	dns      []string
	search   []string
	ntp      []string
	mtu      int
	start    time.Time // when the request that got the ACK was sent
	duration time.Duration
	infinite bool
	t1, t2   time.Duration
}

type route struct {
	dst *net.IPNet // nil: default route
	gw  net.IP     // nil: directly connected
}

func (l *lease) renewAt() time.Time  { return l.start.Add(l.t1) }
func (l *lease) rebindAt() time.Time { return l.start.Add(l.t2) }
func (l *lease) expiry() time.Time   { return l.start.Add(l.duration) }

// parseLease decodes an ACK into a lease starting at start.
func parseLease(ack *dhcpv4.DHCPv4, start time.Time) (*lease, error) {
	ip := ack.YourIPAddr.To4()
	if ip == nil || ip.IsUnspecified() || ip.Equal(net.IPv4bcast) {
		return nil, fmt.Errorf("ACK offers no usable address (%v)", ack.YourIPAddr)
	}
	mask := ack.SubnetMask()
	if ones, bits := mask.Size(); bits != 32 || ones == 0 {
		// No (or a non-contiguous) netmask: fall back to the classful one,
		// as RFC 2131 leaves it to the client.
		mask = ip.DefaultMask()
	}
	l := &lease{
		ack:   ack,
		addr:  &net.IPNet{IP: ip, Mask: mask},
		start: start,
	}
	if b := ack.BroadcastAddress().To4(); b != nil && !b.IsUnspecified() {
		l.bcast = b
	} else if ones, _ := mask.Size(); ones < 31 {
		l.bcast = make(net.IP, 4)
		for i := range l.bcast {
			l.bcast[i] = ip[i] | ^mask[i]
		}
	}
	if s := ack.ServerIdentifier().To4(); s != nil && !s.IsUnspecified() {
		l.server = s
	}

	d := ack.IPAddressLeaseTime(0)
	switch {
	case dhcpv4.Duration(d) == infiniteLease:
		l.infinite = true
	case d == 0:
		// A server must send the lease time; one that does not gets the
		// conservative reading: renew soon.
		d = time.Hour
	}
	if !l.infinite {
		d = max(d, dhcpMinLease)
		l.duration = d
		l.t1 = ack.IPAddressRenewalTime(d / 2)
		l.t2 = ack.IPAddressRebindingTime(d * 7 / 8)
		if l.t1 <= 0 || l.t1 >= d {
			l.t1 = d / 2
		}
		if l.t2 <= l.t1 || l.t2 >= d {
			l.t2 = max(d*7/8, l.t1+(d-l.t1)/2)
		}
	}

	// Routes: a classless static route option replaces the router option
	// (RFC 3442).
	if csr := ack.ClasslessStaticRoute(); len(csr) > 0 {
		for _, r := range csr {
			rt := route{}
			if ones, _ := r.Dest.Mask.Size(); ones > 0 {
				rt.dst = &net.IPNet{IP: r.Dest.IP.Mask(r.Dest.Mask).To4(), Mask: r.Dest.Mask}
			}
			if gw := r.Router.To4(); gw != nil && !gw.IsUnspecified() {
				rt.gw = gw
			}
			if rt.dst == nil && rt.gw == nil {
				continue
			}
			if rt.dst == nil {
				l.gateway = rt.gw
			}
			l.routes = append(l.routes, rt)
		}
	} else {
		for _, gw := range ack.Router() {
			if gw = gw.To4(); gw != nil && !gw.IsUnspecified() {
				l.gateway = gw
				l.routes = append(l.routes, route{gw: gw})
				break
			}
		}
	}

	for _, s := range ack.DNS() {
		l.dns = append(l.dns, s.String())
	}
	var domains []string
	if d := ack.DomainName(); d != "" {
		domains = append(domains, d)
	}
	if ds := ack.DomainSearch(); ds != nil {
		domains = append(domains, ds.Labels...)
	}
	l.search = searchDomains(domains...)
	for _, s := range ack.NTPServers() {
		if s.To4() != nil && !s.IsUnspecified() {
			l.ntp = append(l.ntp, s.String())
		}
	}
	if mtu, err := dhcpv4.GetUint16(dhcpv4.OptionInterfaceMTU, ack.Options); err == nil && mtu >= 576 {
		l.mtu = int(mtu)
	}
	return l, nil
}

func (l *lease) String() string {
	ones, _ := l.addr.Mask.Size()
	s := fmt.Sprintf("%s/%d from %v, gateway %s, dns %v", l.addr.IP, ones, l.server, orNone(ipString(l.gateway)), l.dns)
	if len(l.search) > 0 {
		s += fmt.Sprintf(", search %v", l.search)
	}
	if l.infinite {
		return s + ", infinite lease"
	}
	return s + fmt.Sprintf(", lease %v (renew in %v)", l.duration, l.t1)
}

func ipString(ip net.IP) string {
	if ip == nil {
		return ""
	}
	return ip.String()
}

// dhcpClient runs DHCPv4 on one link.
type dhcpClient struct {
	cfg    Config
	log    Logger
	state  *State
	link   netlink.Link
	ifname string
	mac    net.HardwareAddr

	cur    *lease  // the lease applied to the link, nil when none
	routes []route // routes this client installed
	prevIP net.IP  // last leased address, asked for again after a loss
}

func newDHCPClient(cfg Config, link netlink.Link, st *State, log Logger) (*dhcpClient, error) {
	a := link.Attrs()
	if len(a.HardwareAddr) != 6 {
		return nil, fmt.Errorf("%s: DHCP needs an Ethernet link, hardware address is %q", a.Name, a.HardwareAddr)
	}
	st.mu.Lock()
	st.mode = "dhcp"
	st.mu.Unlock()
	return &dhcpClient{
		cfg:    cfg,
		log:    log,
		state:  st,
		link:   link,
		ifname: a.Name,
		mac:    a.HardwareAddr,
	}, nil
}

// start gets and applies the first lease, then keeps it in the background.
func (c *dhcpClient) start(ctx context.Context) error {
	timeout := c.cfg.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	actx := ctx
	if timeout > 0 {
		var cancel context.CancelFunc
		actx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	began := time.Now()
	if !waitCarrier(actx, c.link.Attrs().Index, dhcpCarrierWait) && actx.Err() == nil {
		c.log("%s: no carrier after %v; trying DHCP anyway", c.ifname, dhcpCarrierWait)
	}
	l, err := c.acquire(actx)
	if err != nil {
		if ctx.Err() == nil && actx.Err() != nil {
			return fmt.Errorf("%s: no DHCP lease within %v", c.ifname, timeout)
		}
		return fmt.Errorf("%s: DHCP: %w", c.ifname, err)
	}
	if err := c.apply(l); err != nil {
		return err
	}
	c.log("%s: dhcp: bound to %s (in %v)", c.ifname, l, time.Since(began).Round(time.Millisecond))
	crash.Go("dhcp "+c.ifname, func() { c.run(ctx) })
	return nil
}

// modifiers are added to every message the client sends.
func (c *dhcpClient) modifiers() []dhcpv4.Modifier {
	m := []dhcpv4.Modifier{dhcpv4.WithRequestedOptions(requestedOptions...)}
	if h := hostnameOption(c.cfg.Hostname); h != "" {
		m = append(m, dhcpv4.WithOption(dhcpv4.OptHostName(h)))
	}
	return m
}

// hostnameOption is the first label of name, if it is a valid host name.
func hostnameOption(name string) string {
	name, _, _ = strings.Cut(name, ".")
	if d, ok := cleanDomain(name); ok {
		return d
	}
	return ""
}

// acquire runs DISCOVER/OFFER/REQUEST/ACK over a raw socket (the link has no
// address yet) until it gets a lease or ctx is done.
func (c *dhcpClient) acquire(ctx context.Context) (*lease, error) {
	for round := 0; ; round++ {
		timeout := min(dhcpFirstTimeout<<min(round, 8), dhcpMaxTimeout)
		began := time.Now()
		l, err := c.exchange(ctx, timeout, round)
		if err == nil {
			return l, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var nak *nclient4.ErrNak
		if errors.As(err, &nak) {
			c.log("%s: dhcp: request refused (%v); discovering again", c.ifname, err)
			c.prevIP = nil
		} else if round == 0 || round%4 == 3 {
			c.log("%s: dhcp: %v; retrying", c.ifname, err)
		}
		// An error that came back at once (the link not ready yet, say)
		// must not turn the loop into a busy one.
		if !sleepCtx(ctx, timeout-time.Since(began)) {
			return nil, ctx.Err()
		}
	}
}

// exchange is one DISCOVER..ACK round.
func (c *dhcpClient) exchange(ctx context.Context, timeout time.Duration, round int) (*lease, error) {
	cl, err := nclient4.New(c.ifname,
		nclient4.WithHWAddr(c.mac),
		nclient4.WithTimeout(timeout),
		nclient4.WithRetry(dhcpTries))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	mods := c.modifiers()
	// The raw socket receives unicast answers before the link has an
	// address, so the broadcast flag is not needed; but some servers and
	// relays only get an answer through with it, so every other round
	// asks for broadcast replies.
	mods = append(mods, dhcpv4.WithBroadcast(round%2 == 1))
	discover := mods
	if c.prevIP != nil {
		discover = append(slices.Clone(mods), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(c.prevIP)))
	}
	offer, err := cl.DiscoverOffer(ctx, discover...)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	l, err := cl.RequestFromOffer(ctx, offer, mods...)
	if err != nil {
		return nil, err
	}
	return parseLease(l.ACK, start)
}

// run keeps the lease until ctx is done.
func (c *dhcpClient) run(ctx context.Context) {
	for {
		l := c.cur
		if l == nil {
			// No lease (lost, or one that could not be applied): start over.
			began := time.Now()
			next, err := c.acquire(ctx)
			if err != nil {
				return
			}
			if err := c.apply(next); err != nil {
				c.log("%s: dhcp: applying lease: %v", c.ifname, err)
				c.drop()
				if !sleepCtx(ctx, time.Second) {
					return
				}
				continue
			}
			c.log("%s: dhcp: bound to %s (in %v)", c.ifname, next, time.Since(began).Round(time.Millisecond))
			continue
		}
		if l.infinite {
			<-ctx.Done()
			return
		}
		if !sleepCtx(ctx, time.Until(l.renewAt())) {
			return
		}
		next, err := c.extend(ctx, l)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			if err := c.apply(next); err != nil {
				c.log("%s: dhcp: applying renewed lease: %v; discovering again", c.ifname, err)
				c.drop()
				continue
			}
			c.state.mu.Lock()
			c.state.renewals++
			c.state.mu.Unlock()
			continue
		}
		c.log("%s: dhcp: %v; removing %s and discovering again", c.ifname, err, l.addr)
		c.prevIP = l.addr.IP
		c.drop()
	}
}

var (
	errLeaseExpired = errors.New("lease expired")
	errLeaseNak     = errors.New("server refused to extend the lease (NAK)")
)

// extend renews the lease with its server (RENEWING, unicast) until T2, then
// with any server (REBINDING, broadcast) until the lease expires. Both go
// through a UDP socket, with the leased address as source.
func (c *dhcpClient) extend(ctx context.Context, l *lease) (*lease, error) {
	conn, err := c.listenUDP()
	if err != nil {
		c.log("%s: dhcp: cannot open the renewal socket: %v", c.ifname, err)
		sleepCtx(ctx, time.Until(l.expiry()))
		return nil, errLeaseExpired
	}
	// The timeout is the client's wait per attempt; attempts here are
	// bounded by their context instead, so it is made long.
	cl, err := nclient4.NewWithConn(conn, c.mac, nclient4.WithTimeout(24*time.Hour), nclient4.WithRetry(1))
	if err != nil {
		conn.Close()
		return nil, err
	}
	defer cl.Close()

	phases := []struct {
		name  string
		until time.Time
		dest  *net.UDPAddr
	}{
		{"renewing", l.rebindAt(), nil},
		{"rebinding", l.expiry(), &net.UDPAddr{IP: net.IPv4bcast, Port: nclient4.ServerPort}},
	}
	if l.server != nil {
		phases[0].dest = &net.UDPAddr{IP: l.server, Port: nclient4.ServerPort}
	}
	minRetry := min(dhcpMinRetry, max(l.duration/16, 100*time.Millisecond))
	for _, ph := range phases {
		if ph.dest == nil {
			continue
		}
		logged := false
		for {
			left := time.Until(ph.until)
			if left <= 0 {
				break
			}
			if !logged {
				c.log("%s: dhcp: %s lease of %s with %s", c.ifname, ph.name, l.addr.IP, ph.dest.IP)
				logged = true
			}
			wait := min(max(left/2, minRetry), left)
			xid, err := dhcpv4.GenerateTransactionID()
			if err != nil {
				return nil, err
			}
			req, err := dhcpv4.NewRenewFromAck(l.ack, append(c.modifiers(), dhcpv4.WithTransactionID(xid))...)
			if err != nil {
				return nil, err
			}
			match := nclient4.IsMessageType(dhcpv4.MessageTypeAck, dhcpv4.MessageTypeNak)
			if ph.name == "renewing" {
				match = nclient4.IsAll(match, nclient4.IsCorrectServer(l.server))
			}
			sent := time.Now()
			actx, cancel := context.WithTimeout(ctx, wait)
			resp, err := cl.SendAndRead(actx, ph.dest, req, match)
			cancel()
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if err != nil {
				if !errors.Is(err, context.DeadlineExceeded) {
					// Not a time-out (an unreachable network, say): wait
					// out this attempt's share before the next one.
					c.log("%s: dhcp: %s: %v", c.ifname, ph.name, err)
					if !sleepCtx(ctx, time.Until(sent.Add(wait))) {
						return nil, ctx.Err()
					}
				}
				continue
			}
			if resp.MessageType() == dhcpv4.MessageTypeNak {
				return nil, errLeaseNak
			}
			next, err := parseLease(resp, sent)
			if err != nil {
				c.log("%s: dhcp: %s: %v", c.ifname, ph.name, err)
				if !sleepCtx(ctx, time.Until(sent.Add(wait))) {
					return nil, ctx.Err()
				}
				continue
			}
			c.log("%s: dhcp: %s: extended to %s", c.ifname, ph.name, next)
			return next, nil
		}
	}
	return nil, errLeaseExpired
}

// listenUDP opens the socket used while the link has its address: bound to
// the DHCP client port on any address (a server may answer to the limited
// broadcast address) and to the link, allowed to broadcast.
func (c *dhcpClient) listenUDP() (net.PacketConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); serr != nil {
				return
			}
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_BROADCAST, 1); serr != nil {
				return
			}
			serr = unix.BindToDevice(int(fd), c.ifname)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	return lc.ListenPacket(context.Background(), "udp4", fmt.Sprintf("0.0.0.0:%d", nclient4.ClientPort))
}

// apply puts lease l on the link: address (with the lease's lifetime, so that
// the kernel drops it by itself should this client die), MTU, routes,
// resolv.conf, and the status. Only a failure to add the address is an
// error.
func (c *dhcpClient) apply(l *lease) error {
	if c.cur != nil && !(c.cur.addr.IP.Equal(l.addr.IP) && slices.Equal(c.cur.addr.Mask, l.addr.Mask)) {
		c.drop()
	}
	addr := &netlink.Addr{IPNet: l.addr, Broadcast: l.bcast}
	if !l.infinite {
		secs := int((time.Until(l.expiry()) + time.Second - 1) / time.Second)
		addr.ValidLft = max(secs, 1)
		addr.PreferedLft = addr.ValidLft
	}
	if err := netlink.AddrReplace(c.link, addr); err != nil {
		return fmt.Errorf("%s: adding %s: %w", c.ifname, l.addr, err)
	}
	c.cur = l

	if l.mtu > 0 && l.mtu != c.link.Attrs().MTU {
		if err := netlink.LinkSetMTU(c.link, l.mtu); err != nil {
			c.log("%s: dhcp: setting MTU %d: %v", c.ifname, l.mtu, err)
		} else {
			c.link.Attrs().MTU = l.mtu
		}
	}

	// What follows the address is the server's data: a route or a
	// resolv.conf that cannot be installed is logged, and the lease kept.
	for _, r := range l.routes {
		if err := netlink.RouteReplace(c.netlinkRoute(r, l)); err != nil {
			c.log("%s: dhcp: route %s: %v", c.ifname, routeString(r), err)
		}
	}
	for _, old := range c.routes {
		if !slices.ContainsFunc(l.routes, func(r route) bool { return sameRoute(r, old) }) {
			netlink.RouteDel(c.netlinkRoute(old, l))
		}
	}
	c.routes = slices.Clone(l.routes)

	dns, search, err := writeResolvConf(c.cfg.ResolvConf, "DHCP on "+c.ifname, mergeDNS(c.cfg.Net.DNS, l.dns), l.search)
	if err != nil {
		c.log("%s: dhcp: %v", c.ifname, err)
	}

	ones, _ := l.addr.Mask.Size()
	c.state.mu.Lock()
	c.state.addrs = []string{fmt.Sprintf("%s/%d", l.addr.IP, ones)}
	c.state.gateway = ipString(l.gateway)
	c.state.dns = dns
	c.state.search = search
	c.state.ntp = slices.Clone(l.ntp)
	if l.infinite {
		c.state.expiry = time.Time{}
	} else {
		c.state.expiry = l.expiry()
	}
	c.state.mu.Unlock()
	return nil
}

func (c *dhcpClient) netlinkRoute(r route, l *lease) *netlink.Route {
	nr := &netlink.Route{
		LinkIndex: c.link.Attrs().Index,
		Dst:       r.dst,
		Gw:        r.gw,
		Src:       l.addr.IP,
		Protocol:  netlink.RouteProtocol(unix.RTPROT_DHCP),
	}
	if r.gw == nil {
		nr.Scope = netlink.SCOPE_LINK
	} else if !l.addr.Contains(r.gw) {
		// A router outside the leased subnet (common in clouds with /32
		// leases) is still on the link.
		nr.Flags = int(netlink.FLAG_ONLINK)
	}
	return nr
}

func sameRoute(a, b route) bool {
	return a.gw.Equal(b.gw) && (a.dst == nil) == (b.dst == nil) &&
		(a.dst == nil || a.dst.String() == b.dst.String())
}

func routeString(r route) string {
	dst := "default"
	if r.dst != nil {
		dst = r.dst.String()
	}
	if r.gw == nil {
		return dst + " on link"
	}
	return dst + " via " + r.gw.String()
}

// drop removes the current lease from the link.
func (c *dhcpClient) drop() {
	l := c.cur
	if l == nil {
		return
	}
	for _, r := range c.routes {
		netlink.RouteDel(c.netlinkRoute(r, l))
	}
	c.routes = nil
	if err := netlink.AddrDel(c.link, &netlink.Addr{IPNet: l.addr}); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
		c.log("%s: dhcp: removing %s: %v", c.ifname, l.addr, err)
	}
	c.cur = nil
	c.state.mu.Lock()
	c.state.addrs = nil
	c.state.gateway = ""
	c.state.expiry = time.Time{}
	c.state.mu.Unlock()
}
