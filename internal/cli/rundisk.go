package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/nodeboot/nodeboot/internal/build"
	"github.com/nodeboot/nodeboot/internal/disk"
)

// buildPersisted builds the disk image of `run --format disk --persist
// APP_DIR`, whose file in the run cache is also the VM's disk: it holds the
// previous runs' /data. Writing the new image over it lost that data on
// every run. Instead the new image is written beside it with the same
// layout (disk size, root slot size), the old data partition is copied into
// it, and only the complete result replaces the old file, so an interrupted
// or failed rebuild leaves the previous disk as it was.
func buildPersisted(ctx context.Context, o build.Options, stderr io.Writer) (*build.Result, error) {
	old := o.Output
	if _, err := os.Stat(old); errors.Is(err, os.ErrNotExist) {
		return build.Build(ctx, o)
	}
	l, err := disk.ReadLayout(old)
	if err != nil {
		return nil, fmt.Errorf("%s keeps /data between `run --persist` runs, but it cannot be read as a nodeboot disk image (%w): move it away, or delete it to start with an empty /data", old, err)
	}
	if o.DiskSize != 0 && o.DiskSize != l.Size {
		fmt.Fprintf(stderr, "--persist: the VM's disk keeps its size of %s (delete %s for a disk of another size; its /data goes with it)\n", humanBytes(l.Size), old)
	}
	next := filepath.Join(filepath.Dir(old), "disk.next.img")
	o.Output, o.DiskSize, o.RootSize = next, l.Size, l.RootA.Size
	clean := func() {
		os.Remove(next)
		os.Remove(build.DiskManifestPath(next))
	}
	res, err := build.Build(ctx, o)
	if err != nil {
		clean()
		var small *disk.TooSmallError
		if errors.As(err, &small) && small.What == "root slot" {
			return nil, fmt.Errorf("the app's new root file system (%s) no longer fits the root slot of the disk kept by --persist (%s): delete %s to start a fresh disk (its /data is lost), or move /data's contents off first: %w", humanBytes(small.Min), humanBytes(l.RootA.Size), old, err)
		}
		return nil, err
	}
	if err := carryData(ctx, old, next, l); err != nil {
		clean()
		return nil, fmt.Errorf("keeping /data of %s: %w", old, err)
	}
	if err := os.Rename(build.DiskManifestPath(next), build.DiskManifestPath(old)); err != nil {
		clean()
		return nil, err
	}
	if err := os.Rename(next, old); err != nil {
		clean()
		return nil, err
	}
	if err := syncDir(filepath.Dir(old)); err != nil {
		return nil, err
	}
	res.DiskPath, res.ManifestPath = old, build.DiskManifestPath(old)
	fmt.Fprintf(stderr, "--persist: rebuilt the image, kept /data\n")
	return res, nil
}

// carryData copies the data partition of the image at old (layout l) into
// the same place of the image at next, which must have the same layout.
// All-zero chunks are skipped: next's data partition is still a hole, and
// so it stays sparse.
func carryData(ctx context.Context, old, next string, l *disk.Layout) error {
	nl, err := disk.ReadLayout(next)
	if err != nil {
		return err
	}
	if nl.Data.Offset != l.Data.Offset || nl.Data.Size != l.Data.Size {
		return fmt.Errorf("the new image's data partition (%d bytes at %d) is not where the old one is (%d bytes at %d)", nl.Data.Size, nl.Data.Offset, l.Data.Size, l.Data.Offset)
	}
	src, err := os.Open(old)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(next, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer dst.Close()
	const chunk = 1 << 20
	buf := make([]byte, chunk)
	zero := make([]byte, chunk)
	for off := int64(0); off < l.Data.Size; off += chunk {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := int(min(chunk, l.Data.Size-off))
		if _, err := src.ReadAt(buf[:n], l.Data.Offset+off); err != nil {
			return err
		}
		if bytes.Equal(buf[:n], zero[:n]) {
			continue
		}
		if _, err := dst.WriteAt(buf[:n], l.Data.Offset+off); err != nil {
			return err
		}
	}
	if err := dst.Sync(); err != nil {
		return err
	}
	return dst.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20:
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}
