package noderuntime

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/Masterminds/semver/v3"

	"github.com/nodeboot/nodeboot/internal/filedigest"
)

// Cache layout: <root>/<version>-<arch>/{node,LICENSE,meta.json}. An entry is
// only ever published whole, by renaming a fully written and verified
// temporary directory into place, so a reader never sees a partial binary;
// meta.json doubles as the "complete" marker.
const (
	metaFile      = "meta.json"
	tmpPrefix     = ".download-"
	staleTmpAfter = 24 * time.Hour
)

// cacheMeta is the record kept next to a cached binary.
type cacheMeta struct {
	Package   string `json:"package"`
	Version   string `json:"version"`
	Arch      string `json:"arch"`
	Integrity string `json:"integrity"` // the tarball's, as given by the registry
	SHA256    string `json:"sha256"`    // of the node binary
	Size      int64  `json:"size"`
	License   bool   `json:"license"`
	Tarball   string `json:"tarball"`
}

func defaultCacheDir() (string, error) {
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache directory for node downloads (%w): set XDG_CACHE_HOME or HOME", err)
	}
	return filepath.Join(d, "nodeboot", "node"), nil
}

func entryName(version, arch string) string { return version + "-" + arch }

// loadCached returns the runtime cached at dir. The binary is re-hashed on
// every hit: it costs a fraction of a second next to building an image, and
// it means Runtime.SHA256 always describes the file at Runtime.Path even if
// the cache was damaged since.
func loadCached(dir string) (*Runtime, *cacheMeta, error) {
	data, err := os.ReadFile(filepath.Join(dir, metaFile))
	if err != nil {
		return nil, nil, err
	}
	var m cacheMeta
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, nil, fmt.Errorf("cache entry %s: bad %s: %w", dir, metaFile, err)
	}
	sum, err := sha256File(filepath.Join(dir, "node"))
	if err != nil {
		return nil, nil, fmt.Errorf("cache entry %s: %w", dir, err)
	}
	if sum != m.SHA256 {
		return nil, nil, fmt.Errorf("cache entry %s: node has sha256 %s, meta says %s", dir, sum, m.SHA256)
	}
	return runtimeFromMeta(dir, &m), &m, nil
}

func runtimeFromMeta(dir string, m *cacheMeta) *Runtime {
	rt := &Runtime{
		Path:      filepath.Join(dir, "node"),
		Version:   m.Version,
		Source:    "npm:" + m.Package + "@" + m.Version,
		SHA256:    m.SHA256,
		Integrity: m.Integrity,
	}
	if m.License {
		rt.License = filepath.Join(dir, "LICENSE")
	}
	return rt
}

// lookupCache returns the cache entry for version/arch, nil if there is no
// usable one. A damaged entry is removed so the caller downloads afresh.
func lookupCache(root, version, arch string, log io.Writer) *Runtime {
	dir := filepath.Join(root, entryName(version, arch))
	rt, _, err := loadCached(dir)
	if err == nil {
		return rt
	}
	if !errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(log, "node: discarding damaged cache entry: %v\n", err)
		_ = os.RemoveAll(dir)
	}
	return nil
}

// newestCached finds the highest cached version for arch selected by spec and
// engines. It lets a build keep working offline with what it fetched before.
func newestCached(root, arch string, spec *Spec, engines *semver.Constraints) *Runtime {
	ents, err := os.ReadDir(root)
	if err != nil {
		return nil
	}
	type cand struct {
		v    *semver.Version
		name string
	}
	var cands []cand
	for _, e := range ents {
		vs, ok := strings.CutSuffix(e.Name(), "-"+arch)
		if !ok || !e.IsDir() {
			continue
		}
		v, err := semver.StrictNewVersion(vs)
		if err != nil {
			continue
		}
		if spec != nil && !spec.Matches(v) || spec == nil && v.Prerelease() != "" {
			continue
		}
		if engines != nil && !engines.Check(v) {
			continue
		}
		cands = append(cands, cand{v, e.Name()})
	}
	// Newest first, and stop at the first intact entry: verifying means
	// hashing a ~100 MB binary, so don't do it for entries we won't use.
	slices.SortFunc(cands, func(a, b cand) int { return b.v.Compare(a.v) })
	for _, c := range cands {
		if rt, _, err := loadCached(filepath.Join(root, c.name)); err == nil {
			return rt
		}
	}
	return nil
}

// install downloads rel into the cache and returns the published entry.
func install(fetch func(dir string) (*extracted, string, error), root string, rel *Release, arch string) (*Runtime, error) {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("creating node cache: %w", err)
	}
	cleanStaleTemps(root)
	version := rel.Version.String()
	tmp, err := os.MkdirTemp(root, tmpPrefix+entryName(version, arch)+"-")
	if err != nil {
		return nil, fmt.Errorf("creating node cache entry: %w", err)
	}
	published := false
	defer func() {
		if !published {
			_ = os.RemoveAll(tmp)
		}
	}()
	ex, integrity, err := fetch(tmp)
	if err != nil {
		return nil, err
	}
	if err := checkELF(filepath.Join(tmp, "node"), arch); err != nil {
		return nil, fmt.Errorf("%s@%s: %w", rel.Package, version, err)
	}
	meta := cacheMeta{
		Package:   rel.Package,
		Version:   version,
		Arch:      arch,
		Integrity: integrity,
		SHA256:    ex.SHA256,
		Size:      ex.Size,
		License:   ex.License,
		Tarball:   rel.Tarball,
	}
	data, err := json.MarshalIndent(meta, "", "  ")
	if err != nil {
		return nil, err
	}
	if _, _, err := writeFile(filepath.Join(tmp, metaFile), strings.NewReader(string(data)+"\n"), 0o644); err != nil {
		return nil, err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return nil, err
	}
	if err := syncDir(tmp); err != nil {
		return nil, err
	}
	final := filepath.Join(root, entryName(version, arch))
	if err := os.Rename(tmp, final); err != nil {
		// Another nodeboot may have published the same version meanwhile
		// (then use theirs: same verified bytes), or a damaged entry is in
		// the way (then replace it).
		if rt, _, lerr := loadCached(final); lerr == nil {
			return rt, nil
		}
		if rerr := os.RemoveAll(final); rerr != nil {
			return nil, fmt.Errorf("replacing cache entry %s: %w", final, rerr)
		}
		if err := os.Rename(tmp, final); err != nil {
			return nil, fmt.Errorf("publishing cache entry %s: %w", final, err)
		}
	}
	published = true
	// Make the rename itself durable.
	_ = syncDir(root)
	return runtimeFromMeta(final, &meta), nil
}

// cleanStaleTemps removes temporary directories left by a nodeboot that was
// killed mid-download. Only old ones: a young one may belong to a concurrent
// build.
func cleanStaleTemps(root string) {
	ents, err := os.ReadDir(root)
	if err != nil {
		return
	}
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), tmpPrefix) {
			continue
		}
		if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > staleTmpAfter {
			_ = os.RemoveAll(filepath.Join(root, e.Name()))
		}
	}
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// sha256File is the file's digest, remembered by filedigest while the file
// is unchanged: every build describes node by it, and hashing 100 MB again
// was a third of a warm rebuild. Any write to the file changes its
// identity, so a damaged cached node is still hashed again and refused.
func sha256File(p string) (string, error) {
	sum, _, err := filedigest.Sum(p)
	if err != nil {
		return "", fmt.Errorf("hashing %s: %w", p, err)
	}
	return sum, nil
}
