package build

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// outputNames are the files an initramfs build writes.
var outputNames = map[string]bool{"vmlinuz": true, "manifest.json": true,
	"initramfs.cpio": true, "initramfs.cpio.zst": true, "initramfs.cpio.gz": true}

// replaceDir puts the output written to the directory stage at out. A
// missing out is a plain rename; an out holding only a previous build's
// files is swapped with stage in one step (exchange), so it never holds
// half of each build, and stage then holds the old output for the caller to
// remove. An out that also holds other files (say `run`'s cache, where a
// disk image may sit) keeps them: its manifest.json is removed first and
// the new one renamed in last, so until the end it reads as no image
// (`run` rebuilds a directory without a manifest) rather than a mixed one.
func replaceDir(stage, out string) error {
	ents, err := os.ReadDir(out)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.Rename(stage, out); err != nil {
			return err
		}
		return syncDir(filepath.Dir(out))
	}
	if err != nil {
		return err
	}
	ours := true
	for _, e := range ents {
		if !outputNames[e.Name()] {
			ours = false
		}
	}
	if ours {
		if err := exchange(stage, out); err != nil {
			return err
		}
		return syncDir(filepath.Dir(out))
	}
	if err := os.Remove(filepath.Join(out, "manifest.json")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := syncDir(out); err != nil {
		return err
	}
	news, err := os.ReadDir(stage)
	if err != nil {
		return err
	}
	for name := range outputNames {
		if _, err := os.Stat(filepath.Join(stage, name)); errors.Is(err, fs.ErrNotExist) {
			// Another compression's initramfs: the dir holds one image.
			os.Remove(filepath.Join(out, name))
		}
	}
	for _, e := range news {
		if e.Name() == "manifest.json" {
			continue
		}
		if err := os.Rename(filepath.Join(stage, e.Name()), filepath.Join(out, e.Name())); err != nil {
			return err
		}
	}
	if err := syncDir(out); err != nil {
		return err
	}
	if err := os.Rename(filepath.Join(stage, "manifest.json"), filepath.Join(out, "manifest.json")); err != nil {
		return err
	}
	return syncDir(out)
}

// syncDir makes a directory's entries durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	return nil
}

// exchangeByRenames swaps a and b with a third name: out is missing for a
// moment, but never half-written.
func exchangeByRenames(a, b string) error {
	old := a + ".old"
	if err := os.Rename(b, old); err != nil {
		return err
	}
	if err := os.Rename(a, b); err != nil {
		os.Rename(old, b)
		return err
	}
	return os.Rename(old, a)
}
