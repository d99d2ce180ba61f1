// Package netconf configures the node's network from PID 1, without a shell
// or any external helper: it brings links up over netlink, runs a DHCPv4
// client (or applies a static configuration), keeps the lease alive, writes
// resolv.conf and keeps the system clock in step over NTP.
//
// The Linux implementation lives in the *_linux.go files; on other systems the
// entry points return errors.ErrUnsupported, so that the rest of the tree
// still builds there.
package netconf

import (
	"bytes"
	"fmt"
	"log"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/nodeboot/nodeboot/internal/spec"
)

// Logger receives one human-readable line per network event (lease acquired,
// renewed, lost, clock set, ...). It may be called from several goroutines.
type Logger func(format string, args ...any)

// Config is what Start needs to configure one link.
type Config struct {
	// Net is the node's network configuration (mode, static address, DNS, NTP).
	Net spec.Network
	// Hostname is sent to the DHCP server (option 12); empty sends none.
	Hostname string
	// ResolvConf is the path of the resolv.conf to write (atomically, through
	// a temporary file in the same directory), e.g. /run/resolv.conf.
	// Empty means do not write one.
	ResolvConf string
	// Log receives the events; nil logs through the standard log package.
	Log Logger
	// NTPSet sets the clock once NTP has answered; nil sets the system clock
	// (settimeofday).
	NTPSet func(time.Time) error
	// NTPAdjust, when set, receives each NTP answer (server, offset) instead
	// of NTPSet: PID 1 passes internal/clock's Adjust, which steps or
	// slews and reports the sync.
	NTPAdjust func(server string, offset time.Duration) error

	// Interface is the link to configure; empty means FirstEthernet().
	Interface string
	// Timeout bounds how long Start waits for the first DHCP lease: zero means
	// DefaultTimeout, a negative value waits until ctx is done.
	Timeout time.Duration
	// NoTimeSync, when set, keeps Start from running SyncTime once the
	// network is configured.
	NoTimeSync bool
}

// DefaultTimeout is how long Start waits for a first DHCP lease unless
// Config.Timeout says otherwise.
const DefaultTimeout = 30 * time.Second

// DefaultNTPServers are asked when the configuration names no NTP server.
var DefaultNTPServers = []string{
	"0.pool.ntp.org",
	"1.pool.ntp.org",
	"2.pool.ntp.org",
	"3.pool.ntp.org",
}

// State is the live configuration of the link, for status reporting. Its
// methods are safe for concurrent use; the DHCP goroutine updates it on every
// renewal or loss of the lease.
type State struct {
	mu       sync.Mutex
	iface    string
	mode     string
	addrs    []string
	gateway  string
	dns      []string
	search   []string
	ntp      []string
	expiry   time.Time
	renewals int
}

// Interface is the name of the configured link.
func (s *State) Interface() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.iface
}

// Mode is "dhcp" or "static".
func (s *State) Mode() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mode
}

// Addrs are the addresses configured on the link, in CIDR notation
// ("10.0.2.15/24"); empty while a lost lease is being re-acquired.
func (s *State) Addrs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.addrs)
}

// Gateway is the default router, or "" when there is none.
func (s *State) Gateway() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gateway
}

// DNS are the nameservers written to resolv.conf, in order.
func (s *State) DNS() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.dns)
}

// Search are the search domains written to resolv.conf.
func (s *State) Search() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.search)
}

// NTPServers are the NTP servers the DHCP server announced (option 42).
func (s *State) NTPServers() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.ntp)
}

// LeaseExpiry is when the current DHCP lease runs out; zero for a static
// configuration, an infinite lease, or while no lease is held.
func (s *State) LeaseExpiry() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.expiry
}

// Renewals counts the successful renewals and rebindings of the lease.
func (s *State) Renewals() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.renewals
}

func (c *Config) logger() Logger {
	if c.Log != nil {
		return c.Log
	}
	return log.Printf
}

// mergeDNS lists the nameservers for resolv.conf: the configured ones first
// (so that they override), then the learned ones, without duplicates or
// invalid entries.
func mergeDNS(configured, learned []string) []string {
	var out []string
	for _, s := range slices.Concat(configured, learned) {
		a, ok := parseNameserver(s)
		if !ok {
			continue
		}
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

func parseNameserver(s string) (string, bool) {
	a, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil || !a.IsValid() || a.IsUnspecified() {
		return "", false
	}
	return a.Unmap().String(), true
}

// maxNameservers is how many nameserver lines the C resolvers read (MAXNS).
const maxNameservers = 3

// Limits of the search line in older C resolvers.
const (
	maxSearchDomains = 6
	maxSearchLen     = 256
)

// cleanDomain returns s as a DNS domain fit for a resolv.conf search line, or
// false. DHCP options are untrusted input: anything that is not a plain host
// name (spaces, newlines, other punctuation) is refused rather than copied,
// so that a server cannot inject directives into resolv.conf.
func cleanDomain(s string) (string, bool) {
	s = strings.TrimRight(strings.TrimSpace(s), ".\x00")
	if s == "" || len(s) > 253 {
		return "", false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return "", false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return "", false
			}
		}
	}
	return strings.ToLower(s), true
}

// searchDomains turns the raw domain strings (option 15 may hold several,
// space separated; option 119 is already a list) into a clean search list.
func searchDomains(raw ...string) []string {
	var out []string
	n := len("search")
	for _, r := range raw {
		// Some servers NUL-terminate the option; any other control
		// character makes the whole value suspect.
		r = strings.TrimRight(r, "\x00")
		if strings.ContainsFunc(r, unicode.IsControl) {
			continue
		}
		for _, f := range strings.Fields(r) {
			d, ok := cleanDomain(f)
			if !ok || slices.Contains(out, d) {
				continue
			}
			if len(out) == maxSearchDomains || n+1+len(d) > maxSearchLen {
				return out
			}
			out = append(out, d)
			n += 1 + len(d)
		}
	}
	return out
}

// renderResolvConf renders a resolv.conf. source says where the data comes
// from, for the header comment. Invalid nameservers are dropped and at most
// maxNameservers are written; search domains are sanitized the same way.
func renderResolvConf(source string, nameservers, search []string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Written by nodeboot at boot (%s). Do not edit: it is rewritten on every lease change.\n", source)
	n := 0
	for _, ns := range mergeDNS(nil, nameservers) {
		if n == maxNameservers {
			break
		}
		fmt.Fprintf(&b, "nameserver %s\n", ns)
		n++
	}
	if s := searchDomains(search...); len(s) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(s, " "))
	}
	return b.Bytes()
}

// writeFileAtomic replaces path with data: it writes a temporary file in the
// same directory, syncs it and renames it over path, so that a reader never
// sees a partial file.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	ok = true
	return nil
}

// writeResolvConf writes resolv.conf at path ("" writes nothing) and returns
// the nameservers and search domains it holds.
func writeResolvConf(path, source string, nameservers, search []string) ([]string, []string, error) {
	ns := mergeDNS(nil, nameservers)
	if len(ns) > maxNameservers {
		ns = ns[:maxNameservers]
	}
	sd := searchDomains(search...)
	if path == "" {
		return ns, sd, nil
	}
	if err := writeFileAtomic(path, renderResolvConf(source, ns, sd), 0o644); err != nil {
		return ns, sd, fmt.Errorf("writing %s: %w", path, err)
	}
	return ns, sd, nil
}

// NTPServerList is the order in which time is asked for: the servers learned
// from DHCP (option 42) first, then the configured ones, or DefaultNTPServers
// when none are configured. Duplicates are dropped.
func NTPServerList(fromDHCP, configured []string) []string {
	if len(configured) == 0 {
		configured = DefaultNTPServers
	}
	var out []string
	for _, s := range slices.Concat(fromDHCP, configured) {
		s = strings.TrimSpace(s)
		if s != "" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}
