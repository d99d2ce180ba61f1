package piboot

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"sort"
	"strings"
	"time"
)

// A slot's boot set is what its boot partition holds besides cmdline.txt:
// the firmware, config.txt, the kernel, the device trees and overlays. An
// OS update for a Pi carries it as a tar archive in the payload's kernel
// section, and the node writes it, with the cmdline.txt it makes for the
// slot (its own disk's PARTUUIDs), as a new FAT32 file system into the
// inactive slot's boot partition. A tar, not the FAT partition's bytes,
// because cmdline.txt names the node's disk signature, which the builder
// does not know, and a FAT cannot be patched in place safely.

// BootFile is one file of a boot set.
type BootFile struct {
	Name string // relative, '/'-separated: "start4.elf", "overlays/uart0.dtbo"
	Data []byte
}

// Bounds of a boot set a node accepts.
const (
	MaxBootFiles   = 4096
	MaxBootSetSize = 256 << 20
)

// ErrBootSet is wrapped by every error about a boot set's content.
var ErrBootSet = errors.New("invalid Pi boot set")

// CmdlineFile is the node's own part of a boot partition.
const CmdlineFile = "cmdline.txt"

// WriteBootSet writes files as the boot set archive: sorted by name, every
// header's owner, mode and time fixed, so the same files give the same
// bytes (and the same payload chunks).
func WriteBootSet(w io.Writer, files []BootFile) error {
	files = slices.Clone(files)
	sort.Slice(files, func(i, j int) bool { return files[i].Name < files[j].Name })
	if err := checkBootSet(files); err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	for _, f := range files {
		h := &tar.Header{Typeflag: tar.TypeReg, Name: f.Name, Size: int64(len(f.Data)), Mode: 0o644,
			ModTime: time.Unix(0, 0), Format: tar.FormatUSTAR}
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("boot set %s: %w", f.Name, err)
		}
		if _, err := tw.Write(f.Data); err != nil {
			return fmt.Errorf("boot set %s: %w", f.Name, err)
		}
	}
	return tw.Close()
}

// ReadBootSet parses a boot set archive from untrusted bytes: regular files
// only, names a FAT can hold at most one directory deep, no duplicates, no
// cmdline.txt (the node writes its own), config.txt and the kernel
// present, within MaxBootFiles and MaxBootSetSize.
func ReadBootSet(b []byte) ([]BootFile, error) {
	if len(b) > MaxBootSetSize+MaxBootFiles*1024 {
		return nil, fmt.Errorf("%w: %d bytes", ErrBootSet, len(b))
	}
	tr := tar.NewReader(bytes.NewReader(b))
	var files []BootFile
	total := 0
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBootSet, err)
		}
		if h.Typeflag != tar.TypeReg {
			return nil, fmt.Errorf("%w: %q is not a regular file", ErrBootSet, h.Name)
		}
		if len(files) == MaxBootFiles {
			return nil, fmt.Errorf("%w: more than %d files", ErrBootSet, MaxBootFiles)
		}
		if h.Size < 0 || int64(total)+h.Size > MaxBootSetSize {
			return nil, fmt.Errorf("%w: more than %d bytes", ErrBootSet, MaxBootSetSize)
		}
		data := make([]byte, h.Size)
		if _, err := io.ReadFull(tr, data); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrBootSet, h.Name, err)
		}
		total += len(data)
		files = append(files, BootFile{Name: h.Name, Data: data})
	}
	if err := checkBootSet(files); err != nil {
		return nil, err
	}
	return files, nil
}

func checkBootSet(files []BootFile) error {
	seen := map[string]bool{}
	for _, f := range files {
		if !bootName(f.Name) {
			return fmt.Errorf("%w: %q is not a file name of letters, digits, '.', '_', '+' or '-', at most one directory deep", ErrBootSet, f.Name)
		}
		// FAT compares names without case.
		low := strings.ToLower(f.Name)
		if seen[low] {
			return fmt.Errorf("%w: %q appears twice", ErrBootSet, f.Name)
		}
		seen[low] = true
	}
	for _, f := range files {
		if dir := path.Dir(strings.ToLower(f.Name)); dir != "." && seen[dir] {
			return fmt.Errorf("%w: %q is both a file and a directory", ErrBootSet, dir)
		}
	}
	if seen[CmdlineFile] {
		return fmt.Errorf("%w: it holds %s, which the node writes for its own disk", ErrBootSet, CmdlineFile)
	}
	for _, need := range []string{"config.txt", KernelFile} {
		if !seen[need] {
			return fmt.Errorf("%w: no %s", ErrBootSet, need)
		}
	}
	return nil
}

func bootName(name string) bool {
	parts := strings.Split(name, "/")
	if len(parts) > 2 || len(name) > 200 {
		return false
	}
	for _, p := range parts {
		if p == "" || p == "." || p == ".." || len(p) > 100 {
			return false
		}
		for _, r := range p {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._+-", r)) {
				return false
			}
		}
	}
	return true
}

// BaseCmdline is cmdline.txt without what Cmdline adds for a disk and a
// slot (the consoles, the root and data partitions): the part an OS update
// carries, to which the node adds its own disk's.
func BaseCmdline(cmdline string) string {
	var keep []string
	for _, f := range strings.Fields(cmdline) {
		k, _, _ := strings.Cut(f, "=")
		switch {
		case f == "console=tty1" || f == "console=serial0,115200" || f == "ro" || f == "rootwait":
		case k == "root" || k == "rootfstype" || k == DataParam:
		default:
			keep = append(keep, f)
		}
	}
	return strings.Join(keep, " ")
}
