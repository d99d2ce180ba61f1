package noderuntime

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/Masterminds/semver/v3"
)

// Spec is a --node version spec: a major ("22"), a major.minor ("22.21") or an
// exact version ("22.21.1", optionally with a prerelease). A partial spec
// matches every stable release under it, the way people say "node 22".
type Spec struct {
	Major, Minor, Patch uint64
	// Parts is how many of Major/Minor/Patch were given (1..3).
	Parts int
	// Pre is the prerelease of an exact spec ("rc.1" in "22.0.0-rc.1").
	Pre string
	raw string
}

// ParseSpec parses a --node version spec. A leading "v" is accepted because
// that is how `node -v` and nodejs.org spell versions; a trailing ".x" is
// accepted as a spelling of a partial spec.
func ParseSpec(s string) (*Spec, error) {
	raw := s
	s = strings.TrimSpace(s)
	if len(s) > 0 && (s[0] == 'v' || s[0] == 'V') {
		s = s[1:]
	}
	if s == "" {
		return nil, fmt.Errorf("invalid node version %q: want a version like 22, 22.21 or 22.21.1", raw)
	}
	if strings.ContainsAny(s, "-+") {
		// Only an exact version can carry a prerelease or build suffix; let
		// semver validate it strictly.
		v, err := semver.StrictNewVersion(s)
		if err != nil {
			return nil, fmt.Errorf("invalid node version %q: %w", raw, err)
		}
		return &Spec{Major: v.Major(), Minor: v.Minor(), Patch: v.Patch(), Parts: 3, Pre: v.Prerelease(), raw: raw}, nil
	}
	parts := strings.Split(s, ".")
	for len(parts) > 1 && (parts[len(parts)-1] == "x" || parts[len(parts)-1] == "X" || parts[len(parts)-1] == "*") {
		parts = parts[:len(parts)-1]
	}
	if len(parts) > 3 {
		return nil, fmt.Errorf("invalid node version %q: want a version like 22, 22.21 or 22.21.1", raw)
	}
	sp := &Spec{Parts: len(parts), raw: raw}
	dst := []*uint64{&sp.Major, &sp.Minor, &sp.Patch}
	for i, p := range parts {
		n, err := parseNumber(p)
		if err != nil {
			return nil, fmt.Errorf("invalid node version %q: %w", raw, err)
		}
		*dst[i] = n
	}
	return sp, nil
}

// parseNumber accepts what semver accepts for a version component: decimal
// digits without leading zeros.
func parseNumber(p string) (uint64, error) {
	if p == "" {
		return 0, fmt.Errorf("empty version component")
	}
	for _, c := range p {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("version component %q is not a number", p)
		}
	}
	if len(p) > 1 && p[0] == '0' {
		return 0, fmt.Errorf("version component %q has a leading zero", p)
	}
	return strconv.ParseUint(p, 10, 64)
}

// Exact reports whether the spec names a single version, which lets Resolve
// answer from the cache without asking the registry.
func (s *Spec) Exact() bool { return s.Parts == 3 }

// String is the canonical form of the spec: "22", "22.21", "22.21.1".
func (s *Spec) String() string {
	switch s.Parts {
	case 1:
		return fmt.Sprintf("%d", s.Major)
	case 2:
		return fmt.Sprintf("%d.%d", s.Major, s.Minor)
	}
	v := fmt.Sprintf("%d.%d.%d", s.Major, s.Minor, s.Patch)
	if s.Pre != "" {
		v += "-" + s.Pre
	}
	return v
}

// Matches reports whether v is selected by the spec. Partial specs never match
// prereleases: "22" should not pick 22.0.0-rc.1 over nothing.
func (s *Spec) Matches(v *semver.Version) bool {
	if v.Major() != s.Major {
		return false
	}
	if s.Parts >= 2 && v.Minor() != s.Minor {
		return false
	}
	if s.Parts == 3 {
		return v.Patch() == s.Patch && v.Prerelease() == s.Pre
	}
	return v.Prerelease() == ""
}

// ParseEngines parses package.json's engines.node. "" means any version and
// yields nil.
func ParseEngines(s string) (*semver.Constraints, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	c, err := semver.NewConstraint(s)
	if err != nil {
		return nil, fmt.Errorf("engines.node %q is not a valid semver range: %w", s, err)
	}
	return c, nil
}

// parseNodeVersion turns "v22.21.1" (node -v output, package.json version)
// into a semver.Version.
func parseNodeVersion(s string) (*semver.Version, error) {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "v")
	return semver.StrictNewVersion(s)
}
