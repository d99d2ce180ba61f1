package noderuntime

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/Masterminds/semver/v3"
)

// Release is one installable version of a node-linux-* package as listed in
// the registry's packument.
type Release struct {
	Package   string
	Version   *semver.Version
	Tarball   string
	Integrity string // SRI string, "" if the registry gave none
	Shasum    string // hex sha1, the legacy fallback
}

// Packument is the part of a registry package document nodeboot uses. It
// comes from the network, so parsing is lenient per version: one malformed
// version entry is skipped instead of making every version unusable.
type Packument struct {
	Name     string
	Releases []*Release
	// Skipped counts entries that exist but can't be used (unparsable,
	// deprecated, no tarball, needs an install script), for error messages.
	Skipped int
}

type rawPackument struct {
	Name     string                     `json:"name"`
	Versions map[string]json.RawMessage `json:"versions"`
}

type rawVersion struct {
	Version          string            `json:"version"`
	Deprecated       json.RawMessage   `json:"deprecated"`
	Scripts          map[string]string `json:"scripts"`
	HasInstallScript bool              `json:"hasInstallScript"`
	Dist             struct {
		Tarball   string `json:"tarball"`
		Integrity string `json:"integrity"`
		Shasum    string `json:"shasum"`
	} `json:"dist"`
}

// ParsePackument parses a packument in either the full or the abbreviated
// ("application/vnd.npm.install-v1+json") format.
func ParsePackument(pkg string, data []byte) (*Packument, error) {
	var raw rawPackument
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("registry document for %s is not valid JSON: %w", pkg, err)
	}
	if raw.Name != "" && raw.Name != pkg {
		// A proxy or misconfigured registry answering with another package
		// would otherwise hand us someone else's binary.
		return nil, fmt.Errorf("registry answered with package %q when asked for %s", raw.Name, pkg)
	}
	p := &Packument{Name: pkg}
	for key, msg := range raw.Versions {
		var rv rawVersion
		if err := json.Unmarshal(msg, &rv); err != nil {
			p.Skipped++
			continue
		}
		v, err := semver.StrictNewVersion(key)
		if err != nil || (rv.Version != "" && rv.Version != key) {
			p.Skipped++
			continue
		}
		// Old node-linux-* releases (0.x, 4.0) ship a nested tarball and
		// unpack it in preinstall; nodeboot never runs package scripts, so
		// those have no bin/node for us.
		if rv.HasInstallScript || rv.Scripts["preinstall"] != "" || rv.Scripts["install"] != "" || rv.Scripts["postinstall"] != "" {
			p.Skipped++
			continue
		}
		if isDeprecated(rv.Deprecated) {
			p.Skipped++
			continue
		}
		if rv.Dist.Tarball == "" || (rv.Dist.Integrity == "" && rv.Dist.Shasum == "") {
			p.Skipped++
			continue
		}
		p.Releases = append(p.Releases, &Release{
			Package:   pkg,
			Version:   v,
			Tarball:   rv.Dist.Tarball,
			Integrity: rv.Dist.Integrity,
			Shasum:    strings.ToLower(rv.Dist.Shasum),
		})
	}
	// Map order is random; sort so ties (versions equal but for build
	// metadata) resolve the same way on every run.
	slices.SortFunc(p.Releases, func(a, b *Release) int {
		if c := a.Version.Compare(b.Version); c != 0 {
			return c
		}
		return strings.Compare(a.Version.Original(), b.Version.Original())
	})
	return p, nil
}

// isDeprecated: npm marks deprecated versions with a non-empty message string;
// anything else (absent, "", false) means not deprecated.
func isDeprecated(m json.RawMessage) bool {
	var s string
	if json.Unmarshal(m, &s) == nil {
		return s != ""
	}
	return false
}

// Newest returns the highest stable release, nil if there is none.
func (p *Packument) Newest() *Release {
	var best *Release
	for _, r := range p.Releases {
		if r.Version.Prerelease() != "" {
			continue
		}
		if best == nil || r.Version.GreaterThan(best.Version) {
			best = r
		}
	}
	return best
}

// Select picks the highest release matching spec (nil = any) that also
// satisfies engines (nil = any); engines is the raw engines.node text for
// messages. Prereleases are only chosen when the spec names one exactly.
func (p *Packument) Select(spec *Spec, engines *semver.Constraints, enginesRaw string) (*Release, error) {
	newest := p.Newest()
	if newest == nil {
		return nil, fmt.Errorf("the registry lists no usable release of %s (%d skipped: unparsable, deprecated, unverifiable or needing an install script)", p.Name, p.Skipped)
	}
	var bySpec, best *Release
	for _, r := range p.Releases {
		if spec != nil {
			if !spec.Matches(r.Version) {
				continue
			}
		} else if r.Version.Prerelease() != "" {
			continue
		}
		if bySpec == nil || r.Version.GreaterThan(bySpec.Version) {
			bySpec = r
		}
		if engines != nil && !engines.Check(r.Version) {
			continue
		}
		if best == nil || r.Version.GreaterThan(best.Version) {
			best = r
		}
	}
	if best != nil {
		return best, nil
	}
	switch {
	case spec != nil && bySpec == nil:
		hint := ""
		if n := p.newestInMajor(spec.Major); n != nil {
			hint = fmt.Sprintf("; newest %d.x is %s", spec.Major, n.Version)
		}
		return nil, fmt.Errorf("no release of %s matches --node %s (newest is %s%s): pass another version or a path to a node binary",
			p.Name, spec, newest.Version, hint)
	case spec != nil:
		return nil, fmt.Errorf("--node %s selects %s (newest matching is %s) but none of its releases satisfies engines.node %q: change --node or engines.node",
			spec, p.Name, bySpec.Version, enginesRaw)
	default:
		return nil, fmt.Errorf("no release of %s satisfies engines.node %q (newest is %s): change engines.node or pass --node",
			p.Name, enginesRaw, newest.Version)
	}
}

func (p *Packument) newestInMajor(major uint64) *Release {
	var best *Release
	for _, r := range p.Releases {
		if r.Version.Major() != major || r.Version.Prerelease() != "" {
			continue
		}
		if best == nil || r.Version.GreaterThan(best.Version) {
			best = r
		}
	}
	return best
}
