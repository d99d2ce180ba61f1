package bundle

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sort"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
)

// A layer is a part of a bundle's app/ tree on its own: a zstd-compressed
// tar of app/<rel> entries (no nodeboot-bundle.json, no app/ entry),
// sorted, with exactly the headers Write gives them. OCI artifacts carry an
// app as such layers, split by how often they change (internal/oci), so a
// one-file change moves one small layer; Assemble merges them back into the
// bundle Write would have made of all their files, byte for byte, so an app
// has the same version digest whether it was deployed or pulled.

// WriteLayer writes files as one layer to w.
func WriteLayer(w io.Writer, files []File) error {
	files, err := sortedFiles(files)
	if err != nil {
		return err
	}
	zw, err := newEncoder(w)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(zw)
	hdr := headerFunc()
	for _, f := range files {
		if err := writeFile(tw, hdr, f); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("bundle layer: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("bundle layer: zstd: %w", err)
	}
	return nil
}

// sortedFiles checks files as Write does and returns them sorted by path.
func sortedFiles(files []File) ([]File, error) {
	files = append([]File(nil), files...)
	sort.Slice(files, func(i, j int) bool { return files[i].Rel < files[j].Rel })
	for i, f := range files {
		if err := checkRel(f.Rel); err != nil {
			return nil, fmt.Errorf("bundle file %q: %w", f.Rel, err)
		}
		if i > 0 && files[i-1].Rel == f.Rel {
			return nil, fmt.Errorf("bundle file %q: listed twice", f.Rel)
		}
		if f.Mode&fs.ModeSymlink != 0 && !linkStaysInside(f.Rel, f.Link) {
			return nil, fmt.Errorf("bundle file %s -> %s: the symlink leaves the app directory; make it a relative link within it", f.Rel, f.Link)
		}
	}
	return files, nil
}

func newEncoder(w io.Writer) (*zstd.Encoder, error) {
	zw, err := zstd.NewWriter(w,
		zstd.WithEncoderLevel(zstd.SpeedBetterCompression),
		zstd.WithEncoderConcurrency(1),
		zstd.WithWindowSize(encoderWindow),
		zstd.WithEncoderCRC(true))
	if err != nil {
		return nil, fmt.Errorf("bundle: zstd: %w", err)
	}
	return zw, nil
}

// ModTime is the time Write and WriteLayer give every entry: the epoch,
// or SOURCE_DATE_EPOCH when set.
func ModTime() time.Time { return mtime() }

func headerFunc() func(string, byte, int64) *tar.Header {
	mt := mtime()
	return func(name string, typ byte, mode int64) *tar.Header {
		return &tar.Header{Name: name, Typeflag: typ, Mode: mode, ModTime: mt, Format: tar.FormatPAX}
	}
}

// layerReader is one layer being merged: its next entry, read ahead.
type layerReader struct {
	i    int
	zr   *zstd.Decoder
	tr   *tar.Reader
	hdr  *tar.Header
	rel  string
	last string
}

func (l *layerReader) next() error {
	hdr, err := l.tr.Next()
	if err == io.EOF {
		l.hdr = nil
		if err := drain(l.zr); err != nil {
			if errors.Is(err, ErrInvalid) {
				return fmt.Errorf("layer %d: %w", l.i, err)
			}
			// The layers were verified by digest before (internal/oci):
			// a stream that breaks here is a malformed one.
			return fmt.Errorf("%w: layer %d: %v", ErrInvalid, l.i, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: layer %d: not a zstd-compressed tar: %v", ErrInvalid, l.i, err)
	}
	name := strings.TrimSuffix(hdr.Name, "/")
	rel, err := appRel(name)
	if err != nil || rel == "." {
		return fmt.Errorf("%w: layer %d: entry %q: not a file under %s/", ErrInvalid, l.i, hdr.Name, AppDir)
	}
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeDir, tar.TypeSymlink:
	default:
		return fmt.Errorf("%w: layer %d: entry %q is of tar type %q; a layer holds files, directories and symlinks", ErrUnsafe, l.i, hdr.Name, hdr.Typeflag)
	}
	// Sorted, as WriteLayer writes them: the merge relies on it, and a
	// duplicate within a layer shows up as a repeat.
	if l.last != "" && rel <= l.last {
		return fmt.Errorf("%w: layer %d: entry %q is out of order (after %q)", ErrInvalid, l.i, rel, l.last)
	}
	l.hdr, l.rel, l.last = hdr, rel, rel
	return nil
}

// Assemble writes to w the bundle of meta and the files of layers, merged in
// path order. For layers WriteLayer made of a partition of an app's files,
// the output is the bytes Write makes of meta and all of them. The layers
// are untrusted: malformed or overlapping ones are refused (ErrInvalid,
// ErrUnsafe); what the bundle holds is checked again by Extract on the node.
//
// mtime is the time of the entries Assemble adds (nodeboot-bundle.json and
// app/): ModTime on the host that wrote the layers.
func Assemble(w io.Writer, meta Meta, mtime time.Time, layers []io.Reader) error {
	if meta.Format == 0 {
		meta.Format = Format
	}
	if meta.NodeArgs == nil {
		meta.NodeArgs = []string{}
	}
	if meta.Libraries == nil {
		meta.Libraries = []string{}
	}
	if err := meta.check(); err != nil {
		return fmt.Errorf("%w: bundle metadata: %v", ErrInvalid, err)
	}
	mdata, err := json.Marshal(meta)
	if err != nil {
		return fmt.Errorf("bundle metadata: %w", err)
	}
	ls := make([]*layerReader, 0, len(layers))
	defer func() {
		for _, l := range ls {
			l.zr.Close()
		}
	}()
	for i, r := range layers {
		zr, err := zstd.NewReader(r,
			zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(maxWindow),
			zstd.WithDecoderMaxMemory(maxWindow))
		if err != nil {
			return fmt.Errorf("%w: layer %d: zstd: %v", ErrInvalid, i, err)
		}
		l := &layerReader{i: i, zr: zr, tr: tar.NewReader(zr)}
		ls = append(ls, l)
		if err := l.next(); err != nil {
			return err
		}
	}

	zw, err := newEncoder(w)
	if err != nil {
		return err
	}
	defer zw.Close()
	tw := tar.NewWriter(zw)
	hdr := func(name string, typ byte, mode int64) *tar.Header {
		return &tar.Header{Name: name, Typeflag: typ, Mode: mode, ModTime: mtime, Format: tar.FormatPAX}
	}
	if err := writeHead(tw, hdr, mdata); err != nil {
		return err
	}
	entryFound := false
	for {
		var min *layerReader
		for _, l := range ls {
			if l.hdr == nil {
				continue
			}
			if min != nil && l.rel == min.rel {
				return fmt.Errorf("%w: %s/%s is in layers %d and %d", ErrInvalid, AppDir, l.rel, min.i, l.i)
			}
			if min == nil || l.rel < min.rel {
				min = l
			}
		}
		if min == nil {
			break
		}
		in := min.hdr
		// A fresh header of the fields Write sets, so the output does not
		// depend on whatever else the layer's headers carry.
		out := &tar.Header{Name: in.Name, Typeflag: in.Typeflag, ModTime: in.ModTime, Format: tar.FormatPAX, Linkname: in.Linkname}
		switch in.Typeflag {
		case tar.TypeReg:
			out.Mode = 0o644
			if in.Mode&0o111 != 0 {
				out.Mode = 0o755
			}
			out.Size = in.Size
			if min.rel == meta.Entry {
				entryFound = true
			}
		case tar.TypeDir:
			out.Mode = 0o755
		case tar.TypeSymlink:
			out.Mode = 0o777
			if min.rel == meta.Entry {
				entryFound = true
			}
		}
		if err := tw.WriteHeader(out); err != nil {
			return fmt.Errorf("bundle: %s: %w", in.Name, err)
		}
		if out.Size > 0 {
			if _, err := io.CopyN(tw, min.tr, out.Size); err != nil {
				return fmt.Errorf("%w: layer %d: %s: %v", ErrInvalid, min.i, in.Name, err)
			}
		}
		if err := min.next(); err != nil {
			return err
		}
	}
	if !entryFound {
		return fmt.Errorf("%w: the entry point %q is in none of the layers", ErrInvalid, meta.Entry)
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("bundle: zstd: %w", err)
	}
	return nil
}
