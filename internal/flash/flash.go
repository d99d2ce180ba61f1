// Package flash writes a disk image to a USB stick, SD card or disk, after
// refusing every target that could be a mistake: a mounted or otherwise used
// device, the system disk, a partition, a device too small, anything that is
// not a block device. It writes exclusively (O_EXCL), flushes, and verifies
// by reading the device back past the page cache.
//
// What the checks know of the host comes through System (files of /proc and
// /sys under a root directory) and the device is opened through Device, so
// tests run the checks against fake trees and inject faulty writers.
package flash

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"time"

	"github.com/schollz/progressbar/v3"
)

// ChunkSize is how much each write and each read-back moves.
const ChunkSize = 4 << 20

// Options configure Write.
type Options struct {
	// ForceFile allows a regular file as the target (created if missing),
	// written like a device: in place, not truncated.
	ForceFile bool
	// Confirm is asked, once every check has passed, before anything on
	// the target is overwritten; an error aborts the write. Nil: no
	// question. It is not asked for a new or empty file.
	Confirm func(*Target) error
	// Progress is where the progress bars are drawn (nil: none).
	Progress io.Writer
	// Log receives a line per step and warnings (nil: none).
	Log io.Writer
	// System is what the checks read (nil: Dir("/"), this host).
	System System
	// Device opens the target (nil: OSDevice, the real one).
	Device Device
}

func (o Options) system() System {
	if o.System == nil {
		return Dir("/")
	}
	return o.System
}

func (o Options) device() Device {
	if o.Device == nil {
		return OSDevice{}
	}
	return o.Device
}

func (o Options) log() io.Writer {
	if o.Log == nil {
		return io.Discard
	}
	return o.Log
}

// Device opens a checked target: once to write, once to read back what
// reached the medium.
type Device interface {
	// OpenWrite opens the target for writing from offset 0.
	OpenWrite(t *Target) (Writer, error)
	// OpenRead opens the target for reading from offset 0, bypassing
	// caches so that the bytes come from the medium. It is called while the
	// Writer is still open, after its Sync.
	OpenRead(t *Target) (io.ReadCloser, error)
}

// Writer is a target open for writing. Sync makes what was written durable
// on the medium (and drops it from caches).
type Writer interface {
	io.Writer
	Sync() error
	Close() error
}

var errNotLinux = errors.New("writing disks is supported on Linux only: copy the image to a Linux machine, or use your system's image writer")

// ErrInterrupted is what Write returns (errors.Is) when ctx ends.
var ErrInterrupted = errors.New("interrupted")

// MismatchError is a failed verification.
type MismatchError struct {
	Path   string
	Offset int64 // first byte that differs
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("verification failed: %s differs from the image at byte %d (0x%x): the device did not keep what was written; it may be failing, or a counterfeit whose real capacity is smaller than it claims: write it again, and if it fails again use another device", e.Path, e.Offset, e.Offset)
}

// Write writes the image src to dst: Check, then Confirm, then the write in
// ChunkSize pieces, a flush, and a read-back compared against the image's
// sha256. When ctx ends during the write, what was written is flushed and
// the error (ErrInterrupted) says the target is incomplete.
func Write(ctx context.Context, src, dst string, opts Options) error {
	if runtime.GOOS != "linux" && opts.Device == nil {
		return errNotLinux
	}
	t, err := Check(src, dst, opts)
	if err != nil {
		return err
	}
	log := opts.log()
	if !t.ImageGPT && !t.ImagePi {
		fmt.Fprintf(log, "warning: %s has neither a GPT partition table nor a Raspberry Pi image's MBR: it does not look like a disk image from nodeboot build\n", src)
	}
	if opts.Confirm != nil && !(t.File && t.Size == 0) {
		if err := opts.Confirm(t); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%w: nothing was written to %s", ErrInterrupted, t.Path)
	}

	img, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("image: %w", err)
	}
	defer img.Close()
	dev := opts.device()
	w, err := dev.OpenWrite(t)
	if err != nil {
		return err
	}
	open := true
	defer func() {
		if open {
			w.Close()
		}
	}()

	start := time.Now()
	sums, total, err := copyImage(ctx, w, img, t, opts)
	if err != nil {
		return err
	}
	if err := w.Sync(); err != nil {
		return fmt.Errorf("flushing %s: %w: it may hold an incomplete image", t.Path, err)
	}
	d := time.Since(start)
	fmt.Fprintf(log, "wrote %s to %s in %s (%s/s)\n", Size(t.ImageSize), t.Path, d.Round(100*time.Millisecond), Size(int64(float64(t.ImageSize)/max(d.Seconds(), 1e-3))))

	if err := verify(ctx, dev, t, img, sums, total, opts); err != nil {
		return err
	}
	open = false
	if err := w.Close(); err != nil {
		return fmt.Errorf("closing %s: %w", t.Path, err)
	}
	fmt.Fprintf(log, "verified: %s reads back the image (sha256 %x)\n", t.Path, total)
	return nil
}

// copyImage writes the image and returns the sha256 of each chunk and of
// the whole.
func copyImage(ctx context.Context, w Writer, img io.Reader, t *Target, opts Options) ([][32]byte, []byte, error) {
	bar := newBar(opts.Progress, t.ImageSize, "writing  ")
	buf := make([]byte, ChunkSize)
	var sums [][32]byte
	h := sha256.New()
	var off int64
	for off < t.ImageSize {
		if ctx.Err() != nil {
			bar.Exit()
			err := fmt.Errorf("%w after writing %s of %s; what was written is flushed, but %s now holds an incomplete image that will not boot: write the image again",
				ErrInterrupted, Size(off), Size(t.ImageSize), t.Path)
			if serr := w.Sync(); serr != nil {
				err = fmt.Errorf("%w (flushing failed too: %v)", err, serr)
			}
			return nil, nil, err
		}
		n := int(min(ChunkSize, t.ImageSize-off))
		if _, err := io.ReadFull(img, buf[:n]); err != nil {
			bar.Exit()
			return nil, nil, fmt.Errorf("reading the image at offset %d: %w (did it change while writing?); %s now holds an incomplete image", off, err, t.Path)
		}
		sums = append(sums, sha256.Sum256(buf[:n]))
		h.Write(buf[:n])
		if _, err := w.Write(buf[:n]); err != nil {
			bar.Exit()
			return nil, nil, fmt.Errorf("writing to %s at offset %d: %w; it now holds an incomplete image (was it unplugged?)", t.Path, off, err)
		}
		off += int64(n)
		bar.Add(n)
	}
	bar.Finish()
	return sums, h.Sum(nil), nil
}

// verify reads the written range back and compares it, chunk by chunk and
// as a whole, with the image's sha256.
func verify(ctx context.Context, dev Device, t *Target, img io.ReaderAt, sums [][32]byte, total []byte, opts Options) error {
	r, err := dev.OpenRead(t)
	if err != nil {
		return fmt.Errorf("verifying: %w", err)
	}
	defer r.Close()
	bar := newBar(opts.Progress, t.ImageSize, "verifying")
	buf := make([]byte, ChunkSize)
	h := sha256.New()
	var off int64
	for i := 0; off < t.ImageSize; i++ {
		if ctx.Err() != nil {
			bar.Exit()
			return fmt.Errorf("%w while verifying: the image was written completely and flushed to %s, but not verified", ErrInterrupted, t.Path)
		}
		n := int(min(ChunkSize, t.ImageSize-off))
		if _, err := io.ReadFull(r, buf[:n]); err != nil {
			bar.Exit()
			if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
				return fmt.Errorf("verification failed: %s ends before byte %d although it claims %s", t.Path, off+int64(n), Size(t.Size))
			}
			return fmt.Errorf("verifying: reading %s back at offset %d: %w", t.Path, off, err)
		}
		h.Write(buf[:n])
		if sha256.Sum256(buf[:n]) != sums[i] {
			bar.Exit()
			want := make([]byte, n)
			j := 0
			if _, err := img.ReadAt(want, off); err == nil {
				j = max(firstDiff(buf[:n], want), 0)
			}
			return &MismatchError{Path: t.Path, Offset: off + int64(j)}
		}
		off += int64(n)
		bar.Add(n)
	}
	bar.Finish()
	if got := h.Sum(nil); !bytes.Equal(got, total) {
		return fmt.Errorf("verification failed: %s reads back with sha256 %x, the image has %x", t.Path, got, total)
	}
	return nil
}

// firstDiff returns the index of the first byte where a and b differ, or -1.
func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	return -1
}

// newBar returns a byte progress bar with rate and ETA on w, or an
// invisible one.
func newBar(w io.Writer, total int64, desc string) *progressbar.ProgressBar {
	if w == nil {
		return progressbar.NewOptions64(total, progressbar.OptionSetVisibility(false))
	}
	return progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionShowBytes(true),
		progressbar.OptionShowTotalBytes(true),
		progressbar.OptionShowCount(),
		progressbar.OptionUseIECUnits(true),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionShowElapsedTimeOnFinish(),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(200*time.Millisecond),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(w) }),
		progressbar.OptionSetRenderBlankState(true),
	)
}
