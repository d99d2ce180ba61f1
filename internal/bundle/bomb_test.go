package bundle

import (
	"archive/tar"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// Issue 12 item 7: a 0.5 MiB bundle of 99,990 entries with ~4 KiB paths
// added ~808 MiB to PID 1's heap (the extractor remembered every path).
// Whatever the archive says, the live heap the extractor holds stays
// bounded: the bundle is refused (or extracted) within it. The heap is
// measured after a GC every 1000 entries, through a hook, so the figure is
// the live heap at that point, not a timing.
func TestPathMemoryBomb(t *testing.T) {
	const entries = 99_990
	// 15 components of 255 bytes and a numbered leaf: each path just under
	// PATH_MAX, all in one directory (so the disk work is small).
	var comps []string
	for i := 0; i < 15; i++ {
		comps = append(comps, fmt.Sprintf("%02d", i)+strings.Repeat("x", 253))
	}
	prefix := "app/" + strings.Join(comps, "/") + "/"
	r, produced := lazyBundle(t, func(tw *tar.Writer) error {
		if err := writeEnt(tw, metaEnt(goodMeta)); err != nil {
			return err
		}
		if err := writeEnt(tw, file("app/server.js", "x")); err != nil {
			return err
		}
		for i := 0; i < entries; i++ {
			name := prefix + fmt.Sprintf("%07d", i) + strings.Repeat("y", 4096-len(prefix)-4-7-1)
			if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644}); err != nil {
				return err
			}
		}
		return nil
	})
	var base runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&base)
	var peak uint64
	measure := func() {
		var m runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m)
		if m.HeapAlloc > peak {
			peak = m.HeapAlloc
		}
	}
	entryHook = func(n int) {
		if n%1000 == 0 {
			measure()
		}
	}
	defer func() { entryHook = nil }()
	parent, dst := sandbox(t)
	_, err := Extract(r, dst, Limits{})
	measure()
	grew := int64(peak) - int64(base.HeapAlloc)
	t.Logf("Extract: %v; live heap grew by %d MiB at most; %d MiB of tar consumed", err, grew>>20, produced()>>20)
	const bound = 160 << 20
	if grew > bound {
		t.Errorf("the extractor's live heap grew by %d MiB, more than %d MiB", grew>>20, bound>>20)
	}
	if err != nil && !errors.Is(err, ErrTooBig) {
		t.Errorf("Extract: %v, want success or ErrTooBig", err)
	}
	if err != nil {
		outsideUntouched(t, parent, false)
	}
}
