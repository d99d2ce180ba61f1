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
	"maps"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/google/renameio/v2"

	"github.com/nodeboot/nodeboot/internal/creds"
	"github.com/nodeboot/nodeboot/internal/debian"
	"github.com/nodeboot/nodeboot/internal/disk"
	"github.com/nodeboot/nodeboot/internal/diskformat"
	"github.com/nodeboot/nodeboot/internal/elfdeps"
	"github.com/nodeboot/nodeboot/internal/image"
	"github.com/nodeboot/nodeboot/internal/initbuild"
	"github.com/nodeboot/nodeboot/internal/kernel"
	"github.com/nodeboot/nodeboot/internal/noderuntime"
	"github.com/nodeboot/nodeboot/internal/shell"
	"github.com/nodeboot/nodeboot/internal/spec"
	"github.com/nodeboot/nodeboot/internal/target"
)

// NodePath is where node lives in every image.
const NodePath = "/usr/bin/node"

// Options are the inputs of a build besides the project itself.
type Options struct {
	AppDir     string
	ConfigPath string // --config; "" = <AppDir>/nodeboot.json if present
	// Format is FormatInitramfs (default: OutDir receives kernel, initramfs
	// and manifest), FormatDisk (Output is the image file) or one of the
	// VM and cloud formats converted from the disk image (diskformat:
	// qcow2, vmdk, vhd, gce; Output is the converted file).
	Format   string
	OutDir   string
	Output   string // disk image path (FormatDisk)
	DiskSize int64  // 0 = the disk writer's default
	// RootSize is each root slot's size (FormatDisk); 0 = the disk
	// writer's default. `run --persist` passes the persisted disk's, so
	// a rebuilt image keeps its layout and so its data partition.
	RootSize int64
	Arch     string // "" = amd64
	// Target is "" (a UEFI PC or VM) or TargetPi: a Raspberry Pi SD card
	// image (arm64, Format must be FormatDisk).
	Target string
	// Libraries is where node's shared libraries come from:
	// LibrariesHost, LibrariesDebian, or "" for the host's when it runs
	// the target's Linux binaries and Debian's packages otherwise.
	Libraries   string
	Node        string // --node: version spec or path; overrides nodeboot.json "node"
	Kernel      string // --kernel: a name (kernel.Name*) or a bzImage's path; "" = the pinned module kernel
	Compression image.Compression
	Log         io.Writer // progress lines
	// Version of nodeboot itself, recorded in the manifest.
	Version string

	// Scratch marks an output its only reader writes again before every
	// use (`nodeboot run`'s image dir in the user cache): it is not
	// fsynced and the kernel is hard-linked from the cache, which keeps
	// an edit-and-run rebuild well under a second (issue 15).
	Scratch bool

	systemdBoot string            // set by Build for writeDisk
	digests     map[string]string // source path → SHA-256, for the initramfs part cache
}

// TargetPi is --target pi: the Raspberry Pi 3B+, 4, 5, Zero 2 W and CM4.
const TargetPi = "pi"

// Image formats.
const (
	FormatInitramfs = "initramfs"
	FormatDisk      = "disk"
)

// IsDisk tells whether format makes a disk image: the raw GPT image or one
// converted from it.
func IsDisk(format string) bool {
	_, ok := diskformat.Parse(format)
	return format == FormatDisk || ok
}

// DefaultOutput is the output path of a format when -o is not given.
func DefaultOutput(format string) string {
	if f, ok := diskformat.Parse(format); ok {
		return filepath.Join("out", "disk"+f.Ext())
	}
	if format == FormatDisk {
		return filepath.Join("out", "disk.img")
	}
	return "out"
}

// Result is what a build produced.
type Result struct {
	DiskPath     string
	Manifest     *Manifest
	KernelPath   string
	InitrdPath   string
	ManifestPath string
	// SystemPart is the cached system part the initramfs starts with
	// (parts.go).
	SystemPart string
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
	var debPkgs []string
	switch o.Target {
	case "":
	case TargetPi:
		if o.Arch != "" && o.Arch != "arm64" {
			return nil, fmt.Errorf("--target pi --arch %s: a Raspberry Pi image is arm64 (every listed Pi runs a 64-bit kernel); drop --arch or pass --arch arm64", o.Arch)
		}
		o.Arch = "arm64"
		if o.Format != FormatDisk {
			return nil, fmt.Errorf("--target pi --format %s: a Raspberry Pi boots from an SD card image; use --format disk (the default with --target pi)", o.Format)
		}
		if o.Kernel != "" && o.Kernel != kernel.NameGokrazy {
			return nil, fmt.Errorf("--target pi --kernel %s: a Raspberry Pi image boots the pinned Pi kernel (%s) with its device trees; drop --kernel", o.Kernel, kernel.PiKernelModule)
		}
	default:
		return nil, fmt.Errorf("--target %s: nodeboot knows the target pi only (none for UEFI PCs and VMs)", o.Target)
	}
	tgt, err := target.Lookup(o.Arch)
	if err != nil {
		return nil, err
	}
	o.Arch = tgt.Name
	// Refused now, before node and the kernel are fetched.
	libs, err := librarySource(o.Libraries, runtime.GOOS, runtime.GOARCH, tgt)
	if err != nil {
		return nil, err
	}
	if o.Compression == "" && !IsDisk(o.Format) {
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
		if o.OutDir == "" {
			return nil, errors.New("no output directory: pass -o DIR")
		}
	default:
		if !IsDisk(o.Format) {
			return nil, fmt.Errorf("unknown format %q: use initramfs, disk, qcow2, vmdk, vhd or gce", o.Format)
		}
		if o.Output == "" {
			return nil, errors.New("no output file for the disk image: pass -o app.img")
		}
		o.OutDir = filepath.Dir(o.Output)
		if f, ok := diskformat.Parse(o.Format); ok {
			// Refused now, not after minutes of building.
			if o.DiskSize != 0 {
				if err := diskformat.Check(f, o.DiskSize); err != nil {
					return nil, err
				}
			}
			if f != diskformat.GCE {
				if _, err := diskformat.FindQEMUImg(); err != nil {
					return nil, err
				}
			}
		}
	}
	// out is what this build replaces: the output directory, or the disk
	// image file.
	out := o.OutDir
	if IsDisk(o.Format) {
		out = o.Output
	}
	out, err = filepath.Abs(out)
	if err != nil {
		return nil, err
	}
	if err := checkOutput(out, o.Format); err != nil {
		return nil, err
	}
	proj, err := spec.Load(o.AppDir, o.ConfigPath)
	if err != nil {
		return nil, err
	}
	if err := leaveOutOutput(proj, out); err != nil {
		return nil, err
	}
	// Read now, so a wrong file stops the build before its long steps.
	logsCreds, err := logsFiles(proj.Dir, proj.Config.Logs) // logs.go
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
	var pi *kernel.Pi
	if o.Target == TargetPi {
		if pi, err = kernel.PiContext(ctx, func(format string, a ...any) { fmt.Fprintf(logw, format+"\n", a...) }); err != nil {
			return nil, err
		}
		k = pi.Kernel
	} else if k, err = kernel.Resolve(ctx, o.Kernel, o.Arch, logw); err != nil {
		return nil, err
	}
	logf("kernel %s (%s)", k.Version, k.Source)

	// The library closure: node and every native file of every app that
	// node on the target could load (internal/elfdeps.SelectNative).
	// The C library and node's other libraries: the host's when it runs
	// the target's binaries, else the target's Debian packages, fetched
	// and verified (never the host's files of another arch).
	var deb *debian.Archive
	sysroot := ""
	if libs == LibrariesDebian {
		if deb, err = debian.HostArchive(); err != nil {
			return nil, fmt.Errorf("an %s image with its libraries from Debian (--libraries debian, the default on a host that cannot run its binaries): %w", tgt.Name, err)
		}
		deb.Log = logw
		var pkgs []*debian.Package
		if sysroot, pkgs, err = deb.Sysroot(ctx, tgt.DebianArch, tgt.Libraries...); err != nil {
			return nil, err
		}
		for _, p := range pkgs {
			debPkgs = append(debPkgs, p.Name+" "+p.Version)
		}
		logf("%s libraries from Debian %s: %s", tgt.Name, deb.Suite, strings.Join(debPkgs, ", "))
	}
	closure, err := nativeClosure(proj, rt.Path, o.Arch, sysroot, logf)
	if err != nil {
		return nil, err
	}
	box, err := shellFor(proj, o.Arch, logf)
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
	// The clock's floor is SOURCE_DATE_EPOCH, not the build's wall clock,
	// which would make every image different (internal/clock).
	if t := mtime(); t.Unix() > 0 {
		runtimeCfg.ClockFloor = t.Unix()
	}
	if len(closure.LibraryPath) > 0 {
		for i := range runtimeCfg.Apps {
			runtimeCfg.Apps[i].Env["LD_LIBRARY_PATH"] = strings.Join(closure.LibraryPath, ":")
		}
	}

	tree := image.NewTree()
	if err := assemble(tree, proj, runtimeCfg, rt, closure, initPath); err != nil {
		return nil, err
	}
	if err := addShell(tree, box); err != nil {
		return nil, err
	}
	if o.Format == FormatInitramfs {
		// Refused now, before minutes of writing, rather than by the
		// cpio writer at the end.
		for _, e := range tree.Entries() {
			if e.Kind == image.KindFile && e.Size >= image.MaxCPIOFile {
				return nil, image.TooBigError(e.Path, e.Source, e.Size)
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	m := &Manifest{
		Nodeboot: o.Version,
		Arch:     o.Arch,
		Format:   "initramfs",
		Hostname: runtimeCfg.Hostname,
		Cmdline:  CmdlineFor(tgt, proj.Config.Cmdline),
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
	if m.Init, err = describe(initPath, "nodeboot-init", o.Version, initbuild.Origin(o.Arch)); err != nil {
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
	if box != nil {
		m.Shell = &Component{Name: "busybox", Version: box.Version, Source: "Debian package " + shell.Package + " (build host)", SHA256: box.SHA256, Size: fileSize(box.Path)}
		m.Licenses = append(m.Licenses, License{Component: "busybox", License: shell.License})
	}

	if m.Kernel, err = describe(k.Path, "vmlinuz", k.Version, k.Source); err != nil {
		return nil, err
	}
	// What this build already hashed, for the initramfs part's key.
	o.digests = map[string]string{rt.Path: m.Node.SHA256, initPath: m.Init.SHA256}
	for i, f := range closure.Files {
		o.digests[f.Path] = m.Libraries[i].SHA256
	}
	if box != nil {
		o.digests[box.Path] = box.SHA256
	}
	m.KernelBuild = k.Built
	firmware := ""
	if IsDisk(o.Format) {
		// The image version is that of the disk image: a qcow2 of it
		// holds the same bytes. The manifest names the real format once
		// the file is written.
		m.Format = FormatDisk
		runtimeCfg.DataPartition = disk.LabelData
		// A PC has a screen: kernel messages go there too. The serial
		// port stays last, so it is /dev/console, where the init logs and
		// where `nodeboot run` and the tests read.
		m.Cmdline = "console=tty0 " + m.Cmdline
	}
	if pi != nil {
		// cmdline.txt gets the Pi's consoles (piboot.Cmdline).
		m.Target = TargetPi
		m.Cmdline = KernelParams(tgt, proj.Config.Cmdline)
		m.Firmware = &Component{Name: "raspberrypi-firmware", Source: pi.FirmwareSrc}
		firmware = pi.FirmwareSrc
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
	credFiles := cr.ImageFiles()
	if f := runtimeCfg.Follow; f != nil {
		// Pull credentials are never baked in: the OS update of this
		// image may be pushed to a registry or copied to a stick, and
		// rotating them must not need a new image (docs/follow.md).
		logf("the node follows %s; for a registry that needs credentials give them to each node once it runs: nodeboot registry login NODE (docs/follow.md)", f.Ref)
	}
	for p, b := range logsCreds {
		credFiles[p] = b
	}
	generated := sha256.New()
	for _, p := range slices.Sorted(maps.Keys(credFiles)) {
		fmt.Fprintf(generated, "%s\x00%d\x00%s", p, len(credFiles[p]), credFiles[p])
	}
	rtDigest, err := json.Marshal(runtimeCfg) // imageVersion is still empty here
	if err != nil {
		return nil, err
	}
	generated.Write(rtDigest)
	for p, data := range credFiles {
		mode := fs.FileMode(0o644)
		if strings.HasSuffix(p, ".key") {
			mode = 0o400 // root only; apps never see it
		}
		if err := tree.AddData(p, data, mode); err != nil {
			return nil, err
		}
	}

	// Inputs are final: the image version is the digest of everything in it.
	m.ImageVersion = m.inputDigest(hex.EncodeToString(generated.Sum(nil)) + firmware)
	runtimeCfg.ImageVersion = m.ImageVersion
	rtJSON, err := json.MarshalIndent(runtimeCfg, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := tree.AddData(spec.RuntimePath, append(rtJSON, '\n'), 0o644); err != nil {
		return nil, err
	}
	if pi != nil {
		return writePi(ctx, o, out, m, tree, pi, logf)
	}
	if IsDisk(o.Format) {
		if tgt.Native() || tgt.Name == "amd64" && fileExists(disk.DefaultSystemdBoot) {
			o.systemdBoot = "" // the host's systemd-boot-efi
		} else {
			// systemd-boot for the target, from Debian like its libraries.
			if deb == nil {
				if deb, err = debian.HostArchive(); err != nil {
					return nil, fmt.Errorf("an %s disk image needs systemd-boot for %s from Debian: %w", tgt.Name, tgt.Name, err)
				}
				deb.Log = logw
			}
			root, _, err := deb.Sysroot(ctx, tgt.DebianArch, "systemd-boot-efi")
			if err != nil {
				return nil, err
			}
			o.systemdBoot = filepath.Join(root, filepath.FromSlash(tgt.SystemdBootFile))
		}
		return writeDisk(ctx, o, out, m, tree, k, logf)
	}
	res, err := writeInitramfs(ctx, o, out, m, tree, k, logf)
	if err == nil {
		warnMemory(logw, m.Initramfs.Uncompressed)
	}
	return res, err
}

// DefaultMemoryMiB is `nodeboot run`'s default guest RAM (its --memory).
const DefaultMemoryMiB = 512

// MemoryNeededMiB estimates the RAM an initramfs of this unpacked size
// needs to boot: the kernel holds the archive beside its unpacked copy, and
// node then needs its share; measured: examples/hello unpacks to 111 MiB and
// boots at 400 MiB, not at 384 (docs/ARCHITECTURE.md, "Smallest RAM").
func MemoryNeededMiB(uncompressed int64) int64 {
	return (uncompressed*7/2 + (1 << 20) - 1) >> 20
}

// warnMemory says when the image will not boot in run's default RAM, so the
// user learns it now rather than from a kernel that cannot unpack.
func warnMemory(w io.Writer, uncompressed int64) {
	if need := MemoryNeededMiB(uncompressed); need > DefaultMemoryMiB {
		fmt.Fprintf(w, "warning: this initramfs unpacks to %s and needs about %d MiB of RAM to boot, more than nodeboot run's default %d MiB: run it with --memory %dM, leave files out with .nodebootignore, or build --format disk (boots in 141 MiB)\n",
			humanSize(uncompressed), need, DefaultMemoryMiB, (need+63)/64*64)
	}
}

// writeInitramfs writes kernel, initramfs and manifest into a new directory
// beside out and then puts it in out's place in one step, so out always
// holds one whole image: an old kernel never sits beside a new initramfs,
// and an interrupted build leaves the previous output as it was.
func writeInitramfs(ctx context.Context, o Options, out string, m *Manifest, tree *image.Tree, k *kernel.Kernel, logf func(string, ...any)) (*Result, error) {
	stage, err := os.MkdirTemp(filepath.Dir(out), spec.TempPrefix+"out-")
	if err != nil {
		return nil, fmt.Errorf("output directory %s: %w (choose another with -o)", filepath.Dir(out), err)
	}
	// After the swap, stage holds the previous output; either way it goes.
	defer os.RemoveAll(stage)
	if err := os.Chmod(stage, 0o755); err != nil {
		return nil, err
	}
	initrdName := "initramfs.cpio" + ext(o.Compression)
	if err := placeKernel(k.Path, filepath.Join(stage, "vmlinuz"), o.Scratch); err != nil {
		return nil, err
	}
	st, sum, part, err := writeInitramfsParts(ctx, tree, filepath.Join(stage, initrdName), o.Compression, mtime(), o.digests, !o.Scratch, logf)
	if err != nil {
		return nil, err
	}
	m.Initramfs = Component{Name: initrdName, Source: string(o.Compression), SHA256: sum, Size: st.Compressed, Uncompressed: st.Uncompressed}
	m.Compression = string(o.Compression)
	if err := writeManifest(filepath.Join(stage, "manifest.json"), m); err != nil {
		return nil, err
	}
	if err := syncDir(stage); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := replaceDir(stage, out); err != nil {
		return nil, fmt.Errorf("putting the new image in %s: %w", out, err)
	}
	res := &Result{
		KernelPath:   filepath.Join(o.OutDir, "vmlinuz"),
		InitrdPath:   filepath.Join(o.OutDir, initrdName),
		ManifestPath: filepath.Join(o.OutDir, "manifest.json"),
		Manifest:     m,
		SystemPart:   part,
	}
	logf("wrote %s (%s, %s uncompressed)", res.InitrdPath, humanSize(st.Compressed), humanSize(st.Uncompressed))
	return res, nil
}

// writeDisk writes the GPT image to a temporary file beside out, renames it
// to out, and writes its manifest beside it.
func writeDisk(ctx context.Context, o Options, out string, m *Manifest, tree *image.Tree, k *kernel.Kernel, logf func(string, ...any)) (*Result, error) {
	res := &Result{DiskPath: o.Output, ManifestPath: DiskManifestPath(o.Output), Manifest: m}
	f, err := os.CreateTemp(filepath.Dir(out), spec.TempPrefix+"*.img")
	if err != nil {
		return nil, fmt.Errorf("output directory %s: %w (choose another with -o)", filepath.Dir(out), err)
	}
	tmp := f.Name()
	f.Close()
	defer os.Remove(tmp)
	// The disk writer cannot be interrupted; a cancelled build throws its
	// result away instead of renaming it into place.
	layout, err := disk.Write(disk.Options{
		Path:        tmp,
		Size:        o.DiskSize,
		RootSize:    o.RootSize,
		Root:        tree,
		Kernel:      k.Path,
		Cmdline:     m.Cmdline,
		Title:       "nodeboot " + m.Hostname,
		Arch:        o.Arch,
		SystemdBoot: o.systemdBoot,
		MTime:       mtime(),
		Seed:        m.ImageVersion,
		// The root is zlib (the only squashfs compressor the default
		// kernel has) unless --compression none asks for none at all.
		RootCompression: rootCompression(o.Compression),
	})
	if err = withSizeHint(err); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	final := tmp
	if f, ok := diskformat.Parse(o.Format); ok {
		// Converted beside out, from the raw image, which then goes.
		cf, err := os.CreateTemp(filepath.Dir(out), spec.TempPrefix+"*"+f.Ext())
		if err != nil {
			return nil, fmt.Errorf("output directory %s: %w (choose another with -o)", filepath.Dir(out), err)
		}
		final = cf.Name()
		cf.Close()
		defer os.Remove(final)
		logf("converting the disk image to %s", f)
		if err := diskformat.Convert(ctx, f, tmp, final, mtime()); err != nil {
			return nil, err
		}
		m.Format = string(f)
	}
	if m.Disk, err = describe(final, filepath.Base(o.Output), "", m.Format); err != nil {
		return nil, err
	}
	m.Disk.Uncompressed = layout.RootFSSize
	m.Cmdline = layout.SlotA.Cmdline
	if err := os.Rename(final, out); err != nil {
		return nil, fmt.Errorf("putting the new image at %s: %w", out, err)
	}
	if err := writeManifest(res.ManifestPath, m); err != nil {
		return nil, err
	}
	logf("wrote %s (%s; root file system %s)", o.Output, humanSize(layout.Size), humanSize(layout.RootFSSize))
	return res, nil
}

// DiskManifestPath is where a disk image's manifest lives: app.img →
// app.manifest.json (app.tar.gz → app.manifest.json too).
func DiskManifestPath(img string) string {
	img = strings.TrimSuffix(img, ".tar.gz")
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
	t, _ := target.Lookup("amd64")
	return CmdlineFor(t, extra)
}

// CmdlineFor is Cmdline for the target t, whose serial console may have
// another name (ttyAMA0 on arm64's virt machine).
func CmdlineFor(t target.Arch, extra string) string {
	// lsm=: the kernel's built-in default list (CONFIG_LSM) need not
	// name Landlock, which the app sandbox uses as its second wall; this
	// is the usual default order with landlock first. LSMs the kernel
	// lacks are skipped.
	//
	// no_timer_check: the kernel's early check that the PIT interrupt
	// reaches the IO-APIC counts ticks against a busy loop, and on a
	// loaded host an emulated (TCG) CPU falls behind and the kernel
	// panics with "IO-APIC + timer doesn't work". KVM guests skip the
	// check by themselves; VM cloud images set it on the command line
	// for the same reason. On PCs it only skips the fallbacks for boards
	// whose timer interrupt is miswired, which current firmware does not
	// have. The check (and the parameter) exist on x86 only.
	return "console=" + t.Console + ",115200 " + KernelParams(t, extra)
}

// KernelParams is CmdlineFor without the console, for a target that names
// its consoles itself (the Pi's cmdline.txt).
func KernelParams(t target.Arch, extra string) string {
	c := "panic=10 oops=panic lsm=landlock,lockdown,yama,loadpin,safesetid,integrity,bpf"
	if t.Name == "amd64" {
		c += " no_timer_check"
	}
	if extra = strings.TrimSpace(extra); extra != "" {
		c += " " + extra
	}
	return c
}

// checkOutput refuses, before any expensive step, an output the build must
// not replace, and proves that the directory the output goes in is
// writable, so that the failure names the directory, not a temp file.
func checkOutput(out, format string) error {
	st, err := os.Stat(out)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("output directory %s cannot be created: %w (choose another with -o)", out, err)
	case st.Mode()&(fs.ModeDevice|fs.ModeCharDevice) != 0:
		return fmt.Errorf("-o %s is a device: build writes an image file; to put an image on a disk or stick, build one (nodeboot build --format disk -o app.img) and then run: nodeboot write app.img %s", out, out)
	case IsDisk(format) && st.IsDir():
		if _, err := os.Stat(filepath.Join(out, "manifest.json")); err == nil && format != FormatDisk {
			return fmt.Errorf("%s holds an initramfs build: --format %s is converted from a disk image, which the build makes itself; name the image file, e.g. -o %s", out, format, filepath.Join(out, "app"+diskExt(format)))
		}
		return fmt.Errorf("%s is a directory: a disk image is one file, e.g. -o %s", out, filepath.Join(out, "app"+diskExt(format)))
	case IsDisk(format) && !st.Mode().IsRegular():
		return fmt.Errorf("-o %s is not a regular file: choose a file name for the disk image", out)
	case !IsDisk(format) && !st.IsDir():
		return fmt.Errorf("-o %s is a file: the initramfs build writes a directory (vmlinuz, initramfs, manifest.json); choose a directory, or --format disk for one image file", out)
	}
	// The output is written beside out, then renamed into place.
	dir := filepath.Dir(out)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("output directory %s cannot be created: %w (choose another with -o)", out, err)
	}
	f, err := os.CreateTemp(dir, spec.TempPrefix+"probe-")
	if err != nil {
		return fmt.Errorf("output directory %s cannot be written: %w (choose another with -o)", out, err)
	}
	f.Close()
	os.Remove(f.Name())
	return nil
}

// leaveOutOutput drops the output path (and what is below it) from every
// app's files, wherever it lies in the app, and refuses an output that
// holds an app: replacing it would delete the app.
func leaveOutOutput(proj *spec.Project, out string) error {
	for i := range proj.Apps {
		a := &proj.Apps[i]
		src, err := filepath.EvalSymlinks(a.SrcDir)
		if err != nil {
			src = a.SrcDir
		}
		outReal := out
		if r, err := filepath.EvalSymlinks(filepath.Dir(out)); err == nil {
			outReal = filepath.Join(r, filepath.Base(out))
		}
		if rel, err := filepath.Rel(outReal, src); err == nil && (rel == "." || filepath.IsLocal(rel)) {
			return fmt.Errorf("-o %s holds the app directory %s, and the build replaces its output: choose a directory of its own, e.g. -o %s", out, a.SrcDir, filepath.Join(a.SrcDir, "out"))
		}
		rel, err := filepath.Rel(src, outReal)
		if err != nil || !filepath.IsLocal(rel) {
			continue
		}
		rel = filepath.ToSlash(rel)
		inOut := func(p string) bool { return p == rel || strings.HasPrefix(p, rel+"/") }
		files := a.Files[:0]
		for _, f := range a.Files {
			if !inOut(f.Rel) {
				files = append(files, f)
			}
		}
		// The directories that held only the output (out/ of the default
		// -o out/disk.img, which this build created) go too.
		for d := path.Dir(rel); d != "."; d = path.Dir(d) {
			empty := true
			for _, f := range files {
				if strings.HasPrefix(f.Rel, d+"/") {
					empty = false
					break
				}
			}
			if !empty {
				break
			}
			files = slices.DeleteFunc(files, func(f spec.File) bool { return f.Rel == d })
		}
		a.Files = files
		addons := a.Addons[:0]
		for _, p := range a.Addons {
			if !inOut(p) {
				addons = append(addons, p)
			}
		}
		a.Addons = addons
		if inOut(a.Entry) {
			return fmt.Errorf("the entry file %s of %s lies in the output %s: choose another -o", a.Entry, a.SrcDir, out)
		}
	}
	return nil
}

// placeKernel puts the kernel into a new image dir: a copy, or for a
// scratch output a hard link to the cached kernel where the two share a
// file system (the image dir is replaced whole, never written into).
func placeKernel(src, dst string, scratch bool) error {
	if scratch && os.Link(src, dst) == nil {
		return nil
	}
	return copyAtomic(src, dst)
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

func diskExt(format string) string {
	f, _ := diskformat.Parse(format)
	return f.Ext()
}

// rootCompression maps --compression to the disk root's squashfs
// compression: "none" stores it uncompressed, anything else is zlib.
func rootCompression(c image.Compression) string {
	if c == image.None {
		return "none"
	}
	return ""
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// withSizeHint adds the --size that would fit to an image the disk writer
// found too small (the PC and the Pi layouts alike).
func withSizeHint(err error) error {
	var small *disk.TooSmallError
	if errors.As(err, &small) && small.What == "image" {
		return fmt.Errorf("%w: pass --size %dM or more", err, (small.Min+(1<<20)-1)>>20)
	}
	return err
}
