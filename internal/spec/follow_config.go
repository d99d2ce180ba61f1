package spec

import (
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
)

// FollowConfig is nodeboot.json's "follow": the node polls a tag in an OCI
// registry and applies the signed releases pushed to it (docs/follow.md).
type FollowConfig struct {
	// Ref is registry/repository:tag, the registry always named.
	Ref string `json:"ref"`
	// Interval between checks of the tag, a Go duration ("5m"); "" means
	// DefaultFollowInterval.
	Interval string `json:"interval,omitempty"`
	// Insecure talks plain HTTP to the registry (a test or LAN one).
	Insecure bool `json:"insecure,omitempty"`
}

const (
	// DefaultFollowInterval is how often a node checks its tag.
	DefaultFollowInterval = 5 * time.Minute
	// MinFollowInterval keeps a fleet from hammering its registry; the
	// end-to-end tests use a few seconds.
	MinFollowInterval = time.Second
	// MaxFollowInterval: a node that looks less than daily is not
	// following.
	MaxFollowInterval = 24 * time.Hour
)

var followKeys = []string{"ref", "interval", "insecure"}

// ParseFollowRef checks a followed reference: a tag (not a digest: a
// digest never moves), with its registry written out (a node has no
// "default registry" to fall back on).
func ParseFollowRef(ref string) (name.Tag, error) {
	if strings.Contains(ref, "@") {
		return name.Tag{}, fmt.Errorf("%q names a digest, which never changes: follow a tag, e.g. \"registry.example.com/shop/web:stable\"", ref)
	}
	t, err := name.NewTag(ref, name.StrictValidation)
	if err == nil {
		err = checkRefParts(ref, t)
	}
	if err != nil {
		return name.Tag{}, fmt.Errorf("%q is not a registry/repository:tag reference (%v); write it in full, e.g. \"registry.example.com/shop/web:stable\" or \"127.0.0.1:5000/web:stable\"", ref, err)
	}
	return t, nil
}

// tagRE is the OCI distribution spec's tag grammar, stricter than the
// parser's (which lets a tag start with '.' or '-').
var tagRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)

// checkRefParts refuses what the reference parser lets through but a
// registry would not serve: a registry that is not host[:port] (the parser
// would otherwise fall back to Docker Hub, which a node must not guess) and
// a tag outside the spec's grammar.
func checkRefParts(ref string, t name.Tag) error {
	reg, _, ok := strings.Cut(ref, "/")
	if !ok || reg != t.RegistryStr() {
		return fmt.Errorf("the registry is not written out")
	}
	host, port := reg, ""
	if h, p, err := net.SplitHostPort(reg); err == nil {
		host, port = h, p
	}
	if port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("registry port %q is not a number from 1 to 65535", port)
		}
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if _, err := netip.ParseAddr(host); err != nil && checkHostname(host) != nil {
		return fmt.Errorf("registry %q is not a host name or address", host)
	}
	if !tagRE.MatchString(t.TagStr()) {
		return fmt.Errorf("tag %q must start with a letter, digit or '_' and hold at most 128 of letters, digits, '_', '.', '-'", t.TagStr())
	}
	return nil
}

// ParseFollowInterval reads an interval ("" is the default).
func ParseFollowInterval(s string) (time.Duration, error) {
	if s == "" {
		return DefaultFollowInterval, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration: write it like \"5m\", \"30s\" or \"1h\"", s)
	}
	if d < MinFollowInterval || d > MaxFollowInterval {
		return 0, fmt.Errorf("%s is not between %v and %v", s, MinFollowInterval, MaxFollowInterval)
	}
	return d, nil
}

func (c *configChecker) followConfig(v *jval, p jsonPath) *FollowConfig {
	var f FollowConfig
	members, ok := c.object(v, p)
	if !ok {
		return nil
	}
	hasRef := false
	for _, m := range members {
		if !c.known(m, p, followKeys, nil) {
			continue
		}
		kp := p.key(m.key)
		switch m.key {
		case "ref":
			hasRef = true
			if s, ok := c.str(m.val, kp); ok {
				if _, err := ParseFollowRef(s); err != nil {
					c.fail(kp, "%v", err)
				}
				f.Ref = s
			}
		case "interval":
			if s, ok := c.str(m.val, kp); ok {
				if _, err := ParseFollowInterval(s); err != nil || s == "" {
					if err == nil {
						err = fmt.Errorf(`must not be empty; leave "interval" out for the default, %v`, DefaultFollowInterval)
					}
					c.fail(kp, "%v", err)
				}
				f.Interval = s
			}
		case "insecure":
			if m.val.kind != kindBool {
				c.wrongType(kp, "boolean", m.val)
				break
			}
			f.Insecure = m.val.boolean
		}
	}
	if !hasRef {
		c.fail(p, `missing "ref", the tag to follow, e.g. "ref": "registry.example.com/shop/web:stable"`)
	}
	return &f
}
