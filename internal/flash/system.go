package flash

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// System is what the checks know of the kernel's block devices, mounts and
// swaps: files of /proc and /sys, and the type of a path. Dir reads them
// from a root directory: "/" on a real host, a fake tree in tests.
type System interface {
	// ReadFile returns the contents of a kernel file such as
	// /proc/self/mountinfo or /sys/class/block/sda/size.
	ReadFile(name string) ([]byte, error)
	// ReadDir returns the entry names of a directory such as /sys/block.
	ReadDir(name string) ([]string, error)
	// Stat describes the file at path, following symlinks
	// (/dev/disk/by-id/... names a block device).
	Stat(path string) (Node, error)
}

// Node is what Stat tells about a path.
type Node struct {
	// Mode holds the type bits: fs.ModeDevice for a block device, none for
	// a regular file.
	Mode fs.FileMode
	// Rdev is a block device's major:minor.
	Rdev DevNum
}

// IsBlock reports whether n is a block device.
func (n Node) IsBlock() bool {
	return n.Mode&fs.ModeDevice != 0 && n.Mode&fs.ModeCharDevice == 0
}

// DevNum is a device number, as /proc/self/mountinfo and sysfs "dev" files
// write it: major:minor.
type DevNum struct{ Major, Minor uint32 }

func (d DevNum) String() string { return fmt.Sprintf("%d:%d", d.Major, d.Minor) }

// ParseDevNum parses "8:16".
func ParseDevNum(s string) (DevNum, error) {
	maj, min, ok := strings.Cut(strings.TrimSpace(s), ":")
	a, err1 := strconv.ParseUint(maj, 10, 32)
	b, err2 := strconv.ParseUint(min, 10, 32)
	if !ok || err1 != nil || err2 != nil {
		return DevNum{}, fmt.Errorf("bad device number %q", s)
	}
	return DevNum{uint32(a), uint32(b)}, nil
}

// Dir is the System rooted at a directory: Dir("/") is this host; a test
// lays out proc/self/mountinfo, proc/swaps and sys/... in a temp dir.
// Every path, Stat's included, is looked up under the root.
type Dir string

func (d Dir) path(name string) string {
	if !filepath.IsAbs(name) {
		if abs, err := filepath.Abs(name); err == nil {
			name = abs
		}
	}
	return filepath.Join(string(d), name)
}

// ReadFile implements System.
func (d Dir) ReadFile(name string) ([]byte, error) { return os.ReadFile(d.path(name)) }

// ReadDir implements System.
func (d Dir) ReadDir(name string) ([]string, error) {
	es, err := os.ReadDir(d.path(name))
	names := make([]string, len(es))
	for i, e := range es {
		names[i] = e.Name()
	}
	return names, err
}

// Stat implements System.
func (d Dir) Stat(path string) (Node, error) { return statNode(d.path(path)) }

// mount is one line of /proc/self/mountinfo.
type mount struct {
	Dev    DevNum // st_dev of the file system (0:N for btrfs, overlay, tmpfs)
	Point  string // mount point
	Source string // e.g. /dev/sdb1
}

// parseMountinfo parses /proc/self/mountinfo (proc(5)):
//
//	36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
func parseMountinfo(b []byte) []mount {
	var ms []mount
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 {
			continue
		}
		dev, err := ParseDevNum(f[2])
		if err != nil {
			continue
		}
		m := mount{Dev: dev, Point: unescape(f[4])}
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				if i+2 < len(f) {
					m.Source = unescape(f[i+2])
				}
				break
			}
		}
		ms = append(ms, m)
	}
	return ms
}

// parseSwaps returns the file names in /proc/swaps.
func parseSwaps(b []byte) []string {
	var names []string
	for i, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if i == 0 || len(f) == 0 { // header: Filename Type Size Used Priority
			continue
		}
		names = append(names, unescape(f[0]))
	}
	return names
}

// unescape undoes the octal escapes (\040 for a space) the kernel writes in
// mountinfo and swaps.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
