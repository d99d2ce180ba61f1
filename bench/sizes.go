package main

import (
	"fmt"
	"io"
	"os"
	"syscall"

	"github.com/klauspost/compress/zstd"
)

// ImageSize is what a system's image takes: every file QEMU needs to boot
// it (kernel, initramfs, disk images).
type ImageSize struct {
	Apparent  int64 // the files' lengths
	Allocated int64 // the blocks they occupy on the host (sparse disk images take less)
	Zstd      int64 // the files concatenated and compressed with zstd (default level): what shipping it costs
}

// measureSize measures the files of one image.
func measureSize(paths ...string) (ImageSize, error) {
	var s ImageSize
	cw := &countingWriter{}
	enc, err := zstd.NewWriter(cw, zstd.WithEncoderConcurrency(1))
	if err != nil {
		return s, err
	}
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return s, err
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return s, err
		}
		s.Apparent += st.Size()
		if sys, ok := st.Sys().(*syscall.Stat_t); ok {
			s.Allocated += sys.Blocks * 512
		} else {
			s.Allocated += st.Size()
		}
		_, err = io.Copy(enc, f)
		f.Close()
		if err != nil {
			return s, fmt.Errorf("compressing %s: %w", p, err)
		}
	}
	if err := enc.Close(); err != nil {
		return s, err
	}
	s.Zstd = cw.n
	return s, nil
}

type countingWriter struct{ n int64 }

func (c *countingWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}

func measureFileSize(p string) (int64, error) {
	st, err := os.Stat(p)
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}
