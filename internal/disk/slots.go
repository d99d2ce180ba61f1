package disk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// EntriesDir is where systemd-boot reads Boot Loader Specification entries.
const EntriesDir = "/loader/entries"

// entryPrefix starts every nodeboot entry's file name; loader.conf's
// "default nodeboot-*" matches it.
const entryPrefix = "nodeboot-"

// Counter is systemd-boot's boot counter in an entry's file name:
// "x+3.conf" has Left 3, Done 0; "x+1-2.conf" Left 1, Done 2; "x.conf" none.
type Counter struct {
	Counted bool
	Left    int
	Done    int
}

// Out says the entry has no tries left: systemd-boot sorts it last.
func (c Counter) Out() bool { return c.Counted && c.Left == 0 }

// ParseCounter reads the counter the way systemd-boot (252) does: the digits
// after the last '+', optionally "-DONE", then exactly ".conf"; anything
// else is no counter at all (the entry then never runs out).
func ParseCounter(name string) Counter {
	i := strings.LastIndexByte(name, '+')
	if i < 0 {
		return Counter{}
	}
	rest := name[i+1:]
	left, rest, ok := leadingNumber(rest)
	if !ok {
		return Counter{}
	}
	done := 0
	if strings.HasPrefix(rest, "-") {
		if done, rest, ok = leadingNumber(rest[1:]); !ok {
			return Counter{}
		}
	}
	if rest != ".conf" {
		return Counter{}
	}
	return Counter{Counted: true, Left: left, Done: done}
}

func leadingNumber(s string) (int, string, bool) {
	n := 0
	for n < len(s) && s[n] >= '0' && s[n] <= '9' {
		n++
	}
	if n == 0 || n > 9 { // systemd-boot refuses values above INT_MAX
		return 0, s, false
	}
	v, err := strconv.Atoi(s[:n])
	return v, s[n:], err == nil
}

// NextCounterName is the name systemd-boot renames a counted entry to when
// it boots it: one try fewer (never below zero), one more done.
func NextCounterName(name string) string {
	c := ParseCounter(name)
	if !c.Counted {
		return name
	}
	base := name[:strings.LastIndexByte(name, '+')]
	return fmt.Sprintf("%s+%d-%d.conf", base, max(c.Left-1, 0), c.Done+1)
}

// EntryName is the file name of slot's entry: with tries > 0 a fresh
// counter ("nodeboot-b+3.conf"), with 0 the blessed name ("nodeboot-b.conf").
func EntryName(slot string, tries int) string {
	if tries > 0 {
		return fmt.Sprintf("%s%s+%d.conf", entryPrefix, slot, tries)
	}
	return entryPrefix + slot + ".conf"
}

// OutName is slot's entry name with no tries left: what an entry whose
// trial has been given up is renamed to, so that systemd-boot boots the
// other slot at once instead of spending the remaining tries.
func OutName(slot string, done int) string {
	return fmt.Sprintf("%s%s+0-%d.conf", entryPrefix, slot, done)
}

// EntrySlot returns the slot an entry file name belongs to ("a" for
// "nodeboot-a+2-1.conf"), or "" for a name nodeboot did not write.
func EntrySlot(name string) string {
	if !strings.HasPrefix(name, entryPrefix) || !strings.HasSuffix(name, ".conf") {
		return ""
	}
	s := strings.TrimSuffix(strings.TrimPrefix(name, entryPrefix), ".conf")
	if i := strings.IndexByte(s, '+'); i >= 0 {
		s = s[:i]
	}
	if s == "" || strings.ContainsAny(s, "+-/. ") {
		return ""
	}
	return s
}

// GenerationWidth is the width the generation is zero-padded to in an
// entry's version line: systemd-boot compares versions numerically
// (strverscmp), a plain string comparison (Choose) only at a fixed width.
const GenerationWidth = 10

// SlotEntry is the content of slot's entry for an update: BootEntry's, plus
// a "version" line holding generation, a number that grows with every
// entry the node writes. Both slots share one sort key, so systemd-boot
// orders them by this version: the slot written last boots first, until its
// tries run out (then it sorts after every entry that has tries left). This
// is what makes a new slot the default without touching loader.conf or any
// EFI variable.
func SlotEntry(slot string, s Slot, generation uint64) []byte {
	_, b := BootEntry(slot, s, 0)
	return []byte(strings.Replace(string(b), "sort-key nodeboot\n",
		fmt.Sprintf("sort-key nodeboot\nversion %0*d\n", GenerationWidth, generation), 1))
}

// Generation reads the version line SlotEntry wrote (0 when there is none,
// as in an image's first entry).
func Generation(e *Entry) uint64 {
	n, err := strconv.ParseUint(e.Version, 10, 64)
	if err != nil {
		return 0
	}
	return n
}

// RootArgs are the kernel command line arguments that name a slot's root
// file system; SlotCmdline adds them for the slot it is given.
var rootArgs = map[string]bool{"root": true, "rootfstype": true, "ro": true, "rw": true}

// BaseCmdline strips what SlotCmdline adds for one slot (root=, rootfstype=,
// ro) from a slot's complete command line, so that the rest can be given
// to the other slot with its own root.
func BaseCmdline(cmdline string) string {
	var keep []string
	for _, f := range strings.Fields(cmdline) {
		k, _, _ := strings.Cut(f, "=")
		if !rootArgs[k] {
			keep = append(keep, f)
		}
	}
	return strings.Join(keep, " ")
}

// RootPartUUID returns the PARTUUID a command line's root= names, lower
// case, or "".
func RootPartUUID(cmdline string) string {
	for _, f := range strings.Fields(cmdline) {
		if v, ok := strings.CutPrefix(f, "root=PARTUUID="); ok {
			return strings.ToLower(v)
		}
	}
	return ""
}

// SquashfsSize reads the squashfs superblock at off of r and returns the
// bytes the file system uses, padded to 4 KiB as Write pads it: what an
// update must copy of a root slot.
func SquashfsSize(r io.ReaderAt, off int64) (int64, error) {
	sb := make([]byte, 96)
	if _, err := r.ReadAt(sb, off); err != nil {
		return 0, fmt.Errorf("reading the squashfs superblock: %w", err)
	}
	if binary.LittleEndian.Uint32(sb[0:]) != sqMagic {
		return 0, errors.New("no squashfs superblock (magic hsqs missing)")
	}
	used := binary.LittleEndian.Uint64(sb[40:])
	if used < 96 || used > 1<<40 {
		return 0, fmt.Errorf("squashfs superblock says %d bytes used", used)
	}
	return int64(used+4095) &^ 4095, nil
}
