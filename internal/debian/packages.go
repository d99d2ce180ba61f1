package debian

import (
	"encoding/hex"
	"fmt"
	"io"
	"path"
	"sort"
	"strconv"
	"strings"

	"pault.ag/go/debian/control"
	"pault.ag/go/debian/version"
)

// Package is one binary package of a Packages index.
type Package struct {
	Name, Version, Architecture string
	Filename                    string // path under the mirror's base URL (pool/...)
	Size                        int64
	SHA256                      string
	// Depends and PreDepends: each element is a list of alternatives
	// (a | b), each a package name (versions and arch qualifiers dropped:
	// the index holds one version of each name).
	Depends  [][]string
	Provides []string
}

// Index is one architecture's Packages of a suite.
type Index struct {
	Arch     string
	Release  *Release
	packages map[string]*Package
	provides map[string][]*Package
}

// ParsePackages reads a Packages index. Entries for other architectures
// than arch and "all" are skipped; an entry without Package, Version,
// Filename, Size or a SHA256 is an error, since nothing could verify it.
func ParsePackages(r io.Reader, arch string) (*Index, error) {
	pr, err := control.NewParagraphReader(r, nil)
	if err != nil {
		return nil, fmt.Errorf("Packages: %w", err)
	}
	ix := &Index{Arch: arch, packages: map[string]*Package{}, provides: map[string][]*Package{}}
	for {
		p, err := pr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("Packages: %w", err)
		}
		v := p.Values
		pkg := &Package{
			Name: v["Package"], Version: v["Version"], Architecture: v["Architecture"],
			Filename: v["Filename"], SHA256: strings.ToLower(v["SHA256"]),
		}
		if pkg.Architecture != arch && pkg.Architecture != "all" {
			continue
		}
		if pkg.Name == "" || pkg.Version == "" || pkg.Filename == "" {
			return nil, fmt.Errorf("Packages: an entry lacks Package, Version or Filename (%q %q)", pkg.Name, pkg.Version)
		}
		if b, err := hex.DecodeString(pkg.SHA256); err != nil || len(b) != 32 {
			return nil, fmt.Errorf("Packages: %s has no valid SHA256", pkg.Name)
		}
		if pkg.Size, err = strconv.ParseInt(v["Size"], 10, 64); err != nil || pkg.Size < 0 {
			return nil, fmt.Errorf("Packages: %s has no valid Size", pkg.Name)
		}
		if err := checkPoolPath(pkg.Filename); err != nil {
			return nil, fmt.Errorf("Packages: %s: %w", pkg.Name, err)
		}
		pkg.Depends = append(parseDeps(v["Pre-Depends"]), parseDeps(v["Depends"])...)
		for _, alt := range parseDeps(v["Provides"]) {
			pkg.Provides = append(pkg.Provides, alt...)
		}
		if old, ok := ix.packages[pkg.Name]; ok && !newer(pkg.Version, old.Version) {
			continue
		}
		ix.packages[pkg.Name] = pkg
	}
	for _, p := range ix.packages {
		for _, pv := range p.Provides {
			ix.provides[pv] = append(ix.provides[pv], p)
		}
	}
	for _, l := range ix.provides {
		sort.Slice(l, func(i, j int) bool { return l[i].Name < l[j].Name })
	}
	return ix, nil
}

// checkPoolPath refuses a Filename that would leave the mirror or the
// cache: it becomes part of a URL and of a cache file name.
func checkPoolPath(p string) error {
	if p == "" || path.IsAbs(p) || path.Clean(p) != p || strings.HasPrefix(p, "../") || p == ".." || strings.ContainsAny(p, "\\?#\x00") {
		return fmt.Errorf("unsafe Filename %q", p)
	}
	return nil
}

// parseDeps reads "a (>= 1) | b:any, c [amd64]" into [[a b] [c]].
func parseDeps(s string) [][]string {
	var out [][]string
	for _, clause := range strings.Split(s, ",") {
		var alts []string
		for _, alt := range strings.Split(clause, "|") {
			alt = strings.TrimSpace(alt)
			if i := strings.IndexAny(alt, " ([<"); i >= 0 {
				alt = alt[:i]
			}
			alt, _, _ = strings.Cut(alt, ":")
			if alt != "" {
				alts = append(alts, alt)
			}
		}
		if len(alts) > 0 {
			out = append(out, alts)
		}
	}
	return out
}

// newer tells whether version a sorts after b in dpkg's order, to pick
// between duplicate entries of one index (rare: a suite lists one version
// per name). An unparsable version is never newer.
func newer(a, b string) bool {
	va, err := version.Parse(a)
	if err != nil {
		return false
	}
	vb, err := version.Parse(b)
	if err != nil {
		return true
	}
	return version.Compare(va, vb) > 0
}

// Get returns the package named name.
func (ix *Index) Get(name string) (*Package, bool) {
	p, ok := ix.packages[name]
	return p, ok
}

// Len is the number of packages in the index.
func (ix *Index) Len() int { return len(ix.packages) }

// Closure returns names and everything they depend on (Pre-Depends and
// Depends; the first alternative the index has, real or provided), sorted
// by name. A name missing from the index is an error naming who needs it.
func (ix *Index) Closure(names ...string) ([]*Package, error) {
	seen := map[string]*Package{}
	type item struct{ name, by string }
	queue := []item{}
	for _, n := range names {
		queue = append(queue, item{n, ""})
	}
	for len(queue) > 0 {
		it := queue[0]
		queue = queue[1:]
		p, ok := ix.packages[it.name]
		if !ok {
			if pl := ix.provides[it.name]; len(pl) > 0 {
				p = pl[0]
			}
		}
		if p == nil {
			if it.by == "" {
				return nil, fmt.Errorf("package %s is not in the %s index of %s", it.name, ix.Arch, ix.suiteName())
			}
			return nil, fmt.Errorf("package %s (needed by %s) is not in the %s index of %s", it.name, it.by, ix.Arch, ix.suiteName())
		}
		if _, ok := seen[p.Name]; ok {
			continue
		}
		seen[p.Name] = p
		for _, alts := range p.Depends {
			pick := ""
			for _, a := range alts {
				if _, ok := ix.packages[a]; ok || len(ix.provides[a]) > 0 {
					pick = a
					break
				}
			}
			if pick == "" {
				pick = alts[0] // reported as missing
			}
			queue = append(queue, item{pick, p.Name})
		}
	}
	out := make([]*Package, 0, len(seen))
	for _, p := range seen {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (ix *Index) suiteName() string {
	if ix.Release == nil {
		return "the suite"
	}
	if ix.Release.Codename != "" {
		return ix.Release.Codename
	}
	return ix.Release.Suite
}
