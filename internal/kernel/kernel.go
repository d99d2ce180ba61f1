// Package kernel finds the Linux kernel an image boots: by default the
// prebuilt kernel published as a Go module and pinned in nodeboot's go.mod,
// nodeboot's own kernel built from Debian's source (--kernel nodeboot-vm or
// nodeboot-pc), or a file the user names with --kernel.
package kernel

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	// The kernel module is an empty Go package next to the vmlinuz file.
	// Importing it keeps its version pinned in go.mod and the h1: hash of
	// its content in go.sum, which Default checks the download against.
	_ "github.com/gokrazy/kernel.amd64"
	_ "github.com/gokrazy/kernel.arm64"
	// The Raspberry Pi's kernel, device trees and GPU firmware (--target pi).
	_ "github.com/gokrazy/firmware"
	_ "github.com/gokrazy/kernel.rpi"

	nodeboot "github.com/nodeboot/nodeboot"
	"github.com/nodeboot/nodeboot/internal/goproxy"
	"github.com/nodeboot/nodeboot/internal/target"
)

// Kernel is a kernel file and where it came from.
type Kernel struct {
	Path    string // host path of the bzImage / Image
	Source  string // "module:<path>@<version>" or "file"
	Version string // the kernel release from the bzImage header, if found
	License string // host path of the kernel's license text, if known
	Built   *Built // how nodeboot built it (--kernel nodeboot-vm|pc), else nil
}

// ModulePath returns the Go module that provides the default kernel of arch.
func ModulePath(arch string) (string, error) {
	t, err := target.Lookup(arch)
	if err != nil {
		return "", err
	}
	return t.KernelModule, nil
}

// Default fetches the pinned kernel module over the Go module proxy (no go
// command needed) into the user cache dir, verified against the h1: hash in
// nodeboot's go.sum; a cached copy is verified again on every build.
func Default(arch string) (*Kernel, error) {
	return DefaultContext(context.Background(), arch, nil)
}

// DefaultContext is Default with a context and a log for the download.
func DefaultContext(ctx context.Context, arch string, logf func(string, ...any)) (*Kernel, error) {
	mod, err := ModulePath(arch)
	if err != nil {
		return nil, err
	}
	dir, version, err := fetchPinned(ctx, mod, logf)
	if err != nil {
		return nil, err
	}
	k := &Kernel{
		Path:    filepath.Join(dir, "vmlinuz"),
		Source:  "module:" + mod + "@" + version,
		Version: versionString(filepath.Join(dir, "vmlinuz")),
		License: filepath.Join(dir, "LICENSE.linux"),
	}
	if err := Check(k.Path, arch); err != nil {
		return nil, err
	}
	return k, nil
}

// fetchPinned fetches the module mod at the version nodeboot's go.mod pins,
// verified against go.sum, and returns its directory and version.
func fetchPinned(ctx context.Context, mod string, logf func(string, ...any)) (string, string, error) {
	m, h1, err := goproxy.Pinned(nodeboot.GoMod, nodeboot.GoSum, mod)
	if err != nil {
		return "", "", fmt.Errorf("finding the pinned module %s: %w", mod, err)
	}
	cache, err := CacheDir()
	if err != nil {
		return "", "", err
	}
	f := &goproxy.Fetcher{Dir: cache, Log: logf}
	dir, err := f.Get(ctx, m, h1)
	if errors.Is(err, goproxy.ErrDirect) {
		// GOPROXY=direct or GOPRIVATE: only the go command fetches from
		// the origin; the go command checks go.sum's hash itself.
		dir, err = moduleDir(mod, m.Version, err)
	}
	if err != nil {
		return "", "", err
	}
	return dir, m.Version, nil
}

// The Raspberry Pi's modules: its kernel with device trees and overlays,
// and the GPU firmware.
const (
	PiKernelModule   = "github.com/gokrazy/kernel.rpi"
	PiFirmwareModule = "github.com/gokrazy/firmware"
)

// Pi is what a Raspberry Pi image boots: the directories of the pinned Pi
// kernel module (vmlinuz, *.dtb, overlays/) and firmware module, fetched
// and verified like the default kernel.
type Pi struct {
	Kernel                    *Kernel
	KernelDir, FirmwareDir    string
	KernelSource, FirmwareSrc string
}

// PiContext fetches the Pi kernel and firmware modules.
func PiContext(ctx context.Context, logf func(string, ...any)) (*Pi, error) {
	kdir, kver, err := fetchPinned(ctx, PiKernelModule, logf)
	if err != nil {
		return nil, err
	}
	fdir, fver, err := fetchPinned(ctx, PiFirmwareModule, logf)
	if err != nil {
		return nil, err
	}
	p := &Pi{
		KernelDir: kdir, FirmwareDir: fdir,
		KernelSource: "module:" + PiKernelModule + "@" + kver,
		FirmwareSrc:  "module:" + PiFirmwareModule + "@" + fver,
	}
	p.Kernel = &Kernel{Path: filepath.Join(kdir, "vmlinuz"), Source: p.KernelSource, Version: versionString(filepath.Join(kdir, "vmlinuz")), License: filepath.Join(kdir, "LICENSE.linux")}
	if err := Check(p.Kernel.Path, "arm64"); err != nil {
		return nil, err
	}
	return p, nil
}

// CacheDir is where fetched kernel modules are kept.
func CacheDir() (string, error) {
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache dir for the kernel: %w (set HOME or XDG_CACHE_HOME)", err)
	}
	return filepath.Join(d, "nodeboot", "modules"), nil
}

func moduleDir(mod, version string, why error) (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("fetching kernel module %s@%s: %w: install Go, change GOPROXY/GONOPROXY/GOPRIVATE so a module proxy serves it, or pass --kernel PATH", mod, version, why)
	}
	cmd := exec.Command(goBin, "mod", "download", "-json", mod+"@"+version)
	// Outside any module, so the user's current directory does not matter.
	cmd.Dir = os.TempDir()
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var info struct {
		Dir   string
		Error string
	}
	if jerr := json.Unmarshal(out, &info); jerr == nil && info.Error != "" {
		return "", fmt.Errorf("downloading kernel module %s@%s: %s", mod, version, info.Error)
	}
	if err != nil {
		return "", fmt.Errorf("downloading kernel module %s@%s: %w: %s", mod, version, err, strings.TrimSpace(stderr.String()))
	}
	if info.Dir == "" {
		return "", fmt.Errorf("downloading kernel module %s@%s: go mod download reported no directory", mod, version)
	}
	return info.Dir, nil
}

// FromFile checks a user-supplied kernel.
func FromFile(path, arch string) (*Kernel, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	if err := Check(abs, arch); err != nil {
		return nil, err
	}
	return &Kernel{Path: abs, Source: "file", Version: versionString(abs)}, nil
}

// Check tells whether path looks like a bootable kernel for arch, so that a
// wrong --kernel fails at build time with a reason instead of as a silent
// QEMU hang.
func Check(path, arch string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("kernel: %w", err)
	}
	defer f.Close()
	hdr := make([]byte, 0x240)
	n, _ := io.ReadFull(f, hdr)
	hdr = hdr[:n]
	switch arch {
	case "amd64":
		// x86 boot protocol: "HdrS" at 0x202 in every bzImage since 2.00.
		if len(hdr) >= 0x206 && string(hdr[0x202:0x206]) == "HdrS" {
			return nil
		}
		return fmt.Errorf("%s is not an x86 Linux kernel (no bzImage boot header): pass a bzImage, e.g. /boot/vmlinuz-*", path)
	case "arm64":
		// arm64 Image header: magic "ARM\x64" at 0x38.
		if len(hdr) >= 0x3c && binary.LittleEndian.Uint32(hdr[0x38:]) == 0x644d5241 {
			return nil
		}
		return fmt.Errorf("%s is not an arm64 Linux kernel Image (no ARM\\x64 magic)", path)
	}
	return fmt.Errorf("unsupported architecture %q", arch)
}

// versionString extracts the kernel version from an x86 bzImage (the
// header holds an offset, at 0x20e relative to 0x200, to a NUL-terminated
// string) or an arm64 Image (whose header has none: the release is read
// from the kernel's banner, linux_banner, "Linux version 6.12.47-v8 (...").
func versionString(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	var magic [4]byte
	if _, err := f.ReadAt(magic[:], 0x38); err == nil && binary.LittleEndian.Uint32(magic[:]) == 0x644d5241 {
		return arm64Version(f)
	}
	var off [2]byte
	if _, err := f.ReadAt(off[:], 0x20e); err != nil {
		return ""
	}
	buf := make([]byte, 128)
	n, _ := f.ReadAt(buf, int64(binary.LittleEndian.Uint16(off[:]))+0x200)
	s := string(buf[:n])
	if i := strings.IndexByte(s, 0); i >= 0 {
		s = s[:i]
	}
	if i := strings.IndexByte(s, ' '); i >= 0 {
		s = s[:i]
	}
	// The manifest records it: a header pointing at binary garbage gives
	// no version rather than bytes that are not text.
	if strings.IndexFunc(s, func(r rune) bool { return r < '!' || r > '~' }) >= 0 {
		return ""
	}
	return s
}

// arm64Version finds the first "Linux version " followed by a release
// (a digit first) in an uncompressed arm64 Image, reading it in blocks
// that overlap by the banner's length.
func arm64Version(f *os.File) string {
	const banner = "Linux version "
	buf := make([]byte, 1<<20)
	var off int64
	for {
		n, err := f.ReadAt(buf, off)
		b := buf[:n]
		for i := 0; ; {
			j := bytes.Index(b[i:], []byte(banner))
			if j < 0 {
				break
			}
			rest := b[i+j+len(banner):]
			if len(rest) < 64 && err == nil {
				break // read it again with what follows, in the next block
			}
			if len(rest) > 0 && rest[0] >= '0' && rest[0] <= '9' {
				if k := bytes.IndexAny(rest, " \x00\n"); k > 0 {
					v := string(rest[:k])
					if strings.IndexFunc(v, func(r rune) bool { return r < '!' || r > '~' }) < 0 && len(v) <= 64 {
						return v
					}
				}
			}
			i += j + 1
		}
		if err != nil || n < len(buf) {
			return ""
		}
		off += int64(n - len(banner) - 64)
	}
}

// InitSize reads a bzImage's init_size: the memory its decompressed kernel
// needs in one piece, which the EFI stub allocates while the firmware still
// owns memory. It returns 0 for anything that is not a bzImage of boot
// protocol 2.10 or later.
func InitSize(bz []byte) uint32 {
	if len(bz) < 0x264 || string(bz[0x202:0x206]) != "HdrS" || binary.LittleEndian.Uint16(bz[0x206:]) < 0x20a {
		return 0
	}
	return binary.LittleEndian.Uint32(bz[0x260:])
}

// UEFIMinMemoryMiB estimates the smallest guest RAM with which QEMU's OVMF
// can start the bzImage bz through its EFI stub: in a small VM the largest
// free block OVMF leaves, from its first 2 MiB boundary on, is the RAM less
// about 86.5 MiB, and the stub needs init_size of it (measured with OVMF
// 2022.11 under TCG with 1 GiB pages: 141 MiB for init_size 54.4 MiB;
// docs/ARCHITECTURE.md, "Smallest RAM"). 0 when bz is not a bzImage.
func UEFIMinMemoryMiB(bz []byte) int {
	n := InitSize(bz)
	if n == 0 {
		return 0
	}
	const overhead = 86<<20 + 512<<10
	return int((int64(n) + overhead + 1<<20 - 1) >> 20)
}
