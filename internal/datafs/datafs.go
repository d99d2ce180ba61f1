// Package datafs finds, checks, creates and mounts the persistent data
// partition of a disk image. Its one rule: a partition that holds anything
// but zeros, a mountable ext4 or nodeboot's own interrupted creation of one
// is never formatted; the node then runs with /data on tmpfs and says so, and
// the bytes stay for the owner to rescue.
package datafs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// State classifies what a data partition holds.
type State int

const (
	// Empty: the first MiB is all zeros, as the image writer leaves it.
	Empty State = iota
	// Ext4: an ext4 superblock magic is present.
	Ext4
	// Unknown: anything else, e.g. a scribbled-over superblock.
	Unknown
	// Interrupted: nodeboot began creating the file system and did not
	// finish (a power cut during the first boot): the creation marker is
	// in the first sector and the superblock has no magic yet. Nothing but
	// that creation was ever written there, so it is created again.
	Interrupted
)

func (s State) String() string {
	return [...]string{"empty", "ext4", "unknown", "interrupted creation"}[s]
}

// probeSize is how much of the partition Probe reads: the superblock sits
// at 1024, and the writer zeroes the first MiB.
const probeSize = 1 << 20

// Probe reads the start of a partition and classifies it.
func Probe(r io.ReaderAt) (State, error) {
	buf := make([]byte, probeSize)
	n, err := r.ReadAt(buf, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return Unknown, fmt.Errorf("reading the partition: %w", err)
	}
	buf = buf[:n]
	if len(buf) >= magicOff+2 && binary.LittleEndian.Uint16(buf[magicOff:]) == ext4Magic {
		return Ext4, nil
	}
	if len(buf) > 0 && allZero(buf) {
		return Empty, nil
	}
	if len(buf) >= markerSize && bytes.Equal(buf[:markerSize], marker[:]) {
		return Interrupted, nil
	}
	// A marker write torn by the power cut (a device that does not write
	// a sector atomically): what reached the disk agrees with the marker,
	// and nothing else was written yet, since the creation only starts
	// once the whole marker is on disk.
	if len(buf) >= markerSize && tornMarker(buf[:markerSize]) && allZero(buf[markerSize:]) {
		return Interrupted, nil
	}
	return Unknown, nil
}

const (
	// magicOff is where the primary superblock (at 1024) keeps s_magic
	// (at 0x38 within it).
	magicOff  = 1024 + 0x38
	ext4Magic = 0xef53
	// markerSize is the marker's length: one sector, which ext4 never uses
	// (the superblock starts at 1024; the first 1024 bytes are left for a
	// boot loader), so the marker can stay while the file system is made.
	markerSize = 512
)

// marker is the first sector of a data partition while nodeboot creates
// its file system. It is written (and flushed) onto an all-zero partition
// before anything else, and removed after the superblock's magic, the last
// write of the creation, is on disk: a partition with the marker and no
// magic holds nothing but an unfinished creation of ours. It is text so
// that whoever looks at the raw partition learns what it is.
var marker = func() (m [markerSize]byte) {
	copy(m[:], "NODEBOOT DATA PARTITION: EXT4 CREATION IN PROGRESS\n"+
		"nodeboot writes this sector before it creates the file system of its data\n"+
		"partition and clears it once the file system is complete. If you read\n"+
		"it, that creation was interrupted (a power cut during the first boot):\n"+
		"the next boot creates the file system again. Nothing else is stored here.\n")
	return m
}()

// tornMarker tells whether b could be a marker write cut short: every
// non-zero byte is the marker's, and it is not all zeros.
func tornMarker(b []byte) bool {
	some := false
	for i, c := range b {
		if c != 0 {
			if c != marker[i] {
				return false
			}
			some = true
		}
	}
	return some
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// FindByLabel returns the device node of the partition whose GPT name is
// label, looking through sysfs under sysRoot ("/sys") and naming the node
// under devRoot ("/dev").
func FindByLabel(sysRoot, devRoot, label string) (string, error) {
	uevents, _ := filepath.Glob(filepath.Join(sysRoot, "class", "block", "*", "uevent"))
	for _, u := range uevents {
		b, err := os.ReadFile(u)
		if err != nil {
			continue
		}
		var name, dev string
		for _, line := range strings.Split(string(b), "\n") {
			k, v, _ := strings.Cut(line, "=")
			switch k {
			case "PARTNAME":
				name = v
			case "DEVNAME":
				dev = v
			}
		}
		if name == label && dev != "" {
			return filepath.Join(devRoot, dev), nil
		}
	}
	return "", fmt.Errorf("no partition named %q", label)
}

// CmdlineParam names the data partition on the kernel command line of a
// disk whose partition table has no names (the Raspberry Pi's MBR):
// nodeboot.data=PARTUUID=<signature>-<number>.
const CmdlineParam = "nodeboot.data"

// PartUUIDFromCmdline returns the PARTUUID the command line's
// nodeboot.data= names, or "" if it names none.
func PartUUIDFromCmdline(cmdline string) string {
	for _, f := range strings.Fields(cmdline) {
		if v, ok := strings.CutPrefix(f, CmdlineParam+"=PARTUUID="); ok {
			return strings.ToLower(v)
		}
	}
	return ""
}

// FindByPartUUID returns the device node of the MBR partition whose
// PARTUUID is uuid ("ssssssss-nn": the disk's signature in hex and the
// partition's number), looking through sysfs under sysRoot for partitions
// and reading each disk's signature from its device node under devRoot:
// the kernel exports an MBR partition's PARTUUID to udev, which a node
// does not have, but not to sysfs.
func FindByPartUUID(sysRoot, devRoot, uuid string) (string, error) {
	sigHex, numHex, ok := strings.Cut(strings.ToLower(uuid), "-")
	var sig uint32
	var num int
	if _, err := fmt.Sscanf(sigHex+" "+numHex, "%08x %02x", &sig, &num); !ok || len(sigHex) != 8 || err != nil {
		return "", fmt.Errorf("PARTUUID %q is not an MBR one (8 hex digits, '-', the partition number in hex)", uuid)
	}
	parts, _ := filepath.Glob(filepath.Join(sysRoot, "class", "block", "*", "partition"))
	sigs := map[string]uint32{}
	for _, p := range parts {
		b, err := os.ReadFile(p)
		if err != nil || strings.TrimSpace(string(b)) != fmt.Sprint(num) {
			continue
		}
		real, err := filepath.EvalSymlinks(filepath.Dir(p))
		if err != nil {
			continue
		}
		diskName := filepath.Base(filepath.Dir(real))
		s, seen := sigs[diskName]
		if !seen {
			s, err = mbrSignature(filepath.Join(devRoot, diskName))
			if err != nil {
				continue
			}
			sigs[diskName] = s
		}
		if s == sig {
			return filepath.Join(devRoot, filepath.Base(real)), nil
		}
	}
	return "", fmt.Errorf("no partition with PARTUUID %s", uuid)
}

// mbrSignature reads the disk signature of an MBR disk.
func mbrSignature(dev string) (uint32, error) {
	f, err := os.Open(dev)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	b := make([]byte, 512)
	if _, err := f.ReadAt(b, 0); err != nil {
		return 0, err
	}
	if b[510] != 0x55 || b[511] != 0xaa {
		return 0, fmt.Errorf("%s has no MBR", dev)
	}
	return binary.LittleEndian.Uint32(b[440:]), nil
}
