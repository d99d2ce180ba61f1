package image

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/cavaliergopher/cpio"
	"github.com/google/renameio/v2"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// Compression is the initramfs compression.
type Compression string

const (
	// Gzip is what every kernel can unpack.
	Gzip Compression = "gzip"
	// Zstd unpacks faster in the kernel; the default kernel has RD_ZSTD.
	Zstd Compression = "zstd"
	// None writes a plain cpio archive: the default, as it boots fastest.
	None Compression = "none"
)

// ParseCompression checks a --compression value.
func ParseCompression(s string) (Compression, error) {
	switch c := Compression(s); c {
	case "", Gzip, Zstd, None: // "": the format's default
		return c, nil
	}
	return "", fmt.Errorf("unknown compression %q: use zstd, gzip or none", s)
}

// MaxCPIOFile is the first size newc cannot record: its header holds a
// file's size in 8 hex digits, so a bigger file would wrap around and
// corrupt the archive (the kernel would unpack garbage).
const MaxCPIOFile = 1 << 32

// ErrFileTooBig is wrapped by the error for a file newc cannot hold.
var ErrFileTooBig = errors.New("file too big for an initramfs")

// TooBigError names a file of MaxCPIOFile bytes or more.
func TooBigError(imagePath, source string, size int64) error {
	from := ""
	if source != "" {
		from = " (" + source + ")"
	}
	return fmt.Errorf("%s%s is %.1f GiB: %w (cpio newc holds files below 4 GiB); leave it out with .nodebootignore or build --format disk",
		imagePath, from, float64(size)/(1<<30), ErrFileTooBig)
}

// WriteCPIO writes the tree as a cpio "newc" archive, the format the kernel
// unpacks into its rootfs. Entries are sorted, owned by their entry's uid/gid
// (root unless set), and carry the same fixed mtime, so the archive depends on
// nothing but the inputs' bytes.
func WriteCPIO(t *Tree, w io.Writer, mtime time.Time) error {
	cw := cpio.NewWriter(w)
	var ino int64
	for _, e := range t.Entries() {
		name := strings.TrimPrefix(e.Path, "/")
		if name == "" {
			name = "."
		}
		ino++
		hdr := &cpio.Header{
			Name:    name,
			Inode:   ino,
			Uid:     e.UID,
			Guid:    e.GID,
			ModTime: mtime,
			Links:   1,
		}
		var body io.Reader
		switch e.Kind {
		case KindDir:
			hdr.Mode = cpio.TypeDir | cpio.FileMode(e.Mode&0o7777)
			hdr.Links = 2
		case KindSymlink:
			hdr.Mode = cpio.TypeSymlink | 0o777
			hdr.Size = int64(len(e.Link))
			body = strings.NewReader(e.Link)
		case KindFile:
			hdr.Mode = cpio.TypeReg | cpio.FileMode(e.Mode&0o7777)
			if e.Data != nil || e.Source == "" {
				hdr.Size = int64(len(e.Data))
				body = strings.NewReader(string(e.Data))
			} else {
				f, err := os.Open(e.Source)
				if err != nil {
					return fmt.Errorf("adding %s: %w", e.Path, err)
				}
				st, err := f.Stat()
				if err != nil {
					f.Close()
					return fmt.Errorf("adding %s: %w", e.Path, err)
				}
				hdr.Size = st.Size()
				body = f
			}
			if hdr.Size >= MaxCPIOFile {
				if c, ok := body.(io.Closer); ok {
					c.Close()
				}
				return TooBigError(e.Path, e.Source, hdr.Size)
			}
		}
		if err := cw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("writing cpio header for %s: %w", e.Path, err)
		}
		if body != nil {
			// newc stores a symlink's target as its data, so symlinks take
			// this path too.
			n, err := io.Copy(cw, body)
			if c, ok := body.(io.Closer); ok {
				c.Close()
			}
			if err != nil {
				return fmt.Errorf("writing %s: %w", e.Path, err)
			}
			if n != hdr.Size {
				return fmt.Errorf("writing %s: file changed size while building (%d of %d bytes)", e.Path, n, hdr.Size)
			}
		}
	}
	return cw.Close()
}

// Stats describes a written initramfs.
type Stats struct {
	Uncompressed int64
	Compressed   int64
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// WriteInitramfs writes the tree to path, compressed. The file appears
// atomically: a failed build never leaves a truncated initramfs where
// `nodeboot run` would boot it.
func WriteInitramfs(t *Tree, path string, comp Compression, mtime time.Time) (Stats, error) {
	return WriteInitramfsContext(context.Background(), t, path, comp, mtime)
}

// WriteInitramfsContext is WriteInitramfs that stops, removing its
// temporary file, as soon as ctx is done (Ctrl-C during a build).
func WriteInitramfsContext(ctx context.Context, t *Tree, path string, comp Compression, mtime time.Time) (Stats, error) {
	pf, err := renameio.NewPendingFile(path, renameio.WithPermissions(0o644))
	if err != nil {
		return Stats{}, fmt.Errorf("creating %s: %w", path, err)
	}
	defer pf.Cleanup()
	st, err := WriteInitramfsTo(ctx, t, pf, comp, mtime)
	if err != nil {
		return st, err
	}
	if err := pf.CloseAtomicallyReplace(); err != nil {
		return st, fmt.Errorf("writing %s: %w", path, err)
	}
	return st, nil
}

// WriteInitramfsTo writes the tree, compressed, to out, and stops as soon
// as ctx is done. Archives written so one after the other in one file
// unpack as one (the build appends the app's part to a cached system part).
func WriteInitramfsTo(ctx context.Context, t *Tree, out io.Writer, comp Compression, mtime time.Time) (Stats, error) {
	outc := &countWriter{w: ctxWriter{ctx, out}}
	bw := bufio.NewWriterSize(outc, 1<<20)
	var zw io.WriteCloser
	switch comp {
	case Gzip:
		g, err := gzip.NewWriterLevel(bw, gzip.BestSpeed+5)
		if err != nil {
			return Stats{}, err
		}
		zw = g
	case Zstd:
		// One encoder goroutine keeps the output independent of the host's
		// core count. The window stays at 8 MiB: the kernel's unzstd must
		// allocate the whole window while unpacking, in the guest's RAM.
		z, err := zstd.NewWriter(bw,
			zstd.WithEncoderLevel(zstd.SpeedBetterCompression),
			zstd.WithEncoderConcurrency(1),
			zstd.WithWindowSize(8<<20),
			zstd.WithEncoderCRC(true))
		if err != nil {
			return Stats{}, err
		}
		zw = z
	case None:
		zw = nopCloser{bw}
	default:
		return Stats{}, fmt.Errorf("unknown compression %q", comp)
	}
	inc := &countWriter{w: zw}
	if err := WriteCPIO(t, inc, mtime); err != nil {
		return Stats{}, err
	}
	if err := zw.Close(); err != nil {
		return Stats{}, fmt.Errorf("compressing initramfs: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return Stats{}, fmt.Errorf("writing initramfs: %w", err)
	}
	return Stats{Uncompressed: inc.n, Compressed: outc.n}, nil
}

// ctxWriter fails every write once ctx is done, which ends the archive
// writer at its next buffer flush.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }
