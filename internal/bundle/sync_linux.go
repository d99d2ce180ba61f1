package bundle

import (
	"os"

	"golang.org/x/sys/unix"
)

// syncEachFile is false on Linux: one syncfs(2) on the extracted tree's file
// system makes every file and directory durable at once. An fsync per file
// costs a journal commit each, and a node_modules tree has tens of
// thousands of files (minutes on an SD card).
const syncEachFile = false

// noFollow keeps OpenFile from following a symlink in the last component;
// O_EXCL already refuses any existing name, this says so twice.
const noFollow = unix.O_NOFOLLOW

func syncFS(f *os.File) error {
	return unix.Syncfs(int(f.Fd()))
}
