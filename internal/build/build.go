// Package build turns an app project into a bootable image: it resolves the
// build plan (apps, node, libraries, kernel, init), assembles the root tree,
// and writes the kernel, the initramfs and manifest.json into the output dir.
package build

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/renameio/v2"

	"github.com/nodeboot/nodeboot/internal/creds"
	"github.com/nodeboot/nodeboot/internal/disk"
	"github.com/nodeboot/nodeboot/internal/elfdeps"
	"github.com/nodeboot/nodeboot/internal/image"
	"github.com/nodeboot/nodeboot/internal/initbuild"
	"github.com/nodeboot/nodeboot/internal/kernel"
	"github.com/nodeboot/nodeboot/internal/noderuntime"
	"github.com/nodeboot/nodeboot/internal/spec"
)

// NodePath is where node lives in every image.
const NodePath = "/usr/bin/node"

// Options are the inputs of a build besides the project itself.
type Options struct {
	AppDir     string
	ConfigPath string // --config; "" = <AppDir>/nodeboot.json if present
	// Format is FormatInitramfs (default: OutDir receives kernel, initramfs
	// and manifest) or FormatDisk (Output is the image file).
	Format   string
	OutDir   string
	Output   string // disk image path (FormatDisk)
	DiskSize int64  // 0 = the disk writer's default
	// RootSize is each root slot's size (FormatDisk); 0 = the disk
	// writer's default. `run --persist` passes the persisted disk's, so
	// a rebuilt image keeps its layout and so its data partition.
	RootSize    int64
	Arch        string // "" = amd64
	Node        string // --node: version spec or path; overrides nodeboot.json "node"
	Kernel      string // --kernel PATH; "" = the pinned module kernel
	Compression image.Compression
	Log         io.Writer // progress lines
	// Version of nodeboot itself, recorded in the manifest.
	Version string
}

// Image formats.
const (
	FormatInitramfs = "initramfs"
	FormatDisk      = "disk"
)

// Result is what a build produced.
type Result struct {
	DiskPath     string
	Manifest     *Manifest
	KernelPath   string
	InitrdPath   string
	ManifestPath string
}

// mtime is the fixed modification time of every file in the image. It honours
// SOURCE_DATE_EPOCH (reproducible-builds.org) and is the epoch otherwise.
func mtime() time.Time {
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		var sec int64
		if _, err := fmt.Sscan(s, &sec); err == nil {
			return time.Unix(sec, 0)
		}
	}
	return time.Unix(0, 0)
}

// Build runs the whole pipeline.
func Build(ctx context.Context, o Options) (*Result, error) {
	if o.Arch == "" {
		o.Arch = "amd64"
	}
	if o.Compression == "" && o.Format != FormatDisk {
		// An uncompressed initramfs boots fastest: under TCG the kernel
		// unpacks zstd in 4.8 s and plain cpio in 1.9 s (docs/performance.md);
		// the archive is then 2.4 times bigger.
		o.Compression = image.None
	}
	logw := o.Log
	if logw == nil {
		logw = io.Discard
	}
	logf := func(format string, args ...any) { fmt.Fprintf(logw, format+"\n", args...) }

	switch o.Format {
	case "", FormatInitramfs:
		o.Format = FormatInitramfs
	case FormatDisk:
		if o.Output == "" {
			return nil, errors.New("no output file for the disk image: pass -o app.img")
		}
		if st, err := os.Stat(o.Output); err == nil && st.IsDir() {
			return nil, fmt.Errorf("%s is a directory: a disk image is one file, e.g. -o %s", o.Output, filepath.Join(o.Output, "app.img"))
		}
		o.OutDir = filepath.Dir(o.Output)
	default:
		return nil, fmt.Errorf("unknown format %q: use initramfs or disk", o.Format)
	}
	if err := checkOutDir(o.OutDir); err != nil {
		return nil, err
	}
	proj, err := spec.Load(o.AppDir, o.ConfigPath)
	if err != nil {
		return nil, err
	}
	for _, a := range proj.Apps {
		logf("app %s: %s (entry %s, port %d, %d files)", a.Name, a.SrcDir, a.Entry, a.Port, len(a.Files))
	}

	nodeFlag := o.Node
	if nodeFlag == "" {
		nodeFlag = proj.Config.Node
	}
	engines := ""
	for _, a := range proj.Apps {
		if a.Engines != "" {
			// Every app shares the one node; the first app's range is the one
			// checked against a host node. Several conflicting ranges are
			// rare and would be reported by the registry lookup.
			engines = a.Engines
			break
		}
	}
	rt, err := noderuntime.Resolve(ctx, noderuntime.Request{Arch: o.Arch, Flag: nodeFlag, Engines: engines, Log: logw})
	if err != nil {
		return nil, err
	}
	logf("node %s (%s)", rt.Version, rt.Source)

	var k *kernel.Kernel
	if o.Kernel != "" {
		k, err = kernel.FromFile(o.Kernel, o.Arch)
	} else {
		k, err = kernel.Default(o.Arch)
	}
	if err != nil {
		return nil, err
	}
	logf("kernel %s (%s)", k.Version, k.Source)

	// The library closure: node and every native addon of every app.
	bins := []string{rt.Path}
	for _, a := range proj.Apps {
		for _, rel := range a.Addons {
			bins = append(bins, filepath.Join(a.SrcDir, filepath.FromSlash(rel)))
		}
	}
	for _, b := range bins[1:] {
		arch, err := elfdeps.Arch(b)
		if err != nil {
			return nil, err
		}
		if arch != o.Arch {
			return nil, fmt.Errorf("native addon %s is built for %s, the image is %s: rebuild it (npm rebuild) for the target", b, arch, o.Arch)
		}
	}
	closure, err := elfdeps.Resolve(bins, elfdeps.Options{})
	if err != nil {
		return nil, err
	}
	relocateHidden(closure)
	logf("%d shared libraries", len(closure.Files))

	tmp, err := os.MkdirTemp("", "nodeboot-build-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	initPath, err := initbuild.Build(o.Arch, tmp)
	if err != nil {
		return nil, err
	}

	runtimeCfg := proj.Runtime(NodePath)
	runtimeCfg.NodeVersion = "v" + strings.TrimPrefix(rt.Version, "v")
	if len(closure.LibraryPath) > 0 {
		for i := range runtimeCfg.Apps {
			runtimeCfg.Apps[i].Env["LD_LIBRARY_PATH"] = strings.Join(closure.LibraryPath, ":")
		}
	}

	tree := image.NewTree()
	if err := assemble(tree, proj, runtimeCfg, rt, closure, initPath); err != nil {
		return nil, err
	}

	m := &Manifest{
		Nodeboot: o.Version,
		Arch:     o.Arch,
		Format:   "initramfs",
		Hostname: runtimeCfg.Hostname,
		Cmdline:  Cmdline(proj.Config.Cmdline),
	}
	// noderuntime hashed node already (it checks cached downloads that
	// way); hashing 100 MB again would only slow every build.
	m.Node = Component{Name: "node", Version: rt.Version, Source: rt.Source, SHA256: rt.SHA256, Size: fileSize(rt.Path), Integrity: rt.Integrity}
	if m.Node.SHA256 == "" {
		if m.Node, err = describe(rt.Path, "node", rt.Version, rt.Source); err != nil {
			return nil, err
		}
		m.Node.Integrity = rt.Integrity
	}
	if m.Init, err = describe(initPath, "nodeboot-init", o.Version, "built from source"); err != nil {
		return nil, err
	}
	for _, f := range closure.Files {
		c, err := describe(f.Path, f.Target, "", f.Path)
		if err != nil {
			return nil, err
		}
		m.Libraries = append(m.Libraries, c)
	}
	for _, a := range proj.Apps {
		am, err := describeApp(a)
		if err != nil {
			return nil, err
		}
		m.Apps = append(m.Apps, am)
	}
	m.Licenses = []License{
		{Component: "linux", License: "GPL-2.0-only"},
		{Component: "node", License: "MIT (and the bundled licenses in node's LICENSE)"},
		{Component: "glibc and other shared libraries", License: "see each library's package on the build host (LGPL-2.1+ for glibc)"},
		{Component: "nodeboot-init", License: "Apache-2.0"},
	}

	if m.Kernel, err = describe(k.Path, "vmlinuz", k.Version, k.Source); err != nil {
		return nil, err
	}
	if o.Format == FormatDisk {
		m.Format = FormatDisk
		runtimeCfg.DataPartition = disk.LabelData
		// A PC has a screen: kernel messages go there too. The serial
		// port stays last, so it is /dev/console, where the init logs and
		// where `nodeboot run` and the tests read.
		m.Cmdline = "console=tty0 " + m.Cmdline
	}

	// The management API's credentials: created once per project, in
	// .nodeboot/ (docs/api.md). The image gets the node's key and
	// certificate and only a hash of the owner's token.
	cr, created, err := creds.Ensure(proj.Dir)
	if err != nil {
		return nil, err
	}
	if created {
		logf("created the node's certificate and your API token in %s (keep it, it is git-ignored: it is the only way into the node)", filepath.Join(proj.Dir, ".nodeboot"))
	}
	if err := tree.AddDir("/etc/nodeboot/api", 0o700, 0, 0); err != nil {
		return nil, err
	}
	for p, data := range cr.ImageFiles() {
		mode := fs.FileMode(0o644)
		if strings.HasSuffix(p, ".key") {
			mode = 0o400 // root only; apps never see it
		}
		if err := tree.AddData(p, data, mode); err != nil {
			return nil, err
		}
	}

	// Inputs are final: the image version is the digest of everything in it.
	m.ImageVersion = m.inputDigest()
	runtimeCfg.ImageVersion = m.ImageVersion
	rtJSON, err := json.MarshalIndent(runtimeCfg, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := tree.AddData(spec.RuntimePath, append(rtJSON, '\n'), 0o644); err != nil {
		return nil, err
	}
	if o.Format == FormatDisk {
		return writeDisk(o, m, tree, k, logf)
	}
	return writeInitramfs(o, m, tree, k, logf)
}

func writeInitramfs(o Options, m *Manifest, tree *image.Tree, k *kernel.Kernel, logf func(string, ...any)) (*Result, error) {
	res := &Result{
		KernelPath:   filepath.Join(o.OutDir, "vmlinuz"),
		InitrdPath:   filepath.Join(o.OutDir, "initramfs.cpio"+ext(o.Compression)),
		ManifestPath: filepath.Join(o.OutDir, "manifest.json"),
		Manifest:     m,
	}
	if err := copyAtomic(k.Path, res.KernelPath); err != nil {
		return nil, err
	}
	st, err := image.WriteInitramfs(tree, res.InitrdPath, o.Compression, mtime())
	if err != nil {
		return nil, err
	}
	if m.Initramfs, err = describe(res.InitrdPath, filepath.Base(res.InitrdPath), "", string(o.Compression)); err != nil {
		return nil, err
	}
	m.Initramfs.Uncompressed = st.Uncompressed
	m.Compression = string(o.Compression)
	// Remove outputs of another compression, so the out dir holds one image.
	for _, c := range []image.Compression{image.Zstd, image.Gzip, image.None} {
		if c != o.Compression {
			os.Remove(filepath.Join(o.OutDir, "initramfs.cpio"+ext(c)))
		}
	}
	if err := writeManifest(res.ManifestPath, m); err != nil {
		return nil, err
	}
	logf("wrote %s (%s, %s uncompressed)", res.InitrdPath, humanSize(st.Compressed), humanSize(st.Uncompressed))
	return res, nil
}

// writeDisk writes the GPT image at o.Output and its manifest beside it.
func writeDisk(o Options, m *Manifest, tree *image.Tree, k *kernel.Kernel, logf func(string, ...any)) (*Result, error) {
	res := &Result{DiskPath: o.Output, ManifestPath: DiskManifestPath(o.Output), Manifest: m}
	layout, err := disk.Write(disk.Options{
		Path:     o.Output,
		Size:     o.DiskSize,
		RootSize: o.RootSize,
		Root:     tree,
		Kernel:   k.Path,
		Cmdline:  m.Cmdline,
		Title:    "nodeboot " + m.Hostname,
		MTime:    mtime(),
		Seed:     m.ImageVersion,
		// The root is zlib (the only squashfs compressor the default
		// kernel has) unless --compression none asks for none at all.
		RootCompression: rootCompression(o.Compression),
	})
	var small *disk.TooSmallError
	if errors.As(err, &small) && small.What == "image" {
		return nil, fmt.Errorf("%w: pass --size %dM or more", err, (small.Min+(1<<20)-1)>>20)
	}
	if err != nil {
		return nil, err
	}
	if m.Disk, err = describe(o.Output, filepath.Base(o.Output), "", "gpt"); err != nil {
		return nil, err
	}
	m.Disk.Uncompressed = layout.RootFSSize
	m.Cmdline = layout.SlotA.Cmdline
	if err := writeManifest(res.ManifestPath, m); err != nil {
		return nil, err
	}
	logf("wrote %s (%s; root file system %s)", o.Output, humanSize(layout.Size), humanSize(layout.RootFSSize))
	return res, nil
}

// DiskManifestPath is where a disk image's manifest lives: app.img →
// app.manifest.json.
func DiskManifestPath(img string) string {
	return strings.TrimSuffix(img, filepath.Ext(img)) + ".manifest.json"
}

func writeManifest(path string, m *Manifest) error {
	mj, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := renameio.WriteFile(path, append(mj, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing manifest: %w", err)
	}
	return nil
}

func ext(c image.Compression) string {
	switch c {
	case image.Zstd:
		return ".zst"
	case image.Gzip:
		return ".gz"
	}
	return ""
}

// mountPoints are directories PID 1 mounts over at boot; files the image puts
// below them would be hidden.
var mountPoints = []string{"/tmp/", "/run/", "/data/", "/dev/", "/proc/", "/sys/"}

// relocatedLibDir receives libraries whose loader path would be hidden.
const relocatedLibDir = "/usr/lib/nodeboot"

// relocateHidden moves libraries found under a mount point (an addon linked
// with RUNPATH /tmp/build/lib, say) to relocatedLibDir and puts that dir on
// LD_LIBRARY_PATH, which the loader searches before RUNPATH.
func relocateHidden(c *elfdeps.Closure) {
	moved := false
	for i, f := range c.Files {
		for _, mp := range mountPoints {
			if strings.HasPrefix(f.Target, mp) && f.Target != c.Interpreter {
				c.Files[i].Target = relocatedLibDir + "/" + filepath.Base(f.Target)
				moved = true
				break
			}
		}
	}
	if moved {
		c.LibraryPath = append(c.LibraryPath, relocatedLibDir)
	}
}

// Cmdline is the kernel command line of an image: the console on the first
// serial port (where `nodeboot run` and the tests read it), and a panic
// reboots after 10 s instead of hanging a headless box forever.
func Cmdline(extra string) string {
	// lsm=: the kernel's built-in default list (CONFIG_LSM) need not
	// name Landlock, which the app sandbox uses as its second wall; this
	// is the usual default order with landlock first. LSMs the kernel
	// lacks are skipped.
	c := "console=ttyS0,115200 panic=10 oops=panic lsm=landlock,lockdown,yama,loadpin,safesetid,integrity,bpf"
	if extra = strings.TrimSpace(extra); extra != "" {
		c += " " + extra
	}
	return c
}

// checkOutDir creates the output dir and proves it is writable before any
// expensive step, so that the failure names the directory, not a temp file.
func checkOutDir(dir string) error {
	if dir == "" {
		return errors.New("no output directory: pass -o DIR")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("output directory %s cannot be created: %w (choose another with -o)", dir, err)
	}
	f, err := os.CreateTemp(dir, ".nodeboot-probe-")
	if err != nil {
		return fmt.Errorf("output directory %s is not writable: %w (choose another with -o)", dir, err)
	}
	f.Close()
	os.Remove(f.Name())
	return nil
}

func copyAtomic(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	pf, err := renameio.NewPendingFile(dst, renameio.WithPermissions(0o644))
	if err != nil {
		return fmt.Errorf("writing %s: %w", dst, err)
	}
	defer pf.Cleanup()
	if _, err := io.Copy(pf, in); err != nil {
		return fmt.Errorf("writing %s: %w", dst, err)
	}
	return pf.CloseAtomicallyReplace()
}

func sha256File(p string) (string, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, fmt.Errorf("hashing %s: %w", p, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

func humanSize(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// rootCompression maps --compression to the disk root's squashfs
// compression: "none" stores it uncompressed, anything else is zlib.
func rootCompression(c image.Compression) string {
	if c == image.None {
		return "none"
	}
	return ""
}
