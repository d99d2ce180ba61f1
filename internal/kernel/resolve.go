package kernel

import (
	"context"
	"fmt"
	"io"

	"github.com/nodeboot/nodeboot/internal/kernelbuild"
)

// The kernels --kernel names, besides a path to a bzImage.
const (
	// NameGokrazy is the prebuilt kernel pinned in go.mod (the default).
	NameGokrazy = "gokrazy"
	// NameVM and NamePC are nodeboot's own kernels, built from Debian's
	// linux-source (internal/kernelbuild) on first use and then cached.
	NameVM = "nodeboot-vm"
	NamePC = "nodeboot-pc"
)

// Built says how nodeboot built a kernel; the manifest records it.
type Built struct {
	Profile       string `json:"profile"`
	SourcePackage string `json:"sourcePackage"`
	SourceVersion string `json:"sourceVersion"`
	ConfigSHA256  string `json:"configSHA256"`
}

// Resolve finds the kernel --kernel names: "" or gokrazy for the pinned
// module, nodeboot-vm or nodeboot-pc for nodeboot's own (built now if it is
// not cached yet, with progress on log), anything else a bzImage's path (a
// file called like one of the names is ./name).
func Resolve(ctx context.Context, name, arch string, log io.Writer) (*Kernel, error) {
	switch name {
	case "", NameGokrazy:
		return DefaultContext(ctx, arch, func(format string, a ...any) { fmt.Fprintf(log, format+"\n", a...) })
	case NameVM, NamePC:
		if arch != "amd64" {
			return nil, fmt.Errorf("--kernel %s is built for amd64 only, the image is %s: use --kernel %s or a kernel file", name, arch, NameGokrazy)
		}
		profile := name[len("nodeboot-"):]
		r, err := kernelbuild.Build(ctx, kernelbuild.Options{Profile: profile, Log: log, Progress: log})
		if err != nil {
			return nil, err
		}
		if err := Check(r.Path, arch); err != nil {
			return nil, fmt.Errorf("the cached %s kernel: %w (remove %s to rebuild it)", name, err, r.Path)
		}
		return &Kernel{
			Path:    r.Path,
			Source:  fmt.Sprintf("%s:%s@%s", name, r.SourcePackage, r.SourceVersion),
			Version: versionString(r.Path),
			License: r.License,
			Built: &Built{
				Profile:       r.Profile,
				SourcePackage: r.SourcePackage,
				SourceVersion: r.SourceVersion,
				ConfigSHA256:  r.ConfigSHA256,
			},
		}, nil
	}
	return FromFile(name, arch)
}
