package boot

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Holders says what keeps the file system mounted on target busy, as
// "pid N (comm) fd M: path" lines read from procDir (/proc): open files,
// working and root directories, mapped files, and other mount namespaces
// that still hold a mount of target's device. An unmount that fails with
// EBUSY names them on the console, so a leak is found from one log.
func Holders(procDir, target string) []string {
	var st unix.Stat_t
	if err := unix.Stat(target, &st); err != nil {
		return nil
	}
	dev := st.Dev
	selfNS, _ := os.Readlink(filepath.Join(procDir, "self", "ns", "mnt"))
	ents, err := os.ReadDir(procDir)
	if err != nil {
		return nil
	}
	socks := boundSockets(filepath.Join(procDir, "net", "unix"), target)
	var out []string
	seenNS := map[string]bool{selfNS: true}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		pdir := filepath.Join(procDir, e.Name())
		comm, _ := os.ReadFile(filepath.Join(pdir, "comm"))
		who := fmt.Sprintf("pid %d (%s)", pid, strings.TrimSpace(string(comm)))
		on := func(p string) bool {
			var s unix.Stat_t
			return unix.Stat(p, &s) == nil && s.Dev == dev
		}
		for _, l := range []string{"cwd", "root"} {
			p := filepath.Join(pdir, l)
			if on(p) {
				link, _ := os.Readlink(p)
				out = append(out, fmt.Sprintf("%s %s: %s", who, l, link))
			}
		}
		fds, _ := os.ReadDir(filepath.Join(pdir, "fd"))
		for _, fd := range fds {
			p := filepath.Join(pdir, "fd", fd.Name())
			link, _ := os.Readlink(p)
			if path, ok := socks[link]; ok {
				// A bound unix socket holds its path's mount.
				out = append(out, fmt.Sprintf("%s fd %s: unix socket %s", who, fd.Name(), path))
			} else if on(p) {
				out = append(out, fmt.Sprintf("%s fd %s: %s", who, fd.Name(), link))
			}
		}
		out = append(out, mappedOn(pdir, who, dev)...)
		ns, err := os.Readlink(filepath.Join(pdir, "ns", "mnt"))
		if err == nil && !seenNS[ns] {
			seenNS[ns] = true
			if mi, err := os.ReadFile(filepath.Join(pdir, "mountinfo")); err == nil {
				for _, m := range mountsOfDev(string(mi), dev) {
					out = append(out, fmt.Sprintf("%s: its mount namespace %s has %s mounted on %s", who, ns, target, m))
				}
			}
		}
	}
	sort.Strings(out)
	return out
}

// mappedOn lists the files process pdir maps from device dev (a native
// addon of a deployed version, say).
func mappedOn(pdir, who string, dev uint64) []string {
	b, err := os.ReadFile(filepath.Join(pdir, "maps"))
	if err != nil {
		return nil
	}
	maj, min := unix.Major(dev), unix.Minor(dev)
	want := fmt.Sprintf("%02x:%02x", maj, min)
	seen := map[string]bool{}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		// address perms offset dev inode path
		if len(f) < 6 || f[3] != want || seen[f[5]] {
			continue
		}
		seen[f[5]] = true
		out = append(out, fmt.Sprintf("%s maps %s", who, f[5]))
	}
	return out
}

// mountsOfDev returns the mount points in a mountinfo text whose device is
// dev.
func mountsOfDev(mountinfo string, dev uint64) []string {
	want := fmt.Sprintf("%d:%d", unix.Major(dev), unix.Minor(dev))
	var out []string
	for _, l := range strings.Split(mountinfo, "\n") {
		f := strings.Fields(l)
		if len(f) >= 5 && f[2] == want {
			out = append(out, f[4])
		}
	}
	return out
}

// boundSockets maps "socket:[inode]" to the path of each unix socket bound
// under target, from /proc/net/unix.
func boundSockets(netUnix, target string) map[string]string {
	b, err := os.ReadFile(netUnix)
	if err != nil {
		return nil
	}
	out := map[string]string{}
	for _, l := range strings.Split(string(b), "\n")[1:] {
		// Num RefCount Protocol Flags Type St Inode Path
		f := strings.Fields(l)
		if len(f) >= 8 && strings.HasPrefix(f[7], target+"/") {
			out["socket:["+f[6]+"]"] = f[7]
		}
	}
	return out
}
