package bundle

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/nodeboot/nodeboot/internal/spec"
)

// File is one entry of the app's code dir as it goes into a bundle.
type File struct {
	Rel  string      // slash path relative to the app dir
	Src  string      // host path of a regular file; "" for a dir or symlink
	Mode fs.FileMode // type bits decide the kind; only the executable bits of a file are kept
	Link string      // symlink target, if a symlink
}

// FromSpec turns the file list internal/spec makes for the image build
// (spec.ListFiles of dir) into bundle files, so a bundle holds exactly
// what an image would.
func FromSpec(dir string, files []spec.File) []File {
	out := make([]File, 0, len(files))
	for _, f := range files {
		bf := File{Rel: f.Rel, Mode: f.Mode, Link: f.Link}
		if f.Mode.IsRegular() {
			bf.Src = filepath.Join(dir, filepath.FromSlash(f.Rel))
		}
		out = append(out, bf)
	}
	return out
}

// encoderWindow matches the image's zstd window (internal/image); the
// node's decoder accepts up to maxWindow.
const encoderWindow = 8 << 20

// Write writes a bundle of meta and files to w. The output depends only on
// its inputs: entries sorted by path, mtime 0 (or SOURCE_DATE_EPOCH), owner
// 0:0 without names, a single-threaded zstd encoder (its output would
// otherwise depend on the core count).
func Write(w io.Writer, meta Meta, files []File) error {
	if meta.Format == 0 {
		meta.Format = Format
	}
	// Empty lists, not null, so the JSON reads as docs/api.md shows it.
	if meta.NodeArgs == nil {
		meta.NodeArgs = []string{}
	}
	if meta.Libraries == nil {
		meta.Libraries = []string{}
	}
	if err := meta.check(); err != nil {
		return fmt.Errorf("bundle metadata: %w", err)
	}
	files = append([]File(nil), files...)
	sort.Slice(files, func(i, j int) bool { return files[i].Rel < files[j].Rel })
	entryFound := false
	for i, f := range files {
		if err := checkRel(f.Rel); err != nil {
			return fmt.Errorf("bundle file %q: %w", f.Rel, err)
		}
		if i > 0 && files[i-1].Rel == f.Rel {
			return fmt.Errorf("bundle file %q: listed twice", f.Rel)
		}
		if f.Mode&fs.ModeSymlink != 0 && !linkStaysInside(f.Rel, f.Link) {
			return fmt.Errorf("bundle file %s -> %s: the symlink leaves the app directory; make it a relative link within it", f.Rel, f.Link)
		}
		if f.Rel == meta.Entry && !f.Mode.IsDir() {
			entryFound = true
		}
	}
	if !entryFound {
		return fmt.Errorf("bundle: the entry point %q is not among the app's files", meta.Entry)
	}
	mdata, err := json.Marshal(meta)
	if err != nil {
		return fmt.Errorf("bundle metadata: %w", err)
	}

	zw, err := zstd.NewWriter(w,
		zstd.WithEncoderLevel(zstd.SpeedBetterCompression),
		zstd.WithEncoderConcurrency(1),
		zstd.WithWindowSize(encoderWindow),
		zstd.WithEncoderCRC(true))
	if err != nil {
		return fmt.Errorf("bundle: zstd: %w", err)
	}
	tw := tar.NewWriter(zw)
	mt := mtime()
	hdr := func(name string, typ byte, mode int64) *tar.Header {
		return &tar.Header{Name: name, Typeflag: typ, Mode: mode, ModTime: mt, Format: tar.FormatPAX}
	}
	if err := writeHead(tw, hdr, mdata); err != nil {
		return err
	}
	for _, f := range files {
		if err := writeFile(tw, hdr, f); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("bundle: zstd: %w", err)
	}
	return nil
}

func writeFile(tw *tar.Writer, hdr func(string, byte, int64) *tar.Header, f File) error {
	name := AppDir + "/" + f.Rel
	switch {
	case f.Mode.IsDir():
		if err := tw.WriteHeader(hdr(name+"/", tar.TypeDir, 0o755)); err != nil {
			return fmt.Errorf("bundle file %s: %w", f.Rel, err)
		}
		return nil
	case f.Mode&fs.ModeSymlink != 0:
		h := hdr(name, tar.TypeSymlink, 0o777)
		h.Linkname = f.Link
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("bundle file %s: %w", f.Rel, err)
		}
		return nil
	case f.Mode.Type() != 0:
		return fmt.Errorf("bundle file %s: %v is not a regular file, directory or symlink", f.Rel, f.Mode.Type())
	}
	src, err := os.Open(f.Src)
	if err != nil {
		return fmt.Errorf("bundle file %s: %w", f.Rel, err)
	}
	defer src.Close()
	st, err := src.Stat()
	if err != nil {
		return fmt.Errorf("bundle file %s: %w", f.Rel, err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("bundle file %s: %s is not a regular file", f.Rel, f.Src)
	}
	// Code is read-only on the node; only whether it is executable counts.
	mode := int64(0o644)
	if f.Mode&0o111 != 0 {
		mode = 0o755
	}
	h := hdr(name, tar.TypeReg, mode)
	h.Size = st.Size()
	if err := tw.WriteHeader(h); err != nil {
		return fmt.Errorf("bundle file %s: %w", f.Rel, err)
	}
	if _, err := io.CopyN(tw, src, h.Size); err != nil {
		return fmt.Errorf("bundle file %s (did it shrink while being read?): %w", f.Src, err)
	}
	return nil
}

// mtime is every entry's modification time: SOURCE_DATE_EPOCH
// (reproducible-builds.org) when set, else the epoch, as in the image.
func mtime() time.Time {
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		if sec, err := strconv.ParseInt(s, 10, 64); err == nil {
			return time.Unix(sec, 0)
		}
	}
	return time.Unix(0, 0)
}

// writeHead writes what every bundle starts with, the metadata and the app
// directory: Write and Assemble share it, so a bundle rebuilt from layers
// has Write's exact bytes.
func writeHead(tw *tar.Writer, hdr func(string, byte, int64) *tar.Header, mdata []byte) error {
	h := hdr(MetaName, tar.TypeReg, 0o644)
	h.Size = int64(len(mdata))
	if err := tw.WriteHeader(h); err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	if _, err := io.Copy(tw, bytes.NewReader(mdata)); err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	if err := tw.WriteHeader(hdr(AppDir+"/", tar.TypeDir, 0o755)); err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	return nil
}
