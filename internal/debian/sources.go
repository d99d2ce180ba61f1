// Package debian fetches binary packages for any architecture from the
// Debian archive the host is configured for, and verifies them on the way:
// the suite's InRelease against the Debian archive keyring, each Packages
// index against the SHA-256 the Release lists, each .deb against the
// SHA-256 its Packages entry lists. Verified files are cached in the user
// cache dir (indices by hash, packages per name, version and arch), so a
// second build needs the network only for the small InRelease, and none
// at all when the archive cannot be reached.
//
// The image build uses it for what it must not take from the build host:
// another architecture's C library and the libraries node links.
package debian

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Environment variables that name the archive on hosts without apt (or to
// use another mirror than apt's).
const (
	EnvMirror = "NODEBOOT_DEBIAN_MIRROR" // base URL, the directory holding dists/ and pool/
	EnvSuite  = "NODEBOOT_DEBIAN_SUITE"  // e.g. bookworm; default: apt's suite, else stable
	// EnvKeyring is the keyring that verifies the suite's InRelease, in
	// place of apt's (a Mac has none).
	EnvKeyring = "NODEBOOT_DEBIAN_KEYRING"
)

// DefaultKeyring is where Debian's debian-archive-keyring package puts the
// archive's signing keys.
const DefaultKeyring = "/usr/share/keyrings/debian-archive-keyring.gpg"

// Source is one `deb` line (or deb822 stanza) of the host's apt sources.
type Source struct {
	URI        string
	Suite      string
	Components []string
	SignedBy   string // keyring file, if the source names one
	File       string // where it was read
}

// aptDirs are read by HostSources: apt's own defaults.
var aptDirs = struct{ list, dir string }{"/etc/apt/sources.list", "/etc/apt/sources.list.d"}

// HostSources reads the host's apt sources: sources.list and the *.list and
// *.sources files of sources.list.d, binary (`deb`) entries only.
func HostSources() ([]Source, error) {
	return readSources(aptDirs.list, aptDirs.dir)
}

func readSources(list, dir string) ([]Source, error) {
	var out []Source
	if b, err := os.ReadFile(list); err == nil {
		out = append(out, ParseSourcesList(string(b), list)...)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("reading apt sources: %w", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("reading apt sources: %w", err)
	}
	names := []string{}
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	for _, n := range names {
		p := filepath.Join(dir, n)
		b, err := os.ReadFile(p)
		if err != nil {
			continue // a dangling or unreadable file: apt would complain, we just skip it
		}
		switch {
		case strings.HasSuffix(n, ".list"):
			out = append(out, ParseSourcesList(string(b), p)...)
		case strings.HasSuffix(n, ".sources"):
			out = append(out, ParseDeb822Sources(string(b), p)...)
		}
	}
	return out, nil
}

// ParseSourcesList reads the one-line format:
// `deb [opt=val ...] URI SUITE [COMPONENT...]`.
func ParseSourcesList(text, file string) []Source {
	var out []Source
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != "deb" {
			continue
		}
		f = f[1:]
		s := Source{File: file}
		if strings.HasPrefix(f[0], "[") {
			// Options up to the closing bracket.
			var opts []string
			for len(f) > 0 {
				o := f[0]
				f = f[1:]
				opts = append(opts, strings.Trim(o, "[]"))
				if strings.HasSuffix(o, "]") {
					break
				}
			}
			for _, o := range opts {
				if k, v, ok := strings.Cut(o, "="); ok && k == "signed-by" {
					s.SignedBy = v
				}
			}
		}
		if len(f) < 2 {
			continue
		}
		s.URI, s.Suite, s.Components = f[0], f[1], f[2:]
		out = append(out, s)
	}
	return out
}

// ParseDeb822Sources reads the deb822 format (`Types: deb`, `URIs:`,
// `Suites:`, `Components:`, `Signed-By:`, `Enabled:`), one Source per URI
// and suite.
func ParseDeb822Sources(text, file string) []Source {
	var out []Source
	for _, stanza := range strings.Split(strings.ReplaceAll(text, "\r\n", "\n"), "\n\n") {
		fields := map[string]string{}
		last := ""
		for _, line := range strings.Split(stanza, "\n") {
			if strings.HasPrefix(line, "#") || strings.TrimSpace(line) == "" {
				continue
			}
			if (line[0] == ' ' || line[0] == '\t') && last != "" {
				fields[last] += " " + strings.TrimSpace(line)
				continue
			}
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			last = strings.ToLower(strings.TrimSpace(k))
			fields[last] = strings.TrimSpace(v)
		}
		if !hasWord(fields["types"], "deb") || strings.EqualFold(fields["enabled"], "no") {
			continue
		}
		signed := fields["signed-by"]
		if strings.Contains(signed, "BEGIN PGP") {
			signed = "" // an inline key: not a file we can read
		}
		for _, uri := range strings.Fields(fields["uris"]) {
			for _, suite := range strings.Fields(fields["suites"]) {
				out = append(out, Source{URI: uri, Suite: suite, Components: strings.Fields(fields["components"]), SignedBy: signed, File: file})
			}
		}
	}
	return out
}

func hasWord(s, w string) bool {
	for _, f := range strings.Fields(s) {
		if f == w {
			return true
		}
	}
	return false
}

// pickDebian chooses, among the host's sources, the Debian archive's main
// suite: a source with the main component whose suite is not an add-on
// (-security, -updates, -backports, -proposed-updates), preferring one
// signed by the Debian archive keyring. Whether it really is Debian is
// checked against its Release (Origin: Debian) when it is fetched.
func pickDebian(srcs []Source) (Source, bool) {
	var best Source
	score := -1
	for _, s := range srcs {
		if !hasWord(strings.Join(s.Components, " "), "main") || strings.HasSuffix(s.Suite, "/") {
			continue
		}
		addon := false
		for _, suf := range []string{"-security", "-updates", "-backports", "-proposed-updates", "-backports-sloppy"} {
			if strings.HasSuffix(s.Suite, suf) {
				addon = true
			}
		}
		if addon {
			continue
		}
		sc := 0
		if strings.Contains(s.SignedBy, "debian-archive") {
			sc = 2
		} else if s.SignedBy == "" {
			sc = 1 // the system keyring, as older .list files use
		}
		if sc > score {
			best, score = s, sc
		}
	}
	return best, score >= 0
}
