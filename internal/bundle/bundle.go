// Package bundle holds the deploy bundle format (docs/api.md, "Bundles"): a
// zstd-compressed POSIX tar whose first entry is nodeboot-bundle.json (the
// Meta) and whose other entries are the app's code dir under app/. Write
// makes one reproducibly on the build host; Extract unpacks one from an
// untrusted stream on the node, within Limits (entries, bytes, the memory
// its path bookkeeping takes: MaxPathBytes) and MaxPath / MaxName per
// path; Limits.MaxCompressed bounds what a reader of a body may spool.
// Meta.Validate checks a Meta read back from elsewhere (the store's
// records). OS errors while extracting keep their errno, never wrapping
// ErrInvalid.
package bundle

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"strings"
)

// MetaName is the name of the first entry of every bundle.
const MetaName = "nodeboot-bundle.json"

// AppDir is the directory of the bundle that holds the app's code dir.
const AppDir = "app"

// Format is the bundle format version this package writes and reads.
const Format = 1

// Meta describes the app a bundle carries.
type Meta struct {
	Format    int      `json:"format"`
	App       string   `json:"app"`
	Entry     string   `json:"entry"`     // the entry point, relative to the app dir
	NodeArgs  []string `json:"nodeArgs"`  // arguments to node before the entry
	Engines   string   `json:"engines"`   // package.json's engines.node, "" if none
	Libraries []string `json:"libraries"` // sonames the app's native addons need
}

// Errors a bad bundle wraps, so that the API can answer 400 for each.
var (
	// ErrUnsafe: an entry would write outside the app dir, or is of a kind
	// a code dir must not hold (link tricks, devices, set-id bits).
	ErrUnsafe = errors.New("unsafe bundle entry")
	// ErrTooBig: the bundle exceeds one of the Limits.
	ErrTooBig = errors.New("bundle too big")
	// ErrInvalid: the bundle is not a well-formed bundle (not zstd, not tar,
	// no or a bad nodeboot-bundle.json, a missing entry point).
	ErrInvalid = errors.New("invalid bundle")
)

// Limits bound what Extract accepts. Zero fields take the defaults of
// docs/api.md.
type Limits struct {
	MaxEntries int   // tar entries, nodeboot-bundle.json included; default 100 000
	MaxBytes   int64 // sum of the regular files' sizes; default 2 GiB
	MaxFile    int64 // one regular file's size; default 1 GiB
	// MaxPathBytes bounds what Extract remembers about the tree (every
	// path, for the duplicate and parent checks, and every link target),
	// counted as the names' bytes plus a fixed cost per path; default
	// 64 MiB. A real node_modules of 100 000 files needs about a third.
	MaxPathBytes int64
}

// Defaults of Limits.
const (
	DefaultMaxEntries   = 100_000
	DefaultMaxBytes     = 2 << 30
	DefaultMaxFile      = 1 << 30
	DefaultMaxPathBytes = 64 << 20
)

// MaxPath is the longest entry name (and symlink target) accepted, in
// bytes: Linux's PATH_MAX.
const MaxPath = 4096

// MaxName is the longest component of an entry's path, in bytes: Linux's
// NAME_MAX; no file system on the node stores a longer one.
const MaxName = 255

// maxMetaSize bounds nodeboot-bundle.json, which is read into memory.
const maxMetaSize = 1 << 20

// MaxCompressed is the most bytes a bundle within l can take compressed:
// every byte of its files, 2 KiB of headers per entry and 16 MiB for the
// rest (zstd frames, padding). A reader of bundles (Extract, the store's
// spool) stops there: zstd skippable frames decode to nothing, so an
// endless body would otherwise be read forever.
func (l Limits) MaxCompressed() int64 {
	l = l.withDefaults()
	return l.MaxBytes + int64(l.MaxEntries)*2048 + 16<<20
}

func (l Limits) withDefaults() Limits {
	if l.MaxEntries <= 0 {
		l.MaxEntries = DefaultMaxEntries
	}
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	if l.MaxFile <= 0 {
		l.MaxFile = DefaultMaxFile
	}
	if l.MaxPathBytes <= 0 {
		l.MaxPathBytes = DefaultMaxPathBytes
	}
	return l
}

// appNameRE repeats the app name rule of internal/spec (names.go): the name
// becomes a Unix user, a directory under /data/apps and a host name label.
// It is repeated rather than imported because spec keeps it unexported;
// TestAppNameAgreesWithSpec keeps the two equal.
var appNameRE = regexp.MustCompile(`^[a-z]([a-z0-9-]{0,30}[a-z0-9])?$`)

// CheckAppName says what is wrong with an app name, or returns nil. The store
// uses it too, since the name becomes a directory under /data/apps.
func CheckAppName(name string) error {
	if !appNameRE.MatchString(name) || name == "root" || name == "nobody" {
		return fmt.Errorf("%q is not a valid app name: use 1-32 lower-case letters, digits and hyphens, starting with a letter and not ending with a hyphen", name)
	}
	return nil
}

// Validate says what is wrong with a Meta on its own (format, app name,
// entry path, args, sonames), or returns nil. The store checks the records
// it reads back from disk with it, since a damaged record must not name,
// say, an entry outside the app dir.
func (m Meta) Validate() error { return m.check() }

// check validates a Meta on its own; whether the entry exists is checked
// against the tree by Write and Extract.
func (m *Meta) check() error {
	if m.Format != Format {
		return fmt.Errorf("format %d is not supported (this node reads format %d): build the bundle with a nodeboot of the same version as the image", m.Format, Format)
	}
	if err := CheckAppName(m.App); err != nil {
		return fmt.Errorf("app: %w", err)
	}
	if err := checkRel(m.Entry); err != nil {
		return fmt.Errorf("entry %q: %w", m.Entry, err)
	}
	for _, a := range m.NodeArgs {
		if strings.IndexByte(a, 0) >= 0 {
			return fmt.Errorf("nodeArgs: %q contains a NUL byte", a)
		}
	}
	for _, l := range m.Libraries {
		if l == "" || len(l) > 255 || strings.ContainsAny(l, "/\x00") {
			return fmt.Errorf("libraries: %q is not a soname (a file name such as libfoo.so.1)", l)
		}
	}
	if strings.IndexByte(m.Engines, 0) >= 0 || len(m.Engines) > 1024 {
		return fmt.Errorf("engines: not a version range")
	}
	return nil
}

// checkRel accepts a canonical, relative, slash-separated path that stays
// in its directory: no leading slash, no "." or ".." or empty components.
// Requiring the canonical form means two spellings cannot name one file,
// which the duplicate check relies on.
func checkRel(rel string) error {
	switch {
	case rel == "":
		return errors.New("empty path")
	case len(rel) > MaxPath:
		return fmt.Errorf("path longer than %d bytes", MaxPath)
	case strings.IndexByte(rel, 0) >= 0:
		return errors.New("NUL byte in path")
	case strings.HasPrefix(rel, "/"):
		return errors.New("absolute path")
	}
	for _, c := range strings.Split(rel, "/") {
		if c == ".." {
			return errors.New(`".." component`)
		}
		if len(c) > MaxName {
			return fmt.Errorf("a path component longer than %d bytes", MaxName)
		}
	}
	if path.Clean(rel) != rel || rel == "." {
		return errors.New("not a canonical path (empty or \".\" components, trailing slash)")
	}
	return nil
}

// linkStaysInside reports whether a symlink at rel (relative to the app dir)
// with this target resolves, lexically, inside the app dir. This is the
// early check on each entry; the kernel resolves ".." after following a
// link, so Extract also resolves every link through the others
// (linkEscapes) once the whole tree is known.
func linkStaysInside(rel, target string) bool {
	if target == "" || strings.HasPrefix(target, "/") || strings.IndexByte(target, 0) >= 0 {
		return false
	}
	j := path.Join(path.Dir(rel), target)
	return j != ".." && !strings.HasPrefix(j, "../")
}

// maxLinkHops is the kernel's limit on symlinks followed in one lookup
// (MAXSYMLINKS); a chain longer than that is a loop or an attack.
const maxLinkHops = 40

// linkEscapes resolves rel the way the kernel would, following the bundle's
// own links (rel to target), and reports whether any step leaves the app
// dir or the chain loops. A lexical check alone misses "d/up/.." where d/up
// is a link to "..": the kernel applies ".." to where the link led.
func linkEscapes(links map[string]string, rel string) bool {
	work := maxLinkWork
	return linkEscapesWithin(links, rel, &work)
}

// maxLinkWork bounds the bytes of path linkEscapesWithin may build while
// resolving all of a bundle's links: each step costs its path's length, and
// a hostile bundle of many long, chained links would otherwise cost hours
// of CPU (100 000 links × 40 hops × 2 048 components). Real trees use a
// tiny fraction.
const maxLinkWork = 1 << 28

// linkEscapesWithin is linkEscapes charging its work to *work; when that
// runs out it reports an escape (the caller says why).
func linkEscapesWithin(links map[string]string, rel string, work *int) bool {
	var cur []string
	todo := strings.Split(rel, "/")
	hops := 0
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(cur) == 0 {
				return true
			}
			cur = cur[:len(cur)-1]
			continue
		}
		p := strings.Join(append(cur[:len(cur):len(cur)], c), "/")
		if *work -= len(p) + 1; *work < 0 {
			return true
		}
		if t, ok := links[p]; ok {
			hops++
			if hops > maxLinkHops || strings.HasPrefix(t, "/") {
				return true
			}
			todo = append(strings.Split(t, "/"), todo...)
			continue
		}
		cur = append(cur, c)
	}
	return false
}
