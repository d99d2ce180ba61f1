package netconf

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// ackSeed is a well-formed ACK with the options the client reads.
func ackSeed(t testing.TB, mods ...dhcpv4.Modifier) []byte {
	ack, err := dhcpv4.New(append([]dhcpv4.Modifier{
		dhcpv4.WithMessageType(dhcpv4.MessageTypeAck),
		dhcpv4.WithYourIP(net.IPv4(10, 0, 2, 15)),
		dhcpv4.WithNetmask(net.CIDRMask(24, 32)),
		dhcpv4.WithServerIP(net.IPv4(10, 0, 2, 2)),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(10, 0, 2, 2))),
		dhcpv4.WithRouter(net.IPv4(10, 0, 2, 2)),
		dhcpv4.WithDNS(net.IPv4(10, 0, 2, 3)),
		dhcpv4.WithLeaseTime(86400),
		dhcpv4.WithOption(dhcpv4.OptDomainName("example.org")),
	}, mods...)...)
	if err != nil {
		t.Fatal(err)
	}
	return ack.ToBytes()
}

// FuzzParseLease feeds arbitrary packets, as a DHCP server (or anyone on
// the LAN answering first) could send them, to the lease decoder PID 1
// configures the network and writes resolv.conf from. It must never
// panic (a panic there once meant a kernel panic), and what it accepts
// must be a lease the client can use: an IPv4 address, renewal before
// rebinding before expiry, and nameserver and search lines that cannot
// inject anything into resolv.conf.
func FuzzParseLease(f *testing.F) {
	f.Add(ackSeed(f))
	f.Add(ackSeed(f, dhcpv4.WithLeaseTime(0xffffffff)))
	f.Add(ackSeed(f, dhcpv4.WithLeaseTime(1), dhcpv4.WithOption(dhcpv4.OptRenewTimeValue(5*time.Second))))
	f.Add(ackSeed(f, dhcpv4.WithOption(dhcpv4.OptDomainName("a b\nnameserver 6.6.6.6"))))
	f.Add(ackSeed(f, dhcpv4.WithOption(dhcpv4.OptClasslessStaticRoute(
		&dhcpv4.Route{Dest: &net.IPNet{IP: net.IPv4(0, 0, 0, 0), Mask: net.CIDRMask(0, 32)}, Router: net.IPv4(10, 0, 2, 1)},
		&dhcpv4.Route{Dest: &net.IPNet{IP: net.IPv4(192, 168, 0, 0), Mask: net.CIDRMask(16, 32)}, Router: net.IPv4(0, 0, 0, 0)},
	))))
	f.Fuzz(func(t *testing.T, data []byte) {
		ack, err := dhcpv4.FromBytes(data)
		if err != nil {
			return
		}
		start := time.Unix(1_700_000_000, 0)
		l, err := parseLease(ack, start)
		if err != nil {
			return
		}
		if l.addr.IP.To4() == nil || l.addr.IP.IsUnspecified() {
			t.Fatalf("accepted address %v", l.addr)
		}
		if !l.infinite && !(0 < l.t1 && l.t1 < l.t2 && l.t2 < l.duration && l.duration >= dhcpMinLease) {
			t.Fatalf("timers t1 %v, t2 %v, lease %v", l.t1, l.t2, l.duration)
		}
		if l.mtu != 0 && l.mtu < 576 {
			t.Fatalf("mtu %d", l.mtu)
		}
		_ = l.String()
		conf := string(renderResolvConf("dhcp", l.dns, l.search))
		for _, line := range strings.Split(strings.TrimSuffix(conf, "\n"), "\n") {
			if !strings.HasPrefix(line, "# Written by nodeboot") && !strings.HasPrefix(line, "nameserver ") && !strings.HasPrefix(line, "search ") {
				t.Fatalf("resolv.conf line %q from %q / %q", line, l.dns, l.search)
			}
		}
	})
}
