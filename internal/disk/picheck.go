package disk

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/fat32"

	"github.com/nodeboot/nodeboot/internal/piboot"
)

// CheckPi checks a Raspberry Pi image against the rules the Pi's firmware
// boots by, reading it with go-diskfs's FAT reader (not nodeboot's writer):
// an MBR with the partitions piboot names and their types; autoboot.txt on
// the first FAT partition within the firmware's 512 bytes, with
// tryboot_a_b=1 and the two slots' boot partitions in [all] and
// [tryboot]; the first partition and the booted slot's each a complete
// boot set (GPU firmware for the Pi 3 and 4, config.txt with arm_64bit=1,
// enable_uart=1 and a kernel= and cmdline= that exist, an arm64 kernel,
// every listed model's device tree); cmdline.txt one line naming that
// slot's root and the data partition by PARTUUID. Every problem found is
// listed in the error.
func CheckPi(imgPath string) error {
	f, err := os.Open(imgPath)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	sig, parts, err := ReadMBR(f)
	if err != nil {
		return fmt.Errorf("%s: %w", imgPath, err)
	}
	var problems []string
	bad := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }
	want := map[int]byte{1: MBRTypeFAT32LBA, 2: MBRTypeFAT32LBA, 3: MBRTypeFAT32LBA, 4: MBRTypeExtendedLBA, 5: MBRTypeLinux, 6: MBRTypeLinux, 7: MBRTypeLinux}
	byNum := map[int]MBRPartition{}
	for _, p := range parts {
		byNum[p.Number] = p
		if p.Offset%MiB != 0 {
			bad("partition %d does not start on a MiB boundary (SD cards erase in such blocks)", p.Number)
		}
		if p.Offset+p.Size > st.Size() {
			bad("partition %d ends beyond the image", p.Number)
		}
	}
	for n, typ := range want {
		p, ok := byNum[n]
		if !ok {
			bad("partition %d is missing", n)
		} else if p.Type != typ {
			bad("partition %d has type %#02x, want %#02x", n, p.Type, typ)
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s: %s", imgPath, strings.Join(problems, "; "))
	}
	readFAT := func(n int) *fat32.FileSystem {
		p := byNum[n]
		fsys, err := fat32.Read(file.New(f, true), p.Size, p.Offset, 512)
		if err != nil {
			bad("partition %d holds no FAT32 file system the firmware could read: %v", n, err)
			return nil
		}
		return fsys
	}
	ctl := readFAT(piboot.PartControl)
	readFAT(piboot.PartBootB)
	if ctl == nil {
		return fmt.Errorf("%s: %s", imgPath, strings.Join(problems, "; "))
	}
	ab, err := readAll(ctl, "/autoboot.txt")
	if err != nil {
		bad("the first partition has no autoboot.txt: %v", err)
	} else if a, err := piboot.ParseAutoboot(ab); err != nil {
		bad("%v", err)
	} else {
		if !a.TrybootAB {
			bad("autoboot.txt lacks tryboot_a_b=1: a tryboot would look for tryboot.txt instead of switching partitions")
		}
		slots := map[int]string{piboot.PartBootA: "a", piboot.PartBootB: "b"}
		if slots[a.Boot] == "" || slots[a.Try] == "" || a.Boot == a.Try {
			bad("autoboot.txt boots partition %d and tries %d; want one slot's boot partition (2 or 3) each", a.Boot, a.Try)
		} else if boot := readFAT(a.Boot); boot != nil {
			checkBootSet(boot, fmt.Sprintf("boot partition %d", a.Boot), sig, slots[a.Boot], bad)
		}
	}
	// A Pi 3 or Zero 2 W ignores autoboot.txt and boots the first
	// partition: it holds slot A's boot set.
	checkBootSet(ctl, "the first partition", sig, "a", bad)
	if len(problems) > 0 {
		return fmt.Errorf("%s: %s", imgPath, strings.Join(problems, "; "))
	}
	return nil
}

func checkBootSet(fsys *fat32.FileSystem, where string, sig uint32, slot string, bad func(string, ...any)) {
	for _, name := range piboot.Firmware {
		if !exists(fsys, "/"+name) {
			bad("%s lacks the firmware file %s", where, name)
		}
	}
	for _, m := range piboot.Models {
		if !exists(fsys, "/"+m.DTB) {
			bad("%s lacks %s, the %s's device tree", where, m.DTB, m.Name)
		}
	}
	cfg, err := readAll(fsys, "/config.txt")
	if err != nil {
		bad("%s has no config.txt: %v", where, err)
		return
	}
	kv := configAll(cfg)
	if kv["arm_64bit"] != "1" {
		bad("%s: config.txt lacks arm_64bit=1: the firmware would start the arm64 kernel in 32-bit mode", where)
	}
	if kv["enable_uart"] != "1" {
		bad("%s: config.txt lacks enable_uart=1: no serial console", where)
	}
	kernel := kv["kernel"]
	if kernel == "" {
		bad("%s: config.txt names no kernel=", where)
	} else if k, err := readAll(fsys, "/"+kernel); err != nil {
		bad("%s: config.txt's kernel=%s is missing", where, kernel)
	} else if len(k) < 0x40 || binary.LittleEndian.Uint32(k[0x38:]) != 0x644d5241 {
		bad("%s: %s is not an arm64 kernel Image", where, kernel)
	}
	cmdName := kv["cmdline"]
	if cmdName == "" {
		cmdName = "cmdline.txt"
	}
	cl, err := readAll(fsys, "/"+cmdName)
	if err != nil {
		bad("%s: %s is missing", where, cmdName)
		return
	}
	if bytes.Count(bytes.TrimRight(cl, "\n"), []byte("\n")) > 0 {
		bad("%s: %s is more than one line (the firmware reads the first only)", where, cmdName)
	}
	fields := strings.Fields(string(cl))
	has := func(f string) bool {
		for _, x := range fields {
			if x == f {
				return true
			}
		}
		return false
	}
	if root := "root=PARTUUID=" + piboot.PartUUID(sig, piboot.RootPartition(slot)); !has(root) {
		bad("%s: %s lacks %s (slot %s's root on this disk)", where, cmdName, root, strings.ToUpper(slot))
	}
	if data := piboot.DataParam + "=PARTUUID=" + piboot.PartUUID(sig, piboot.PartData); !has(data) {
		bad("%s: %s lacks %s", where, cmdName, data)
	}
	if !has("console=serial0,115200") {
		bad("%s: %s has no serial console", where, cmdName)
	}
}

// configAll reads config.txt's settings outside any conditional section
// but [all], as every model applies them.
func configAll(b []byte) map[string]string {
	kv := map[string]string{}
	section := "all"
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		if line[0] == '[' {
			section = strings.Trim(line, "[]")
			continue
		}
		if k, v, ok := strings.Cut(line, "="); ok && section == "all" {
			kv[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return kv
}

func exists(fsys *fat32.FileSystem, name string) bool {
	f, err := fsys.OpenFile(name, os.O_RDONLY)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

func readAll(fsys *fat32.FileSystem, name string) ([]byte, error) {
	f, err := fsys.OpenFile(name, os.O_RDONLY)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return b, nil
}

// ReadPiFile reads a file from FAT partition part of a Pi image: what the
// e2e test hands QEMU, which does not run the Pi's firmware, as its
// kernel, device tree and command line.
func ReadPiFile(imgPath string, part int, name string) ([]byte, error) {
	f, err := os.Open(imgPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	_, parts, err := ReadMBR(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", imgPath, err)
	}
	for _, p := range parts {
		if p.Number != part {
			continue
		}
		fsys, err := fat32.Read(file.New(f, true), p.Size, p.Offset, 512)
		if err != nil {
			return nil, fmt.Errorf("%s partition %d: %w", imgPath, part, err)
		}
		return readAll(fsys, "/"+name)
	}
	return nil, fmt.Errorf("%s has no partition %d", imgPath, part)
}

// WritePiFile overwrites an existing file of FAT partition part of a Pi
// image with data of the same length, through go-diskfs's FAT writer:
// what tests use to play a node's in-place commit of autoboot.txt on an
// image file.
func WritePiFile(imgPath string, part int, name string, data []byte) error {
	f, err := os.OpenFile(imgPath, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, parts, err := ReadMBR(f)
	if err != nil {
		return fmt.Errorf("%s: %w", imgPath, err)
	}
	for _, p := range parts {
		if p.Number != part {
			continue
		}
		fsys, err := fat32.Read(file.New(f, false), p.Size, p.Offset, 512)
		if err != nil {
			return fmt.Errorf("%s partition %d: %w", imgPath, part, err)
		}
		w, err := fsys.OpenFile("/"+name, os.O_RDWR)
		if err != nil {
			return fmt.Errorf("%s partition %d: %w", imgPath, part, err)
		}
		if _, err := w.Write(data); err != nil {
			w.Close()
			return fmt.Errorf("%s partition %d: %s: %w", imgPath, part, name, err)
		}
		if err := w.Close(); err != nil {
			return err
		}
		return f.Sync()
	}
	return fmt.Errorf("%s has no partition %d", imgPath, part)
}
