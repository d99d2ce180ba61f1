package update

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// OSDir is a Dir on a mounted file system: the ESP (vfat) or the state
// directory on /data (ext4).
type OSDir struct{ Root string }

func (d OSDir) path(name string) (string, error) {
	rel := strings.TrimPrefix(path.Clean("/"+name), "/")
	if rel == "" || !filepath.IsLocal(rel) {
		return "", fmt.Errorf("%q is not a file name inside %s", name, d.Root)
	}
	return filepath.Join(d.Root, filepath.FromSlash(rel)), nil
}

func (d OSDir) ReadFile(name string) ([]byte, error) {
	p, err := d.path(name)
	if err != nil {
		return nil, err
	}
	return os.ReadFile(p)
}

func (d OSDir) ReadDir(dir string) ([]string, error) {
	p := d.Root
	if strings.Trim(dir, "/") != "" {
		var err error
		if p, err = d.path(dir); err != nil {
			return nil, err
		}
	}
	des, err := os.ReadDir(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, de := range des {
		if de.Type().IsRegular() {
			names = append(names, de.Name())
		}
	}
	return names, nil
}

// WriteFile writes a temporary file beside name, syncs it, renames it over
// name and syncs the directory. The temporary name starts with a dot and
// ends in ".tmp": systemd-boot reads neither as an entry.
func (d OSDir) WriteFile(name string, data []byte) error {
	p, err := d.path(name)
	if err != nil {
		return err
	}
	dir := filepath.Dir(p)
	if err := mkdirAll(dir); err != nil {
		return err
	}
	tmp := filepath.Join(dir, "."+filepath.Base(p)+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, p); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := syncFile(p); err != nil {
		return err
	}
	return syncDir(dir)
}

func (d OSDir) OpenFile(name string, truncate bool) (File, error) {
	p, err := d.path(name)
	if err != nil {
		return nil, err
	}
	if err := mkdirAll(filepath.Dir(p)); err != nil {
		return nil, err
	}
	flag := os.O_WRONLY | os.O_CREATE
	if truncate {
		flag |= os.O_TRUNC
	}
	f, err := os.OpenFile(p, flag, 0o644)
	if err != nil {
		return nil, err
	}
	// The new name must be durable too, or a synced file could vanish.
	if err := syncDir(filepath.Dir(p)); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func (d OSDir) Rename(oldname, newname string) error {
	a, err := d.path(oldname)
	if err != nil {
		return err
	}
	b, err := d.path(newname)
	if err != nil {
		return err
	}
	if err := os.Rename(a, b); err != nil {
		return err
	}
	if err := syncFile(b); err != nil {
		return err
	}
	if err := syncDir(filepath.Dir(b)); err != nil {
		return err
	}
	if filepath.Dir(a) != filepath.Dir(b) {
		return syncDir(filepath.Dir(a))
	}
	return nil
}

func (d OSDir) Remove(name string) error {
	p, err := d.path(name)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	return syncDir(filepath.Dir(p))
}

// mkdirAll creates dir and syncs each parent whose entry it adds.
func mkdirAll(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if err := mkdirAll(filepath.Dir(dir)); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return syncDir(filepath.Dir(dir))
}

// syncFile syncs a file that was just renamed. On vfat (the ESP) a rename
// writes the new directory entry with size 0 and no first cluster, and
// fills both in only when the file's inode is written back: syncing the
// directory does not do that, so a power cut before the kernel's writeback
// (up to 30 s later) left a boot entry of 0 bytes, and systemd-boot with
// nothing to boot ("No loader found"). Seen with the power cut during an
// update's upload after the first boot had blessed slot A's entry by a
// rename (e2e TestUpdatePowerCuts).
func syncFile(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", p, err)
	}
	return nil
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	return nil
}

// OpenDevice opens a root slot's block device (or an image file standing
// in for one) for writing: the Slot.Open of a real node.
func OpenDevice(path string) (Device, error) {
	return os.OpenFile(path, os.O_WRONLY, 0)
}
