package kernelbuild

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"
)

// Reproducible builds: the kernel embeds the build's time, user and host
// (uname -v, /proc/version); fixed, two builds of one source and config
// give the same bzImage.
var buildEnv = []string{
	"KBUILD_BUILD_TIMESTAMP=Thu Jan  1 00:00:00 UTC 1970",
	"KBUILD_BUILD_USER=nodeboot",
	"KBUILD_BUILD_HOST=nodeboot",
	"KBUILD_BUILD_VERSION=1",
	"LC_ALL=C",
}

// Options of a build.
type Options struct {
	Profile  string
	CacheDir string // default: <user cache dir>/nodeboot/kernel
	SrcDir   string // where linux-source tarballs are; default /usr/src
	Jobs     int    // make -j; default: the CPU count
	// Log receives one line per step; Progress the running count of
	// compiled files (rewritten in place when it is a terminal).
	Log      io.Writer
	Progress io.Writer
	// make runs the kernel's make; tests replace it.
	make func(ctx context.Context, dir string, args []string, out io.Writer) error
}

// Result is a built (or cached) kernel.
type Result struct {
	Path          string `json:"-"`       // the bzImage
	License       string `json:"-"`       // the kernel's COPYING
	Profile       string `json:"profile"` // vm or pc
	SourcePackage string `json:"sourcePackage"`
	SourceVersion string `json:"sourceVersion"`
	ConfigSHA256  string `json:"configSHA256"`
	Cached        bool   `json:"-"`
	BuildSeconds  int    `json:"buildSeconds"`
}

// DefaultCacheDir is where kernels are cached.
func DefaultCacheDir() (string, error) {
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache dir for the kernel build: %w (set XDG_CACHE_HOME)", err)
	}
	return filepath.Join(d, "nodeboot", "kernel"), nil
}

// Build returns the profile's kernel from the cache, building it first if
// this source version and configuration were never built.
func Build(ctx context.Context, o Options) (*Result, error) {
	cfg, err := ProfileConfig(o.Profile)
	if err != nil {
		return nil, err
	}
	if o.SrcDir == "" {
		o.SrcDir = "/usr/src"
	}
	if o.CacheDir == "" {
		if o.CacheDir, err = DefaultCacheDir(); err != nil {
			return nil, err
		}
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.Jobs <= 0 {
		o.Jobs = runtime.NumCPU()
	}
	if o.make == nil {
		if err := CheckTools(exec.LookPath); err != nil {
			return nil, err
		}
		o.make = runMake
	}
	src, err := FindSource(o.SrcDir)
	if err != nil {
		return nil, err
	}
	sum := cfg.SHA256()
	outDir := filepath.Join(o.CacheDir, fmt.Sprintf("%s-%s-%s", src.Version, o.Profile, sum[:16]))
	res := &Result{
		Path:          filepath.Join(outDir, "bzImage"),
		License:       filepath.Join(outDir, "COPYING"),
		Profile:       o.Profile,
		SourcePackage: src.Package,
		SourceVersion: src.Version,
		ConfigSHA256:  sum,
	}
	if cached(outDir, res) {
		return res, nil
	}
	if err := os.MkdirAll(filepath.Join(o.CacheDir, "build"), 0o755); err != nil {
		return nil, fmt.Errorf("kernel build dir: %w", err)
	}
	unlock, err := lock(filepath.Join(o.CacheDir, "build", o.Profile+".lock"))
	if err != nil {
		return nil, err
	}
	defer unlock()
	// Another nodeboot may have built it while this one waited.
	if cached(outDir, res) {
		return res, nil
	}
	start := time.Now()
	tree, err := extract(ctx, src, o.CacheDir, o.Log)
	if err != nil {
		return nil, err
	}
	// One object dir per source version and profile, kept: a changed
	// fragment rebuilds only what it touches.
	objDir := filepath.Join(o.CacheDir, "build", src.Version+"-"+o.Profile)
	if err := os.MkdirAll(objDir, 0o755); err != nil {
		return nil, fmt.Errorf("kernel build dir: %w", err)
	}
	allconfig := filepath.Join(objDir, "nodeboot.allconfig")
	if err := os.WriteFile(allconfig, cfg.Text, 0o644); err != nil {
		return nil, fmt.Errorf("kernel build dir: %w", err)
	}
	fmt.Fprintf(o.Log, "kernel %s: configuring %s %s (allnoconfig + %s)\n", o.Profile, src.Package, src.Version, strings.Join(Profiles[o.Profile], ", "))
	var cfgOut strings.Builder
	for _, target := range []string{"allnoconfig", "olddefconfig"} {
		args := []string{"O=" + objDir, "KCONFIG_ALLCONFIG=" + allconfig, target}
		if err := o.make(ctx, tree, args, &cfgOut); err != nil {
			return nil, fmt.Errorf("kernel %s: make %s: %w\n%s", o.Profile, target, err, tail(cfgOut.String(), 20))
		}
	}
	final, err := os.ReadFile(filepath.Join(objDir, ".config"))
	if err != nil {
		return nil, fmt.Errorf("kernel %s: reading the final .config: %w", o.Profile, err)
	}
	dropped, err := cfg.Dropped(final)
	if err != nil {
		return nil, err
	}
	if len(dropped) > 0 {
		return nil, fmt.Errorf("kernel %s: olddefconfig did not keep %d requested option(s) (a dependency is off or the option no longer exists in %s %s; add what it depends on to the fragment):\n  %s",
			o.Profile, len(dropped), src.Package, src.Version, strings.Join(dropped, "\n  "))
	}

	fmt.Fprintf(o.Log, "kernel %s: compiling with %d jobs (the first build takes a while; later ones come from %s)\n", o.Profile, o.Jobs, o.CacheDir)
	prog := newProgress(o.Progress, o.Profile, filepath.Join(o.CacheDir, "build", o.Profile+".steps"))
	err = o.make(ctx, tree, []string{"O=" + objDir, fmt.Sprintf("-j%d", o.Jobs), "bzImage"}, prog)
	prog.done(err == nil)
	if err != nil {
		return nil, fmt.Errorf("kernel %s: make bzImage: %w\n%s", o.Profile, err, prog.tail())
	}
	res.BuildSeconds = int(time.Since(start).Seconds())
	if err := publish(outDir, filepath.Join(objDir, "arch/x86/boot/bzImage"), filepath.Join(objDir, ".config"), filepath.Join(tree, "COPYING"), res); err != nil {
		return nil, err
	}
	fmt.Fprintf(o.Log, "kernel %s: built in %s: %s\n", o.Profile, time.Since(start).Round(time.Second), res.Path)
	return res, nil
}

// cached fills res from a finished build in outDir, if there is one.
func cached(outDir string, res *Result) bool {
	b, err := os.ReadFile(filepath.Join(outDir, "build.json"))
	if err != nil || json.Unmarshal(b, res) != nil {
		return false
	}
	if _, err := os.Stat(res.Path); err != nil {
		return false
	}
	res.Cached = true
	return true
}

// extract unpacks the source tarball once per version into the cache.
func extract(ctx context.Context, src *Source, cacheDir string, log io.Writer) (string, error) {
	base := filepath.Join(cacheDir, "src", src.Version)
	tree := filepath.Join(base, src.Package)
	if _, err := os.Stat(filepath.Join(tree, "Makefile")); err == nil {
		return tree, nil
	}
	if err := os.MkdirAll(filepath.Dir(base), 0o755); err != nil {
		return "", fmt.Errorf("kernel source cache: %w", err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(base), src.Version+".tmp-")
	if err != nil {
		return "", fmt.Errorf("kernel source cache: %w", err)
	}
	defer os.RemoveAll(tmp)
	fmt.Fprintf(log, "kernel: unpacking %s (%s)\n", src.Tarball, src.Version)
	cmd := exec.CommandContext(ctx, "tar", "-xJf", src.Tarball, "-C", tmp)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("unpacking %s: %w: %s", src.Tarball, err, tail(string(out), 10))
	}
	if _, err := os.Stat(filepath.Join(tmp, src.Package, "Makefile")); err != nil {
		return "", fmt.Errorf("%s does not hold %s/Makefile: is it a kernel source tarball? Reinstall it with `apt-get install --reinstall %s`", src.Tarball, src.Package, src.Package)
	}
	if err := os.Rename(tmp, base); err != nil {
		// The other profile's build unpacked the same version meanwhile.
		if _, serr := os.Stat(filepath.Join(tree, "Makefile")); serr == nil {
			return tree, nil
		}
		// A leftover without its Makefile is not a tree anyone uses.
		os.RemoveAll(base)
		if err := os.Rename(tmp, base); err != nil {
			return "", fmt.Errorf("kernel source cache: %w", err)
		}
	}
	return tree, nil
}

// publish copies the kernel, its .config and license into outDir, written
// whole under a temporary name first: the cache never holds half a kernel.
func publish(outDir, bzImage, config, license string, res *Result) error {
	if err := os.MkdirAll(filepath.Dir(outDir), 0o755); err != nil {
		return fmt.Errorf("kernel cache: %w", err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(outDir), ".publish-")
	if err != nil {
		return fmt.Errorf("kernel cache: %w", err)
	}
	defer os.RemoveAll(tmp)
	for name, from := range map[string]string{"bzImage": bzImage, "config": config, "COPYING": license} {
		b, err := os.ReadFile(from)
		if err != nil {
			return fmt.Errorf("kernel build output: %w", err)
		}
		if err := os.WriteFile(filepath.Join(tmp, name), b, 0o644); err != nil {
			return fmt.Errorf("kernel cache: %w", err)
		}
	}
	j, _ := json.MarshalIndent(res, "", "  ")
	if err := os.WriteFile(filepath.Join(tmp, "build.json"), append(j, '\n'), 0o644); err != nil {
		return fmt.Errorf("kernel cache: %w", err)
	}
	os.RemoveAll(outDir)
	if err := os.Rename(tmp, outDir); err != nil {
		return fmt.Errorf("kernel cache: %w", err)
	}
	return nil
}

func runMake(ctx context.Context, dir string, args []string, out io.Writer) error {
	cmd := exec.CommandContext(ctx, "make", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), buildEnv...)
	cmd.Stdout, cmd.Stderr = out, out
	return cmd.Run()
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// progress counts the files make compiles ("  CC      kernel/fork.o") and
// shows the count, with a percentage once a previous build of the profile
// recorded its total.
type progress struct {
	w         io.Writer
	profile   string
	stepsFile string
	total     int
	tty       bool

	mu    sync.Mutex
	buf   []byte
	steps int
	last  []string
	shown time.Time
	start time.Time
}

func newProgress(w io.Writer, profile, stepsFile string) *progress {
	p := &progress{w: w, profile: profile, stepsFile: stepsFile, start: time.Now()}
	if b, err := os.ReadFile(stepsFile); err == nil {
		fmt.Sscan(string(b), &p.total)
	}
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	return p
}

func (p *progress) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buf = append(p.buf, b...)
	for {
		i := strings.IndexByte(string(p.buf), '\n')
		if i < 0 {
			break
		}
		line := string(p.buf[:i])
		p.buf = p.buf[i+1:]
		p.last = append(p.last, line)
		if len(p.last) > 40 {
			p.last = p.last[1:]
		}
		if f := strings.Fields(line); len(f) == 2 && isStep(f[0]) {
			p.steps++
		}
	}
	// A terminal sees every second; a log a line every 30 s.
	every := 30 * time.Second
	if p.tty {
		every = time.Second
	}
	if time.Since(p.shown) >= every {
		p.shown = time.Now()
		p.show("")
	}
	return len(b), nil
}

func isStep(s string) bool {
	switch s {
	case "CC", "AS", "LD", "AR", "HOSTCC", "OBJCOPY", "ZSTD22", "GEN":
		return true
	}
	return false
}

func (p *progress) show(end string) {
	msg := fmt.Sprintf("kernel %s: %d steps", p.profile, p.steps)
	// Past the recorded total the estimate is wrong (a newer source, more
	// options): the count alone is honest.
	if p.total > 0 && p.steps <= p.total {
		pct := 100 * p.steps / p.total
		if pct > 99 {
			pct = 99
		}
		msg = fmt.Sprintf("kernel %s: %d%% (%d of ~%d steps)", p.profile, pct, p.steps, p.total)
	}
	msg += fmt.Sprintf(", %s", time.Since(p.start).Round(time.Second))
	if p.tty {
		fmt.Fprintf(p.w, "\r%-70s%s", msg, end)
	} else {
		fmt.Fprintln(p.w, msg)
	}
}

// done ends the display and, for a build that succeeded, records the step
// count so that the next build of this profile shows a percentage. A
// failed or interrupted build's count is not a total: recording it made a
// later build show "99% (800 of ~423 steps)".
func (p *progress) done(ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.show("\n")
	// An incremental build counts only what it redid: keep the largest.
	if ok && p.steps > p.total {
		os.WriteFile(p.stepsFile, []byte(fmt.Sprint(p.steps)), 0o644)
	}
}

func (p *progress) tail() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.last, "\n")
}
