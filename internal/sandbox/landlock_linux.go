package sandbox

import (
	"fmt"
	"os"
	"path/filepath"
	"unsafe"

	"github.com/landlock-lsm/go-landlock/landlock"
	"golang.org/x/sys/unix"
)

// LandlockABI returns the kernel's Landlock ABI version, 0 when Landlock is
// not enabled (not built in, or missing from the lsm= list).
func LandlockABI() int {
	v, _, e := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, uintptr(unsafe.Pointer(nil)), 0, 1 /* LANDLOCK_CREATE_RULESET_VERSION */)
	if e != 0 {
		return 0
	}
	return int(v)
}

// devFiles are the device nodes of the sandbox's /dev.
var devFiles = []string{"null", "zero", "full", "random", "urandom"}

// landlockRules are the file accesses the app keeps: the second wall behind
// the mount namespace. Reads: the image's system dirs, /etc without
// /etc/nodeboot, its own code; writes: its state dir, persist dirs, /tmp,
// /dev/shm and the harmless devices.
func landlockRules(s *Spec) []landlock.Rule {
	var ro []string
	skip := map[string]bool{"/etc": true, "/tmp": true, "/dev": true}
	for _, c := range append(append([]string{}, s.Confine...), s.Hide...) {
		skip[c] = true
	}
	if ents, err := os.ReadDir("/"); err == nil {
		for _, e := range ents {
			p := "/" + e.Name()
			if !skip[p] && (e.IsDir() || e.Type()&os.ModeSymlink != 0) {
				ro = append(ro, p)
			}
		}
	}
	var roFiles []string
	if ents, err := os.ReadDir("/etc"); err == nil {
		for _, e := range ents {
			p := "/etc/" + e.Name()
			if skip[p] {
				continue
			}
			if e.IsDir() {
				ro = append(ro, p)
			} else {
				roFiles = append(roFiles, p)
			}
		}
	}
	rules := []landlock.Rule{
		landlock.RODirs(ro...).IgnoreIfMissing(),
		landlock.ROFiles(roFiles...).IgnoreIfMissing(),
		landlock.RODirs(s.CodeDir, "/dev"),
		landlock.RWDirs(s.StateDir, "/tmp", "/dev/shm"),
	}
	var devs []string
	for _, d := range devFiles {
		devs = append(devs, "/dev/"+d)
	}
	rules = append(rules, landlock.RWFiles(devs...).WithIoctlDev())
	var persist []string
	for _, p := range s.Persist {
		persist = append(persist, filepath.Join(s.CodeDir, p))
	}
	if len(persist) > 0 {
		rules = append(rules, landlock.RWDirs(persist...).IgnoreIfMissing())
	}
	return rules
}

// applyLandlock restricts the calling process (all threads) and its future
// children. BestEffort: on a kernel without Landlock the mount namespace and
// the file modes remain; PID 1 says so on the console at boot.
func applyLandlock(s *Spec) error {
	cfg := landlock.V8.BestEffort()
	if err := cfg.RestrictPaths(landlockRules(s)...); err != nil {
		return fmt.Errorf("landlock: %w", err)
	}
	// Signals and abstract unix sockets only within the app's own domain:
	// it can signal its children, not PID 1 or other apps.
	if err := cfg.RestrictScoped(); err != nil {
		return fmt.Errorf("landlock scopes: %w", err)
	}
	return nil
}
