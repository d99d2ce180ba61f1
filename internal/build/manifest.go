package build

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/nodeboot/nodeboot/internal/filedigest"
	"github.com/nodeboot/nodeboot/internal/kernel"
	"github.com/nodeboot/nodeboot/internal/spec"
)

// Manifest is manifest.json: every input of the image with its version and
// digest, and the sizes, so an image can be audited and rebuilt.
type Manifest struct {
	Nodeboot     string `json:"nodeboot"`
	ImageVersion string `json:"imageVersion"`
	Arch         string `json:"arch"`
	// Target is the machine family when it is not a UEFI PC or VM: "pi".
	Target string `json:"target,omitempty"`
	// Firmware is the Raspberry Pi GPU firmware module (--target pi).
	Firmware    *Component `json:"firmware,omitempty"`
	Format      string     `json:"format"`
	Compression string     `json:"compression"`
	Hostname    string     `json:"hostname"`
	Cmdline     string     `json:"cmdline"`
	Kernel      Component  `json:"kernel"`
	// KernelBuild records the source package version and config hash of
	// a kernel nodeboot built (--kernel nodeboot-vm|pc).
	KernelBuild *kernel.Built `json:"kernelBuild,omitempty"`
	Initramfs   Component     `json:"initramfs,omitempty"`
	Disk        Component     `json:"disk,omitempty"`
	Init        Component     `json:"init"`
	Node        Component     `json:"node"`
	Libraries   []Component   `json:"libraries"`
	Shell       *Component    `json:"shell,omitempty"` // busybox, when an app has "shell": true
	Apps        []AppInfo     `json:"apps"`
	Licenses    []License     `json:"licenses"`
}

// Component is one input or output file.
type Component struct {
	Name         string `json:"name"`
	Version      string `json:"version,omitempty"`
	Source       string `json:"source,omitempty"`
	SHA256       string `json:"sha256"`
	Size         int64  `json:"size"`
	Uncompressed int64  `json:"uncompressedSize,omitempty"`
	Integrity    string `json:"integrity,omitempty"`
}

// AppInfo describes one app of the image.
type AppInfo struct {
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
	Entry   string `json:"entry"`
	Port    int    `json:"port"`
	Files   int    `json:"files"`
	Size    int64  `json:"size"`
	// SHA256 is the digest of the app's file list (paths, modes, contents).
	SHA256 string `json:"sha256"`
}

// License names a component's license.
type License struct {
	Component string `json:"component"`
	License   string `json:"license"`
}

func describe(p, name, version, source string) (Component, error) {
	// Remembered while the file is unchanged: PID 1, the libraries and
	// the kernel are the same from one build to the next.
	sum, n, err := filedigest.Sum(p)
	if err != nil {
		return Component{}, err
	}
	return Component{Name: name, Version: version, Source: source, SHA256: sum, Size: n}, nil
}

// describeApp hashes an app's tree: every path, mode, link target and file
// content in sorted order.
func describeApp(a spec.App) (AppInfo, error) {
	h := sha256.New()
	var size int64
	for _, f := range a.Files {
		fmt.Fprintf(h, "%s\x00%o\x00%s\x00", f.Rel, f.Mode, f.Link)
		if f.Mode.IsRegular() {
			fh, err := os.Open(filepath.Join(a.SrcDir, filepath.FromSlash(f.Rel)))
			if err != nil {
				return AppInfo{}, err
			}
			n, err := io.Copy(h, fh)
			fh.Close()
			if err != nil {
				return AppInfo{}, fmt.Errorf("hashing %s: %w", f.Rel, err)
			}
			size += n
		}
	}
	return AppInfo{Name: a.Name, Version: a.Package.Version, Entry: a.Entry, Port: a.Port, Files: len(a.Files), Size: size, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// inputDigest identifies the image by its inputs, before outputs are written.
// config is the digest of what the build generates from nodeboot.json and
// .nodeboot/ (runtime.json without its imageVersion, the API's credentials,
// the trusted update keys): a change there alone (update.healthySeconds,
// a memory limit, a rotated key) is a new image, which an OS update must
// be able to tell from the running one.
func (m *Manifest) inputDigest(config string) string {
	in := struct {
		A, F, H, C string
		K, I, N    Component
		L          []Component
		P          []AppInfo
		G          string `json:",omitempty"`
	}{m.Arch, m.Format, m.Hostname, m.Cmdline, m.Kernel, m.Init, m.Node, m.Libraries, m.Apps, config}
	b, _ := json.Marshal(in)
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])[:16]
}

// ReadManifest reads a build directory's manifest.json.
func ReadManifest(dir string) (*Manifest, error) {
	return ReadManifestFile(filepath.Join(dir, "manifest.json"))
}

// ReadManifestFile reads a manifest.
func ReadManifestFile(path string) (*Manifest, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &m, nil
}
