package spec

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
)

// appNameRE is what an app name must look like. The name becomes a Unix user
// name (useradd's default rule is [a-z_][a-z0-9_-]*, at most 32 characters), a
// directory under /apps and /data/state, and the default host name, which
// must be an RFC 1123 label: the intersection is lower-case letters, digits
// and inner hyphens, starting with a letter. docs/nodeboot.schema.json repeats
// this pattern; the schema test keeps the two equal.
var appNameRE = regexp.MustCompile(`^[a-z]([a-z0-9-]{0,30}[a-z0-9])?$`)

// reservedAppNames would collide with the system accounts of the image.
var reservedAppNames = []string{"root", "nobody"}

// maxAppName is the longest user name the common Linux tools accept.
const maxAppName = 32

// defaultAppName is used when package.json has no usable name.
const defaultAppName = "app"

// checkAppName says what is wrong with an app name, or returns nil.
func checkAppName(name string) error {
	if !appNameRE.MatchString(name) {
		return fmt.Errorf("%q is not a valid app name: use 1-%d lower-case letters, digits and hyphens, starting with a letter and not ending with a hyphen (it becomes a Unix user name and a directory)", name, maxAppName)
	}
	for _, r := range reservedAppNames {
		if name == r {
			return fmt.Errorf("%q is not a valid app name: it is a system account of the image", name)
		}
	}
	return nil
}

// SanitizeName turns a package.json name into an app name: the npm scope is
// dropped (@acme/api -> api), everything outside [a-z0-9] becomes a hyphen,
// leading characters that are not letters are dropped, and the result is cut
// to 32 characters. It returns "app" when nothing is left.
func SanitizeName(pkgName string) string {
	s := strings.ToLower(strings.TrimSpace(pkgName))
	if strings.HasPrefix(s, "@") {
		if i := strings.IndexByte(s, '/'); i >= 0 {
			s = s[i+1:]
		}
	}
	var b strings.Builder
	hyphen := false
	for _, r := range s {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			if b.Len() == 0 && r >= '0' && r <= '9' {
				continue // must start with a letter
			}
			b.WriteRune(r)
			hyphen = false
			continue
		}
		if b.Len() > 0 && !hyphen {
			b.WriteByte('-')
			hyphen = true
		}
	}
	out := b.String()
	if len(out) > maxAppName {
		out = out[:maxAppName]
	}
	out = strings.TrimRight(out, "-")
	if out == "" {
		return defaultAppName
	}
	return out
}

// hostnameLabelRE is one RFC 1123 label: letters, digits and inner hyphens, at
// most 63 characters.
var hostnameLabelRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)

// checkHostname accepts one or more dot-separated RFC 1123 labels, at most
// 253 characters in all (the limits of sethostname and DNS).
func checkHostname(h string) error {
	if h == "" {
		return fmt.Errorf("must not be empty")
	}
	if len(h) > 253 {
		return fmt.Errorf("%q is longer than 253 characters", h)
	}
	for _, l := range strings.Split(h, ".") {
		if !hostnameLabelRE.MatchString(l) {
			return fmt.Errorf("%q is not a valid host name: use letters, digits and hyphens (not at the start or end of a dot-separated part, each part 1-63 characters), e.g. \"myapp\"", h)
		}
	}
	return nil
}

// checkNTPServer accepts a host name or IP address, optionally with a port
// ("ntp.example.com", "10.0.0.1", "fd00::1", "10.0.0.1:1123"; an IPv6
// address takes no port here).
func checkNTPServer(s string) error {
	if _, err := parseIP(s); err == nil {
		return nil
	}
	if strings.Count(s, ":") > 1 {
		return fmt.Errorf("%q is neither a host name nor an IP address: an IPv6 server takes no port here, give the address alone, e.g. \"fd00::1\"", s)
	}
	host := s
	if h, port, ok := strings.Cut(s, ":"); ok {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
			return fmt.Errorf("%q: the port after the colon must be a number from 1 to 65535", s)
		}
		host = h
	}
	if checkHostname(host) != nil {
		return fmt.Errorf("%q is neither a host name nor an IP address (optionally with :port), e.g. \"pool.ntp.org\" or \"10.0.0.1:123\"", s)
	}
	return nil
}

// parseIP accepts a plain IPv4 or IPv6 address. Zones (fe80::1%eth0) are
// refused: the interface is chosen by the node, not the config.
func parseIP(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%q is not an IP address", s)
	}
	if a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%q has an interface zone; give the address alone", s)
	}
	return a, nil
}

// suggest returns the known key closest to an unknown one, if any is close
// enough to be a likely typo.
func suggest(key string, known []string) string {
	best, bestD := "", 3
	lk := strings.ToLower(key)
	for _, k := range known {
		d := editDistance(lk, strings.ToLower(k))
		if d < bestD && d <= len(k)/2 {
			best, bestD = k, d
		}
	}
	return best
}

// editDistance is the optimal-string-alignment distance between a and b, by
// bytes: insertions, deletions, substitutions and swaps of neighbours each
// cost 1, so the common typos "dsn" and "mdoe" are one edit away.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 { // keys that long are no typo of ours
		return 1 << 30
	}
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
