// Package elfdeps computes the shared-library closure of ELF binaries: the
// interpreter and every library the glibc dynamic loader would map for
// them, and where each must live in the image for that loader to find it.
//
// It only reads files (debug/elf plus a hand-rolled header and dynamic
// segment reader) and never runs ldd or the loader, so the target may be
// another architecture than the build host, and the host tree may be a
// foreign root (Options.Root).
//
// The search order replays glibc's _dl_map_object, with two substitutions
// forced by building an image rather than running on the host: the
// ld.so.cache is replaced by the directories it is built from
// (/etc/ld.so.conf), since the image has no cache; and LD_LIBRARY_PATH is
// ignored, since the build host's environment says nothing about the
// image's. glibc-hwcaps and legacy platform subdirectories are not
// searched: which one the loader would prefer depends on the target CPU,
// and the baseline copy is always a valid choice.
package elfdeps

import (
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// Options says where to look.
type Options struct {
	// Root is the host directory that absolute library paths (RUNPATH
	// entries, ld.so.conf, default dirs, PT_INTERP) are resolved against,
	// as if chrooted into it. "" means "/". Binaries passed to Resolve are
	// host paths and may lie outside Root.
	Root string
	// ExtraDirs are extra search directories, as seen inside Root,
	// searched after RUNPATH and before ld.so.conf. The image loader only
	// finds libraries there through LD_LIBRARY_PATH, so any that are used
	// end up in Closure.LibraryPath.
	ExtraDirs []string
}

// File is one object the image must contain for the loader.
type File struct {
	// Path is the host path of the real file, symlinks resolved, so the
	// bytes are copied once however many names point at them.
	Path string
	// Target is the absolute path where the file must live in the image so
	// the dynamic loader finds it: the path it was found at (not
	// symlink-resolved), or the PT_INTERP path for the interpreter. For
	// files found via $ORIGIN next to a binary outside Root, it is their
	// host path.
	Target string
	// Soname is the DT_NEEDED name that pulled the file in; "" for the
	// interpreter.
	Soname string
	// NeededBy is the host path of the first object that needed it.
	NeededBy string
}

// Closure is the result of Resolve.
type Closure struct {
	// Interpreter is the PT_INTERP of the first binary ("" if static).
	Interpreter string
	// Files holds the interpreter and every library, sorted by Target and
	// unique by Target. The same Path may appear under several Targets
	// when different search paths reach one file through different names;
	// the loader needs every such name to exist.
	Files []File
	// LibraryPath lists directories the image's loader would not search by
	// default because they were found only via /etc/ld.so.conf (or
	// ExtraDirs), which it cannot use without ld.so.cache. The image sets
	// LD_LIBRARY_PATH to these, in the order the host search used them.
	// Empty in the common case.
	LibraryPath []string
}

// MissingLibraryError is returned when a DT_NEEDED entry cannot be
// satisfied.
type MissingLibraryError struct {
	Soname   string
	NeededBy string
	// Searched lists the host directories tried, in search order (or the
	// path itself for a DT_NEEDED containing a slash).
	Searched []string
	// Rejected lists candidates that exist but that the loader would pass
	// over (wrong class or machine, not ELF, not a shared object), each
	// with the reason, since they are the usual cause of a confusing miss.
	Rejected []string
}

func (e *MissingLibraryError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "shared library %s needed by %s not found", e.Soname, e.NeededBy)
	if len(e.Searched) > 0 {
		fmt.Fprintf(&b, " (searched %s)", strings.Join(e.Searched, ", "))
	}
	if len(e.Rejected) > 0 {
		fmt.Fprintf(&b, "; unusable candidates: %s", strings.Join(e.Rejected, "; "))
	}
	fmt.Fprintf(&b, ": install the package that provides %s on the build host, "+
		"or vendor it next to the addon and link the addon with RUNPATH $ORIGIN (-Wl,-rpath,'$ORIGIN')",
		path.Base(e.Soname))
	return b.String()
}

// object is one ELF object as loaded into one process.
type object struct {
	*elfInfo
	real string // host path, symlinks resolved
	// loc is the host path the loader opened it at; $ORIGIN is its
	// directory.
	loc    string
	target string
	// display names the object in errors and File.NeededBy: the path the
	// caller gave for binaries, loc for libraries.
	display string
	// names match later DT_NEEDED entries without a search, like the
	// loader's l_name and l_libname list (DT_SONAME is checked separately).
	names []string
	// loader is the object whose DT_NEEDED (or dlopen call) first loaded
	// this one; DT_RPATH is inherited along this chain.
	loader *object
}

// process models one dynamic-loader namespace: name and file-identity
// matches only apply among objects loaded into the same process.
type process struct {
	main   *object // executable, nil when only addons were given
	loaded []*object
}

func (p *process) byName(name string) *object {
	for _, o := range p.loaded {
		if (o.soname != "" && o.soname == name) || slices.Contains(o.names, name) {
			return o
		}
	}
	return nil
}

// byFile mirrors the loader's check after opening a candidate: the same
// file reached under another name is not loaded twice.
func (p *process) byFile(real string) *object {
	for _, o := range p.loaded {
		if o.real == real {
			return o
		}
	}
	return nil
}

type resolver struct {
	root  fsRoot
	extra []string
	infos map[string]*elfInfo // by real host path

	confRead bool
	conf     []string
	confErr  error
	libDirs  map[string]string // $LIB by triplet

	files   map[string]File // by Target
	libPath map[string]bool
}

// Resolve computes the closure of the given ELF files. The first binary is
// the executable (node); later binaries without PT_INTERP are treated as
// addons dlopen'ed by it, so they share its loaded libraries and inherit
// its DT_RPATH; later binaries with PT_INTERP are separate programs. All
// binaries must have the first one's architecture. The binaries
// themselves are not in Files.
func Resolve(binaries []string, opts Options) (*Closure, error) {
	if len(binaries) == 0 {
		return nil, errors.New("resolving shared libraries: no binaries given")
	}
	root, err := newRoot(opts.Root)
	if err != nil {
		return nil, fmt.Errorf("resolving shared libraries: %w", err)
	}
	r := &resolver{
		root:    root,
		infos:   map[string]*elfInfo{},
		libDirs: map[string]string{},
		files:   map[string]File{},
		libPath: map[string]bool{},
	}
	for _, d := range opts.ExtraDirs {
		if !path.IsAbs(d) {
			return nil, fmt.Errorf("resolving shared libraries: extra dir %q is not absolute", d)
		}
		r.extra = append(r.extra, path.Clean(d))
	}

	c := &Closure{}
	var first *process
	var bins []*object
	for i, b := range binaries {
		obj, err := r.openBinary(b)
		if err != nil {
			return nil, err
		}
		bins = append(bins, obj)
		if i > 0 && !obj.sameArch(bins[0].header) {
			return nil, fmt.Errorf("%s is built for %v but %s is %v: rebuild it for the target architecture",
				obj.display, obj.header, bins[0].display, bins[0].header)
		}
		var p *process
		switch {
		case i == 0 || obj.interp != "":
			p = &process{}
			if i == 0 {
				first = p
				c.Interpreter = obj.interp
			}
			if obj.interp != "" {
				p.main = obj
				if err := r.loadInterp(p, obj); err != nil {
					return nil, err
				}
			} else {
				obj.names = []string{obj.target}
			}
		default:
			p = first
			if p.byFile(obj.real) != nil {
				continue // already loaded as another binary's dependency
			}
			obj.names = []string{obj.target}
			obj.loader = p.main
		}
		p.loaded = append(p.loaded, obj)
		if err := r.loadDeps(p, obj); err != nil {
			return nil, err
		}
	}

	for _, f := range r.files {
		if isBinary(f, bins) {
			continue
		}
		c.Files = append(c.Files, f)
	}
	sort.Slice(c.Files, func(i, j int) bool { return c.Files[i].Target < c.Files[j].Target })
	// LD_LIBRARY_PATH order must follow the host search order so that the
	// same copy wins when a name exists in several of these dirs.
	for _, d := range append(slices.Clone(r.extra), r.conf...) {
		if r.libPath[d] && !slices.Contains(c.LibraryPath, d) {
			c.LibraryPath = append(c.LibraryPath, d)
		}
	}
	return c, nil
}

// isBinary drops the caller's own binaries, which the image writer places
// itself, while keeping other names for the same bytes that the loader
// looks up.
func isBinary(f File, bins []*object) bool {
	for _, b := range bins {
		if f.Path == b.real && (f.Target == b.target || f.Target == b.display) {
			return true
		}
	}
	return false
}

func (r *resolver) info(real string) (*elfInfo, error) {
	if info, ok := r.infos[real]; ok {
		return info, nil
	}
	info, err := readELF(real)
	if err != nil {
		return nil, err
	}
	r.infos[real] = info
	return info, nil
}

func (r *resolver) openBinary(b string) (*object, error) {
	abs, err := filepath.Abs(b)
	if err != nil {
		return nil, fmt.Errorf("binary %s: %w", b, err)
	}
	real, err := r.root.realpath(abs)
	if err != nil {
		return nil, fmt.Errorf("binary %s: %w", b, err)
	}
	info, err := r.info(real)
	if err != nil {
		return nil, fmt.Errorf("binary %s: %w", b, err)
	}
	// The resolved path is what the loader sees as $ORIGIN: it reads the
	// executable's location from /proc/self/exe, and Node dlopens addons
	// by their realpath.
	return &object{
		elfInfo: info,
		real:    real,
		loc:     real,
		target:  r.root.target(real),
		display: abs,
	}, nil
}

func (r *resolver) loadInterp(p *process, exe *object) error {
	if !path.IsAbs(exe.interp) {
		return fmt.Errorf("%s: PT_INTERP %q is not an absolute path", exe.display, exe.interp)
	}
	host := r.root.host(exe.interp)
	real, err := r.root.realpath(host)
	if err != nil {
		return fmt.Errorf("interpreter %s of %s: %w", exe.interp, exe.display, err)
	}
	info, err := r.info(real)
	if err != nil {
		return fmt.Errorf("interpreter %s of %s: %w", exe.interp, exe.display, err)
	}
	if !info.sameArch(exe.header) {
		return fmt.Errorf("interpreter %s of %s is built for %v, not %v",
			host, exe.display, info.header, exe.header)
	}
	// The loader is already mapped when dependencies are searched, so a
	// DT_NEEDED of its soname (node lists ld-linux-x86-64.so.2) is satisfied
	// by it rather than by a second copy from the library path.
	p.loaded = append(p.loaded, &object{
		elfInfo: info,
		real:    real,
		loc:     host,
		target:  exe.interp,
		display: host,
		names:   []string{exe.interp},
	})
	r.addFile(File{Path: real, Target: exe.interp, NeededBy: exe.display}, false)
	return nil
}

// loadDeps walks dependencies breadth-first, the order in which the loader
// maps them, because the first object to need a library becomes its
// loader and so decides which DT_RPATH chain later lookups inherit.
func (r *resolver) loadDeps(p *process, obj *object) error {
	queue := []*object{obj}
	for len(queue) > 0 {
		l := queue[0]
		queue = queue[1:]
		for _, name := range l.needed {
			if p.byName(name) != nil {
				continue
			}
			c, err := r.search(p, l, name)
			if err != nil {
				return err
			}
			r.addFile(File{Path: c.real, Target: c.target, Soname: name, NeededBy: l.display}, c.system)
			if dep := p.byFile(c.real); dep != nil {
				dep.names = append(dep.names, name)
				continue
			}
			dep := &object{
				elfInfo: c.info,
				real:    c.real,
				loc:     c.host,
				target:  c.target,
				display: c.host,
				names:   []string{c.target, name},
				loader:  l,
			}
			p.loaded = append(p.loaded, dep)
			queue = append(queue, dep)
		}
	}
	return nil
}

func (r *resolver) addFile(f File, system bool) {
	if _, ok := r.files[f.Target]; ok {
		return
	}
	r.files[f.Target] = f
	if system {
		r.libPath[path.Dir(f.Target)] = true
	}
}
