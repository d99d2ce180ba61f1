package build

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/nodeboot/nodeboot/internal/disk"
	"github.com/nodeboot/nodeboot/internal/image"
	"github.com/nodeboot/nodeboot/internal/kernel"
	"github.com/nodeboot/nodeboot/internal/spec"
)

// writePi writes the Raspberry Pi SD card image (disk.WritePi) beside out,
// renames it to out and writes its manifest beside it, as writeDisk does
// for a PC's.
func writePi(ctx context.Context, o Options, out string, m *Manifest, tree *image.Tree, pi *kernel.Pi, logf func(string, ...any)) (*Result, error) {
	res := &Result{DiskPath: o.Output, ManifestPath: DiskManifestPath(o.Output), Manifest: m}
	f, err := os.CreateTemp(filepath.Dir(out), spec.TempPrefix+"*.img")
	if err != nil {
		return nil, fmt.Errorf("output directory %s: %w (choose another with -o)", filepath.Dir(out), err)
	}
	tmp := f.Name()
	f.Close()
	defer os.Remove(tmp)
	fw, err := describe(filepath.Join(pi.FirmwareDir, "start4.elf"), "start4.elf", "", pi.FirmwareSrc)
	if err != nil {
		return nil, err
	}
	m.Firmware.SHA256, m.Firmware.Size = fw.SHA256, fw.Size
	layout, err := disk.WritePi(disk.PiOptions{
		Path:            tmp,
		Size:            o.DiskSize,
		RootSize:        o.RootSize,
		Root:            tree,
		KernelDir:       pi.KernelDir,
		FirmwareDir:     pi.FirmwareDir,
		Cmdline:         m.Cmdline,
		MTime:           mtime(),
		Seed:            m.ImageVersion,
		RootCompression: rootCompression(o.Compression),
	})
	if err = withSizeHint(err); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if m.Disk, err = describe(tmp, filepath.Base(o.Output), "", FormatDisk); err != nil {
		return nil, err
	}
	m.Disk.Uncompressed = layout.RootFSSize
	m.Cmdline = strings.TrimSpace(layout.Cmdline)
	if err := os.Rename(tmp, out); err != nil {
		return nil, fmt.Errorf("putting the new image at %s: %w", out, err)
	}
	if err := writeManifest(res.ManifestPath, m); err != nil {
		return nil, err
	}
	logf("wrote %s (Raspberry Pi SD card image, %s; root file system %s)", o.Output, humanSize(layout.Size), humanSize(layout.RootFSSize))
	return res, nil
}
