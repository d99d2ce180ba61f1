package tryboot

import (
	"fmt"
	"os"
	"path/filepath"
)

// OSControl is the mounted control partition (vfat) at Root.
type OSControl struct{ Root string }

func (c OSControl) ReadFile(name string) ([]byte, error) {
	return os.ReadFile(filepath.Join(c.Root, filepath.FromSlash(name)))
}

// WriteInPlace overwrites the file's bytes through the same directory
// entry and clusters, then fsyncs it: vfat writes the data sectors and,
// the length being unchanged, nothing else that matters (the entry's
// modification time at most). A rename would leave the new entry with
// size 0 until the inode is written back (internal/update's syncFile), and
// an autoboot.txt of 0 bytes boots partition 1 instead of a slot.
func (c OSControl) WriteInPlace(name string, data []byte) error {
	p := filepath.Join(c.Root, filepath.FromSlash(name))
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.Size() != int64(len(data)) {
		return fmt.Errorf("%s is %d bytes, the new content %d: an in-place rewrite must keep the length", p, st.Size(), len(data))
	}
	if _, err := f.WriteAt(data, 0); err != nil {
		return fmt.Errorf("writing %s: %w", p, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", p, err)
	}
	return f.Close()
}
