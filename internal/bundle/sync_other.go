//go:build !linux

package bundle

import "os"

// syncEachFile: without syncfs(2), every file and directory is fsynced.
const syncEachFile = true

// noFollow: O_EXCL alone refuses an existing name, symlink or not.
const noFollow = 0

func syncFS(*os.File) error { return nil }
