package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/nodeboot/nodeboot/internal/build"
	"github.com/nodeboot/nodeboot/internal/disk"
	"github.com/nodeboot/nodeboot/internal/elfdeps"
	"github.com/nodeboot/nodeboot/internal/image"
	"github.com/nodeboot/nodeboot/internal/kernel"
	"github.com/nodeboot/nodeboot/internal/noderuntime"
	"github.com/nodeboot/nodeboot/internal/vm"
)

// Kinds of system: nodeboot itself, the floor and the peer.
const (
	kindNodeboot = "nodeboot"
	kindFloor    = "floor"
	kindPeer     = "peer"
)

// System is one thing under test: an image and how QEMU boots it. Every
// system boots the same kernel, node binary and examples/hello; a variant of
// nodeboot differs from another in one build or boot setting.
type System struct {
	Name  string // what -systems selects, e.g. "initramfs", "floor"
	Kind  string // kindNodeboot, kindFloor or kindPeer
	Label string // one line for the report

	// InitMarker is a console line with a kernel timestamp that marks the
	// start of the system's init: it places the kernel's start on the
	// host's clock and splits kernel from user space.
	InitMarker string
	// Detailed: the console has nodeboot's markers (ParsePhases).
	Detailed bool

	// Build settings of nodeboot variants.
	Format      string
	Compression image.Compression
	ConfigJSON  string // a nodeboot.json to build with instead of the app's; "" = the app's own
	// KernelName is the build's --kernel: "" for the default (gokrazy's),
	// nodeboot-vm or nodeboot-pc for nodeboot's own (built, or taken from
	// the cache, while preparing).
	KernelName string
	// Boot settings.
	Machine      string
	ExtraCmdline string
	// Persistence experiments (disk format): Fresh boots a fresh copy of
	// the image with writes kept (a first boot); After boots, with writes
	// kept, the copy the named system's boot in the same round left behind
	// (a second boot of the same node).
	Fresh bool
	After string
	// Direct boots a disk image with the kernel and command line of its
	// boot entry loaded by QEMU (`nodeboot run --boot direct`), no firmware.
	Direct bool
	// Primed boots a disk image once while preparing, writes kept, so the
	// timed boots start from a node whose data partition exists: every
	// boot after the first, which creates the file system (the -1st/-2nd
	// variants measure that one).
	Primed bool

	// Filled in by prepare.
	Result   *build.Result // nodeboot systems
	Kernel   string
	Initrd   string
	Disk     string // booted through OVMF
	RootDisk string // attached as /dev/vda with Kernel (the peer)
	Cmdline  string
	Size     ImageSize
	Notes    []string
	// work is the copy Fresh systems boot and After systems boot again.
	work string
}

// compileCacheJSON sets node's compile cache (node 22.1 and later; older
// versions ignore it) to a directory on the persistent /data.
const compileCacheJSON = `{"env": {"NODE_COMPILE_CACHE": "/data/state/hello/.cache/node-compile"}}`

// VMConfig is how QEMU boots the system with mem of RAM.
func (s *System) VMConfig(mem string) vm.Config {
	c := vm.Config{
		Kernel:  s.Kernel,
		Initrd:  s.Initrd,
		Cmdline: strings.TrimSpace(s.Cmdline + " " + s.ExtraCmdline),
		Memory:  mem,
		Disk:    s.Disk,
		Machine: s.Machine,
		// The same balloon device in every system, so the guest's memory is
		// read the same way everywhere (and costs all of them alike).
		Balloon: true,
	}
	if s.RootDisk != "" {
		c.Drives = []string{s.RootDisk}
	}
	if s.work != "" {
		c.Disk, c.Persist = s.work, true
	}
	return c
}

// allSystems lists every system the harness knows, in boot order. The first
// of each kind is the one the ratios use.
func allSystems() []*System {
	return []*System{
		{Name: "initramfs", Kind: kindNodeboot, Label: "nodeboot, initramfs (plain cpio, the default), `nodeboot run out/`", InitMarker: initMarker, Detailed: true,
			Format: build.FormatInitramfs, Compression: image.None},
		{Name: "disk", Kind: kindNodeboot, Label: "nodeboot, disk image through OVMF + systemd-boot, `nodeboot run app.img`, data partition made by an earlier boot", InitMarker: initMarker, Detailed: true,
			Format: build.FormatDisk, Primed: true},
		{Name: "disk-direct", Kind: kindNodeboot, Label: "nodeboot, disk image, its boot entry's kernel loaded by QEMU, `nodeboot run --boot direct app.img`, data partition made by an earlier boot", InitMarker: initMarker, Detailed: true,
			Format: build.FormatDisk, Primed: true, Direct: true},
		{Name: "floor", Kind: kindFloor, Label: "floor: same kernel, an initramfs whose static Go init execs node at once", InitMarker: "floor: init started"},
		{Name: "debian", Kind: kindPeer, Label: "peer: Debian stable minbase + systemd, hello as a systemd service, root on virtio", InitMarker: "Run /sbin/init as init process"},
		// nodeboot's own kernels (`--kernel nodeboot-vm|pc`) against
		// gokrazy's, which every system above boots.
		{Name: "initramfs-vmkernel", Kind: kindNodeboot, Label: "nodeboot, initramfs, `--kernel nodeboot-vm` (our kernel built from Debian's linux-source, vm profile)", InitMarker: initMarker, Detailed: true,
			Format: build.FormatInitramfs, Compression: image.None, KernelName: "nodeboot-vm"},
		{Name: "disk-vmkernel", Kind: kindNodeboot, Label: "nodeboot, disk image through OVMF + systemd-boot, `--kernel nodeboot-vm`", InitMarker: initMarker, Detailed: true,
			Format: build.FormatDisk, Primed: true, KernelName: "nodeboot-vm"},
		{Name: "disk-direct-vmkernel", Kind: kindNodeboot, Label: "nodeboot, disk image booted directly, `--kernel nodeboot-vm`", InitMarker: initMarker, Detailed: true,
			Format: build.FormatDisk, Primed: true, Direct: true, KernelName: "nodeboot-vm"},
		// The floor again on the vm kernel: the vm rows' targets compare
		// against a floor that boots the same kernel they do.
		{Name: "floor-vmkernel", Kind: kindFloor, Label: "floor on `nodeboot-vm`: the vm kernel, an initramfs whose static Go init execs node at once", InitMarker: "floor: init started",
			KernelName: "nodeboot-vm"},
		{Name: "disk-pckernel", Kind: kindNodeboot, Label: "nodeboot, disk image through OVMF + systemd-boot, `--kernel nodeboot-pc` (vm profile + PC hardware)", InitMarker: initMarker, Detailed: true,
			Format: build.FormatDisk, Primed: true, KernelName: "nodeboot-pc"},
		// Variants for decisions; not in the default set.
		{Name: "initramfs-gzip", Kind: kindNodeboot, Label: "nodeboot, initramfs compressed with gzip", InitMarker: initMarker, Detailed: true,
			Format: build.FormatInitramfs, Compression: image.Gzip},
		{Name: "initramfs-zstd", Kind: kindNodeboot, Label: "nodeboot, initramfs compressed with zstd (`--compression zstd`)", InitMarker: initMarker, Detailed: true,
			Format: build.FormatInitramfs, Compression: image.Zstd},
		{Name: "disk-direct-none", Kind: kindNodeboot, Label: "nodeboot, disk image with an uncompressed squashfs root (`--compression none`), booted directly", InitMarker: initMarker, Detailed: true,
			Format: build.FormatDisk, Compression: image.None, Primed: true, Direct: true},
		{Name: "initramfs-quiet", Kind: kindNodeboot, Label: "nodeboot, initramfs, kernel command line + `quiet`", InitMarker: initMarker, Detailed: true,
			Format: build.FormatInitramfs, Compression: image.None, ExtraCmdline: "quiet"},
		{Name: "initramfs-microvm", Kind: kindNodeboot, Label: "nodeboot, initramfs on QEMU's microvm machine", InitMarker: initMarker, Detailed: true,
			Format: build.FormatInitramfs, Compression: image.None, Machine: vm.MachineMicroVM},
		{Name: "initramfs-nosandbox", Kind: kindNodeboot, Label: "nodeboot, initramfs, app sandbox off (`\"sandbox\": {\"enabled\": false}`)", InitMarker: initMarker, Detailed: true,
			Format: build.FormatInitramfs, Compression: image.None, ConfigJSON: `{"apps": [{"path": "@APP@", "sandbox": {"enabled": false}}]}`},
		{Name: "disk-cache-1st", Kind: kindNodeboot, Label: "nodeboot, disk image with NODE_COMPILE_CACHE on /data, first boot", InitMarker: initMarker, Detailed: true,
			Format: build.FormatDisk, ConfigJSON: compileCacheJSON, Fresh: true},
		{Name: "disk-cache-2nd", Kind: kindNodeboot, Label: "nodeboot, disk image with NODE_COMPILE_CACHE on /data, second boot", InitMarker: initMarker, Detailed: true,
			After: "disk-cache-1st"},
		{Name: "disk-1st", Kind: kindNodeboot, Label: "nodeboot, disk image, first boot (control for the compile cache)", InitMarker: initMarker, Detailed: true,
			Format: build.FormatDisk, Fresh: true},
		{Name: "disk-2nd", Kind: kindNodeboot, Label: "nodeboot, disk image, second boot (control for the compile cache)", InitMarker: initMarker, Detailed: true,
			After: "disk-1st"},
	}
}

// defaultSystems is what `make bench` boots.
const defaultSystems = "initramfs,disk,disk-direct,floor,debian,initramfs-vmkernel,disk-vmkernel,disk-direct-vmkernel,floor-vmkernel,disk-pckernel"

// selectSystems picks the systems named in list (comma-separated), in the
// harness's order.
func selectSystems(list string) ([]*System, error) {
	want := map[string]bool{}
	for _, n := range strings.Split(list, ",") {
		if n = strings.TrimSpace(n); n != "" {
			want[n] = true
		}
	}
	var out []*System
	var names []string
	for _, s := range allSystems() {
		names = append(names, s.Name)
		if want[s.Name] {
			out = append(out, s)
			delete(want, s.Name)
		}
	}
	if len(want) > 0 {
		var unknown []string
		for n := range want {
			unknown = append(unknown, n)
		}
		sort.Strings(unknown)
		return nil, fmt.Errorf("unknown system %s in -systems: choose from %s", strings.Join(unknown, ", "), strings.Join(names, ", "))
	}
	for _, s := range out {
		if s.After != "" && !want2(out, s.After) {
			return nil, fmt.Errorf("-systems: %s boots what %s left behind: select both", s.Name, s.After)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("-systems names no system: choose from %s", strings.Join(names, ", "))
	}
	return out, nil
}

func want2(list []*System, name string) bool {
	for _, s := range list {
		if s.Name == name {
			return true
		}
	}
	return false
}

// env is what preparing the systems shares.
type env struct {
	appDir   string
	src      string // nodeboot's source tree
	tmp      string // removed after the run
	cacheDir string // os.UserCacheDir()/nodeboot/bench
	node     *noderuntime.Runtime
	nodeFlag string
	kernel   string // the kernel nodeboot's build used
	systems  map[string]*System
}

// prepare builds the system's image.
func (s *System) prepare(ctx context.Context, e *env) error {
	switch s.Kind {
	case kindNodeboot:
		return s.prepareNodeboot(ctx, e)
	case kindFloor:
		return s.prepareFloor(ctx, e)
	case kindPeer:
		return s.preparePeer(ctx, e)
	}
	return fmt.Errorf("system %s: unknown kind %q", s.Name, s.Kind)
}

// freshCopy gives a Fresh system a pristine copy of its image to boot.
func (s *System) freshCopy() error {
	if !s.Fresh || s.work == "" {
		return nil
	}
	return sparseCopy(s.Disk, s.work)
}

// sparseCopy copies an image with cp, which keeps it sparse (a 2 GiB image
// holds a few hundred MiB).
func sparseCopy(src, dst string) error {
	if out, err := exec.Command("cp", "--sparse=always", src, dst).CombinedOutput(); err != nil {
		return fmt.Errorf("copying %s: %w: %s", src, err, out)
	}
	return nil
}

func (s *System) prepareNodeboot(ctx context.Context, e *env) error {
	if s.After != "" {
		first := e.systems[s.After]
		if first == nil || first.work == "" {
			return fmt.Errorf("%s needs %s prepared first", s.Name, s.After)
		}
		s.Result, s.Cmdline, s.Size, s.work = first.Result, first.Cmdline, first.Size, first.work
		return nil
	}
	dir := filepath.Join(e.tmp, s.Name)
	o := build.Options{
		AppDir:      e.appDir,
		OutDir:      dir,
		Format:      s.Format,
		Compression: s.Compression,
		Node:        e.nodeFlag,
		Kernel:      s.KernelName,
		Log:         prefixWriter{w: os.Stderr, prefix: "  "},
		Version:     "bench",
	}
	if s.Format == build.FormatDisk {
		o.Output = filepath.Join(dir, "app.img")
	}
	if s.ConfigJSON != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		o.ConfigPath = filepath.Join(e.tmp, s.Name+".nodeboot.json")
		// Apps' paths are relative to nodeboot.json, which lives in the
		// harness's temp dir: @APP@ stands for the app dir from there.
		abs, err := filepath.Abs(o.AppDir)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(e.tmp, abs)
		if err != nil {
			return err
		}
		cfg := strings.ReplaceAll(s.ConfigJSON, "@APP@", filepath.ToSlash(rel))
		if err := os.WriteFile(o.ConfigPath, []byte(cfg), 0o644); err != nil {
			return err
		}
	}
	res, err := build.Build(ctx, o)
	if err != nil {
		if s.ConfigJSON != "" {
			return fmt.Errorf("building %s with nodeboot.json %s: %w (does this nodeboot have that setting yet?)", s.Name, s.ConfigJSON, err)
		}
		return fmt.Errorf("building %s (%s): %w", e.appDir, s.Name, err)
	}
	s.Result = res
	s.Cmdline = res.Manifest.Cmdline
	if res.DiskPath != "" {
		s.Disk = res.DiskPath
		// The size of the image as built, before any boot writes to it.
		if s.Size, err = measureSize(res.DiskPath); err != nil {
			return err
		}
		if s.Fresh {
			s.work = filepath.Join(e.tmp, s.Name+".work.img")
		}
		if s.Direct {
			b, err := disk.ReadBoot(s.Disk)
			if err != nil {
				return err
			}
			if s.Kernel, err = b.WriteKernel(dir); err != nil {
				return err
			}
			s.Cmdline = b.Entry.Options
		}
		if s.Primed {
			return s.prime(ctx, e)
		}
		return nil
	} else {
		s.Kernel, s.Initrd = res.KernelPath, res.InitrdPath
		s.Size, err = measureSize(res.KernelPath, res.InitrdPath)
	}
	return err
}

// prepareFloor lays out the floor's initramfs: its init, node and node's
// libraries at the same paths as in nodeboot's image, and the app.
func (s *System) prepareFloor(ctx context.Context, e *env) error {
	dir := filepath.Join(e.tmp, s.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	initPath := filepath.Join(dir, "init")
	if err := goBuildStatic(ctx, e.src, "./bench/floorinit", initPath); err != nil {
		return err
	}
	closure, err := elfdeps.Resolve([]string{e.node.Path}, elfdeps.Options{})
	if err != nil {
		return fmt.Errorf("node's libraries: %w", err)
	}
	t := image.NewTree()
	for _, d := range []string{"/dev", "/proc", "/usr/bin", "/app"} {
		if err := t.AddDir(d, 0o755, 0, 0); err != nil {
			return err
		}
	}
	add := func(dst, src string, mode os.FileMode) error {
		st, err := os.Stat(src)
		if err != nil {
			return err
		}
		return t.AddFile(dst, src, mode, st.Size())
	}
	if err := add("/init", initPath, 0o755); err != nil {
		return err
	}
	if err := add(build.NodePath, e.node.Path, 0o755); err != nil {
		return err
	}
	for _, f := range closure.Files {
		if err := add(f.Target, f.Path, 0o755); err != nil {
			return fmt.Errorf("adding library %s: %w", f.Target, err)
		}
	}
	for _, f := range []string{"server.js", "package.json"} {
		if err := add("/app/"+f, filepath.Join(e.appDir, f), 0o644); err != nil {
			return err
		}
	}
	s.Kernel = e.kernel
	if s.KernelName != "" {
		k, err := kernel.Resolve(ctx, s.KernelName, "amd64", prefixWriter{w: os.Stderr, prefix: "  "})
		if err != nil {
			return fmt.Errorf("the floor's kernel %s: %w", s.KernelName, err)
		}
		s.Kernel = k.Path
	}
	// Uncompressed, like nodeboot's default: the kernel unpacks it fastest.
	s.Initrd = filepath.Join(dir, "initramfs.cpio")
	if _, err := image.WriteInitramfs(t, s.Initrd, image.None, timeZero); err != nil {
		return fmt.Errorf("writing the floor's initramfs: %w", err)
	}
	// The same console and panic settings as nodeboot's images.
	s.Cmdline = build.Cmdline("")
	s.Size, err = measureSize(s.Kernel, s.Initrd)
	return err
}

// prime boots a copy of a disk image once, writes kept, until the app
// listens, and powers it off: the copy becomes the image the timed boots
// start from (each behind its own throwaway overlay).
func (s *System) prime(ctx context.Context, e *env) error {
	primed := filepath.Join(e.tmp, s.Name+".primed.img")
	if err := sparseCopy(s.Disk, primed); err != nil {
		return err
	}
	cfg := s.VMConfig("512M")
	cfg.Disk, cfg.Persist = primed, true
	cfg.Balloon = false
	pctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	g, err := vm.Start(pctx, cfg)
	if err != nil {
		return fmt.Errorf("priming %s: %w", s.Name, err)
	}
	defer g.Kill()
	if _, err := g.WaitFor(pctx, listeningMarker, 0); err != nil {
		return fmt.Errorf("priming %s: the first boot did not reach %q: %w\n%s", s.Name, listeningMarker, err, g.Tail(30))
	}
	if err := g.Shutdown(shutdownTimeout); err != nil {
		return fmt.Errorf("priming %s: power-off: %w", s.Name, err)
	}
	s.Disk = primed
	s.Notes = append(s.Notes, "booted once before the timed boots")
	return nil
}

// uefi reports whether the system boots through firmware.
func (s *System) uefi() bool { return s.Disk != "" && s.Kernel == "" }
