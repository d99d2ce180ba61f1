package netconf

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// LoopbackUp brings lo up; the kernel then gives it 127.0.0.1/8 and ::1.
func LoopbackUp() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return fmt.Errorf("loopback up: %w", err)
	}
	return nil
}

// FirstEthernet returns the name of the first Ethernet link (ARPHRD_ETHER,
// not loopback), in ifindex order. Physical devices come before virtual ones
// of the same hardware type (veth, bridge, ...), so that a virtual link the
// kernel happens to create early is not picked over the NIC.
func FirstEthernet() (string, error) {
	links, err := linkList()
	if err != nil {
		return "", fmt.Errorf("listing links: %w", err)
	}
	var eth []netlink.Link
	for _, l := range links {
		a := l.Attrs()
		if a.EncapType != "ether" || a.Flags&net.FlagLoopback != 0 {
			continue
		}
		eth = append(eth, l)
	}
	if len(eth) == 0 {
		return "", errors.New("no Ethernet link found")
	}
	physical := func(l netlink.Link) int {
		if l.Type() == "device" {
			return 0
		}
		return 1
	}
	slices.SortFunc(eth, func(a, b netlink.Link) int {
		if d := physical(a) - physical(b); d != 0 {
			return d
		}
		return a.Attrs().Index - b.Attrs().Index
	})
	return eth[0].Attrs().Name, nil
}

func linkList() ([]netlink.Link, error) {
	var err error
	for range 5 {
		var links []netlink.Link
		links, err = netlink.LinkList()
		if err == nil {
			return links, nil
		}
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	return nil, err
}

// Start brings the link up and configures it from cfg.Net: a static address,
// gateway and DNS, or DHCPv4. With DHCP it returns once the first lease is
// applied (address with the lease's netmask and broadcast, default route,
// MTU, resolv.conf), or with an error when ctx is done or cfg.Timeout passes
// first; a goroutine then keeps the lease (renewing at T1, rebinding at T2,
// starting over when it expires) until ctx is done. Unless cfg.NoTimeSync is
// set, Start also runs SyncTime in the background once the address is up.
func Start(ctx context.Context, cfg Config) (*State, error) {
	log := cfg.logger()
	switch cfg.Net.Mode {
	case "", "dhcp", "static":
	default:
		return nil, fmt.Errorf("network mode %q: want \"dhcp\" or \"static\"", cfg.Net.Mode)
	}
	ifname := cfg.Interface
	if ifname == "" {
		var err error
		if ifname, err = FirstEthernet(); err != nil {
			return nil, err
		}
	}
	link, err := netlink.LinkByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("link %s: %w", ifname, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return nil, fmt.Errorf("link %s up: %w", ifname, err)
	}
	st := &State{iface: ifname}
	var ntpFromDHCP []string
	switch cfg.Net.Mode {
	case "static":
		if err := startStatic(cfg, link, st, log); err != nil {
			return nil, err
		}
	default:
		c, err := newDHCPClient(cfg, link, st, log)
		if err != nil {
			return nil, err
		}
		if err := c.start(ctx); err != nil {
			return nil, err
		}
		ntpFromDHCP = st.NTPServers()
	}
	if !cfg.NoTimeSync {
		if cfg.NTPAdjust != nil {
			SyncTimeWith(ctx, NTPServerList(ntpFromDHCP, cfg.Net.NTP), log, cfg.NTPAdjust)
		} else {
			SyncTime(ctx, NTPServerList(ntpFromDHCP, cfg.Net.NTP), log, cfg.NTPSet)
		}
	}
	return st, nil
}

// startStatic applies a static configuration.
func startStatic(cfg Config, link netlink.Link, st *State, log Logger) error {
	ifname := link.Attrs().Name
	if cfg.Net.Address == "" {
		return errors.New("static network: no address")
	}
	pfx, err := netip.ParsePrefix(cfg.Net.Address)
	if err != nil {
		return fmt.Errorf("static network address: %w", err)
	}
	ip := pfx.Addr().Unmap()
	bits := pfx.Bits()
	if pfx.Addr().Is4In6() {
		bits -= 96
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(bits, ip.BitLen())}}
	if ip.Is6() {
		// The address is the administrator's own choice: skip duplicate
		// address detection, which would keep it tentative (unusable) for
		// a second or more.
		addr.Flags = unix.IFA_F_NODAD
	}
	if err := netlink.AddrReplace(link, addr); err != nil {
		return fmt.Errorf("adding %s to %s: %w", addr.IPNet, ifname, err)
	}
	subnet := netip.PrefixFrom(ip, bits).Masked()
	var gateway string
	if cfg.Net.Gateway != "" {
		gw, err := netip.ParseAddr(cfg.Net.Gateway)
		if err != nil {
			return fmt.Errorf("static network gateway: %w", err)
		}
		gw = gw.Unmap()
		if gw.Is4() != ip.Is4() {
			return fmt.Errorf("static network: gateway %s and address %s are of different families", gw, ip)
		}
		r := &netlink.Route{
			LinkIndex: link.Attrs().Index,
			Gw:        gw.AsSlice(),
			Protocol:  netlink.RouteProtocol(unix.RTPROT_STATIC),
		}
		if !subnet.Contains(gw) {
			r.Flags = int(netlink.FLAG_ONLINK)
		}
		if err := netlink.RouteReplace(r); err != nil {
			return fmt.Errorf("default route via %s: %w", gw, err)
		}
		gateway = gw.String()
	}
	for _, d := range cfg.Net.DNS {
		if _, ok := parseNameserver(d); !ok {
			return fmt.Errorf("static network: invalid DNS server %q", d)
		}
	}
	dns, search, err := writeResolvConf(cfg.ResolvConf, "static configuration", cfg.Net.DNS, nil)
	if err != nil {
		return err
	}
	st.mu.Lock()
	st.mode = "static"
	st.addrs = []string{netip.PrefixFrom(ip, bits).String()}
	st.gateway = gateway
	st.dns = dns
	st.search = search
	st.mu.Unlock()
	log("%s: static address %s, gateway %s, dns %v", ifname, netip.PrefixFrom(ip, bits), orNone(gateway), dns)
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// waitCarrier waits (at most max) for the link to report its carrier, so that
// the first DHCP packet is not sent into a link that drops it. The carrier
// flag (IFF_LOWER_UP) is read directly, as the operational state may lag
// behind it; links whose driver reports no operational state count as up.
func waitCarrier(ctx context.Context, index int, max time.Duration) bool {
	deadline := time.Now().Add(max)
	for {
		l, err := netlink.LinkByIndex(index)
		if err == nil {
			a := l.Attrs()
			if a.RawFlags&unix.IFF_LOWER_UP != 0 || a.OperState == netlink.OperUp || a.OperState == netlink.OperUnknown {
				return true
			}
		}
		if time.Now().After(deadline) || !sleepCtx(ctx, 10*time.Millisecond) {
			return false
		}
	}
}

// setSystemClock steps the system clock to t.
func setSystemClock(t time.Time) error {
	tv := unix.NsecToTimeval(t.UnixNano())
	return unix.Settimeofday(&tv)
}
