// Package datafs finds, checks, creates and mounts the persistent data
// partition of a disk image. Its one rule: a partition that holds anything
// but zeros or a mountable ext4 is never formatted; the node then runs with
// /data on tmpfs and says so, and the bytes stay for the owner to rescue.
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
)

func (s State) String() string {
	return [...]string{"empty", "ext4", "unknown"}[s]
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
	// ext2/3/4 superblock at 1024, s_magic at offset 0x38 within it.
	if len(buf) >= 1024+0x3a && binary.LittleEndian.Uint16(buf[1024+0x38:]) == 0xef53 {
		return Ext4, nil
	}
	if len(buf) > 0 && bytes.Count(buf, []byte{0}) == len(buf) {
		return Empty, nil
	}
	return Unknown, nil
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
