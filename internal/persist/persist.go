// Package persist binds an app's persistent dirs (its "persist" list) from
// its state dir into a code dir, and takes them away again.
//
// The state dir belongs to the app, which may plant symlinks anywhere in
// it; PID 1 works there as root. So every path under the state dir and the
// code dir is opened one component at a time with openat2
// RESOLVE_NO_SYMLINKS|RESOLVE_BENEATH, created with mkdirat, chowned with
// fchown and mounted with open_tree/move_mount on those file descriptors:
// nothing is looked up again by name after it was checked (issue 12, item
// 5). The mounts are nosuid, nodev and noexec.
//
// Mount points are read from /proc/self/mountinfo: a bind mount of a dir
// of the same file system has the same st_dev as its parent, so comparing
// st_dev cannot see it (issue 12, item 1: persist mounts stacked up).
package persist

// App is one app's persist configuration.
type App struct {
	// StateDir is the app's own state dir (/data/state/<app>); the persist
	// dirs live in StateDir/persist/<dir>.
	StateDir string
	UID, GID int
	// Dirs are clean paths relative to the code dir (spec.PersistPath).
	Dirs []string
}
