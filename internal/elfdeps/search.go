package elfdeps

import (
	"debug/elf"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// searchDir is one directory of a search path.
type searchDir struct {
	target string // as the image's loader sees it
	host   string
	// system marks dirs the image's loader only searches if they are put in
	// LD_LIBRARY_PATH: ld.so.conf entries (the image has no ld.so.cache)
	// and ExtraDirs that are not default dirs.
	system bool
}

// candidate is a file the loader would accept for a DT_NEEDED entry.
type candidate struct {
	target, host, real string
	info               *elfInfo
	system             bool
}

func (r *resolver) search(p *process, l *object, name string) (*candidate, error) {
	miss := &MissingLibraryError{Soname: name, NeededBy: l.display}
	if strings.Contains(name, "/") {
		// The loader opens such names directly, after expanding DSTs, and
		// never searches for them.
		target, host, ok := r.expand(name, l)
		if !ok {
			return nil, fmt.Errorf("%s needs %q, which the loader resolves against the working directory at run time: relink it against a library with a DT_SONAME", l.display, name)
		}
		c, why, err := r.try(target, host, l.header)
		if err != nil {
			return nil, fmt.Errorf("%s, needed by %s: %w", name, l.display, err)
		}
		if c != nil {
			return c, nil
		}
		miss.Searched = []string{host}
		if why != "" {
			miss.Rejected = []string{why}
		}
		return nil, miss
	}

	dirs, err := r.searchPath(p, l)
	if err != nil {
		return nil, err
	}
	for _, d := range dirs {
		c, why, err := r.try(path.Join(d.target, name), filepath.Join(d.host, name), l.header)
		if err != nil {
			return nil, fmt.Errorf("%s, needed by %s: %w", name, l.display, err)
		}
		if c != nil {
			c.system = d.system
			return c, nil
		}
		miss.Searched = append(miss.Searched, d.host)
		if why != "" {
			miss.Rejected = append(miss.Rejected, why)
		}
	}
	return nil, miss
}

// searchPath lists the directories the loader tries for a DT_NEEDED of l,
// in glibc's order.
func (r *resolver) searchPath(p *process, l *object) ([]searchDir, error) {
	var dirs []searchDir
	add := func(d searchDir) {
		if !slices.ContainsFunc(dirs, func(e searchDir) bool { return e.host == d.host }) {
			dirs = append(dirs, d)
		}
	}
	addList := func(list string, o *object) {
		for _, e := range strings.Split(list, ":") {
			if target, host, ok := r.expand(e, o); ok {
				add(searchDir{target: target, host: host})
			}
		}
	}

	// DT_RPATH counts only if the needing object has no DT_RUNPATH; then
	// the RPATHs of its whole loader chain apply, and the executable's in
	// any case (which is how an RPATH on node reaches addon dependencies).
	// Objects with DT_RUNPATH carry no RPATH (dynamic drops it).
	if l.runpath == "" {
		didMain := false
		for o := l; o != nil; o = o.loader {
			if o.rpath != "" {
				addList(o.rpath, o)
				didMain = didMain || o == p.main
			}
		}
		if !didMain && p.main != nil && p.main.rpath != "" {
			addList(p.main.rpath, p.main)
		}
	}
	// DT_RUNPATH applies to the object's own DT_NEEDED entries only.
	if l.runpath != "" {
		addList(l.runpath, l)
	}
	defaults := defaultDirs(l.header)
	system := func(d string) searchDir {
		return searchDir{target: d, host: r.root.host(d), system: !slices.Contains(defaults, d)}
	}
	for _, d := range r.extra {
		add(system(d))
	}
	// DF_1_NODEFLIB excludes both the cache (for which ld.so.conf stands
	// in) and the default dirs.
	if !l.nodeflib {
		conf, err := r.confDirs()
		if err != nil {
			return nil, err
		}
		for _, d := range conf {
			add(system(d))
		}
		for _, d := range defaults {
			add(searchDir{target: d, host: r.root.host(d)})
		}
	}
	return dirs, nil
}

// defaultDirs are the loader's built-in dirs. Debian-style multiarch dirs
// come first; lib64 only exists for 64-bit objects.
func defaultDirs(h header) []string {
	var d []string
	if t := triplet(h); t != "" {
		d = append(d, "/lib/"+t, "/usr/lib/"+t)
	}
	if h.class == elf.ELFCLASS64 {
		d = append(d, "/lib64", "/usr/lib64")
	}
	return append(d, "/lib", "/usr/lib")
}

// expand substitutes dynamic string tokens in one search path entry or
// DT_NEEDED path of object o. It returns ok=false for entries the loader
// would resolve against the working directory (empty or relative), which
// cannot be known at build time, and for tokens without a value.
func (r *resolver) expand(s string, o *object) (target, host string, ok bool) {
	var b strings.Builder
	origin := false
	for i := 0; i < len(s); {
		if s[i] != '$' {
			b.WriteByte(s[i])
			i++
			continue
		}
		name, n := dst(s[i+1:])
		switch name {
		case "ORIGIN":
			b.WriteString(filepath.Dir(o.loc))
			origin = true
		case "LIB":
			b.WriteString(r.libDir(o.header))
		case "PLATFORM":
			// The loader drops an entry whose token has no value.
			pl := platform(o.header)
			if pl == "" {
				return "", "", false
			}
			b.WriteString(pl)
		default:
			// Unknown tokens stay literal, as in the loader.
			b.WriteByte('$')
			i++
			continue
		}
		i += 1 + n
	}
	e := b.String()
	if !path.IsAbs(e) {
		return "", "", false
	}
	// $ORIGIN is a host directory (the object's own), everything else is a
	// path inside the root.
	if origin {
		host = filepath.Clean(e)
		return r.root.target(host), host, true
	}
	target = path.Clean(e)
	return target, r.root.host(target), true
}

// dst recognises a dynamic string token after a '$' and returns its name
// and length. Unbraced tokens must end the string or be followed by '/',
// so "$ORIGINAL" is not "$ORIGIN" + "AL".
func dst(rest string) (string, int) {
	for _, name := range []string{"ORIGIN", "LIB", "PLATFORM"} {
		if strings.HasPrefix(rest, "{"+name+"}") {
			return name, len(name) + 2
		}
		if strings.HasPrefix(rest, name) && (len(rest) == len(name) || rest[len(name)] == '/') {
			return name, len(name)
		}
	}
	return "", 0
}

// libDir is the $LIB value, which glibc fixes at build time from its own
// library dir: "lib/<triplet>" on Debian-style multiarch systems, "lib64"
// on Fedora-style 64-bit systems, "lib" elsewhere. The root's layout
// tells which of these it is.
func (r *resolver) libDir(h header) string {
	key := triplet(h) + "/" + h.class.String()
	if d, ok := r.libDirs[key]; ok {
		return d
	}
	d := "lib"
	if t := triplet(h); t != "" && (r.isRootDir("/usr/lib/"+t) || r.isRootDir("/lib/"+t)) {
		d = "lib/" + t
	} else if h.class == elf.ELFCLASS64 && (r.isRootDir("/usr/lib64") || r.isRootDir("/lib64")) {
		d = "lib64"
	}
	r.libDirs[key] = d
	return d
}

func (r *resolver) isRootDir(target string) bool {
	real, err := r.root.realpath(r.root.host(target))
	return err == nil && isDir(real)
}

// try checks one candidate the way the loader's open_verify does, returning
// the candidate if it is acceptable, or a reason if it exists but would be
// passed over. An error means the file looked right but could not be
// parsed, where the loader would fail too.
//
// Files that are not ELF or not shared objects are passed over here,
// where glibc would stop with "invalid ELF header": only the closure is
// copied into the image, so such a file never shadows the real library
// there.
func (r *resolver) try(target, host string, want header) (*candidate, string, error) {
	real, err := r.root.realpath(host)
	if err != nil {
		if isNotExist(err) {
			return nil, "", nil
		}
		return nil, fmt.Sprintf("%s: %v", host, err), nil
	}
	fi, err := os.Stat(real)
	if err != nil {
		return nil, fmt.Sprintf("%s: %v", host, err), nil
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Sprintf("%s: not a regular file", host), nil
	}
	f, err := os.Open(real)
	if err != nil {
		return nil, fmt.Sprintf("%s: %v", host, err), nil
	}
	h, err := readHeader(f)
	f.Close()
	if err != nil {
		return nil, fmt.Sprintf("%s: %v", host, err), nil
	}
	if !h.sameArch(want) {
		return nil, fmt.Sprintf("%s: built for %v, need %v", host, h, want), nil
	}
	if h.typ != elf.ET_DYN {
		return nil, fmt.Sprintf("%s: %v is not a shared object", host, h.typ), nil
	}
	info, err := r.info(real)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", host, err)
	}
	return &candidate{target: target, host: host, real: real, info: info}, "", nil
}

// confDirs reads <Root>/etc/ld.so.conf the way ldconfig does when it builds
// the cache, whose search order it stands in for.
func (r *resolver) confDirs() ([]string, error) {
	if !r.confRead {
		r.confRead = true
		seen := map[string]bool{}
		r.confErr = r.parseConf("/etc/ld.so.conf", seen, &r.conf)
	}
	return r.conf, r.confErr
}

func (r *resolver) parseConf(file string, seen map[string]bool, dirs *[]string) error {
	// Include cycles are a configuration mistake ldconfig survives too.
	if seen[file] {
		return nil
	}
	seen[file] = true
	real, err := r.root.realpath(r.root.host(file))
	if isNotExist(err) {
		return nil // minimal roots often have no ld.so.conf
	}
	if err != nil {
		return fmt.Errorf("reading %s: %w", file, err)
	}
	data, err := os.ReadFile(real)
	if err != nil {
		return fmt.Errorf("reading %s: %w", file, err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		switch fields[0] {
		case "include":
			for _, pat := range fields[1:] {
				// ldconfig takes relative patterns relative to the including
				// file's directory.
				if !path.IsAbs(pat) {
					pat = path.Join(path.Dir(file), pat)
				}
				matches, err := r.root.glob(pat)
				if err != nil {
					return fmt.Errorf("%s: include: %w", file, err)
				}
				for _, m := range matches {
					if err := r.parseConf(m, seen, dirs); err != nil {
						return err
					}
				}
			}
			continue
		case "hwcap":
			continue
		}
		d := strings.TrimSpace(line)
		// Old ldconfig syntax tags a dir with a library type: "dir=libc6".
		if i := strings.IndexByte(d, '='); i >= 0 {
			d = strings.TrimSpace(d[:i])
		}
		// ldconfig ignores relative entries.
		if !path.IsAbs(d) {
			continue
		}
		d = path.Clean(d)
		if !slices.Contains(*dirs, d) {
			*dirs = append(*dirs, d)
		}
	}
	return nil
}
