package flash

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// ErrRefused is what every refusal of Check matches (errors.Is).
var ErrRefused = errors.New("refused")

type refusal struct{ msg string }

func (r *refusal) Error() string        { return r.msg }
func (r *refusal) Is(target error) bool { return target == ErrRefused }

func refuse(dst, format string, args ...any) error {
	return &refusal{"refusing to write to " + dst + ": " + fmt.Sprintf(format, args...)}
}

// Target is the checked destination of a write.
type Target struct {
	Path  string // as given
	Name  string // kernel name of the disk (sdb, mmcblk0, loop3); "" for a file
	Model string // vendor and model from sysfs, or what the device is; may be ""
	Size  int64  // bytes: the disk's size, or the file's current size

	File   bool // a regular file (allowed by ForceFile), not a block device
	Exists bool // false for a file that the write will create

	Image     string // the image's path
	ImageSize int64
	// ImageGPT says whether the image starts like a GPT disk image.
	ImageGPT bool
	// ImagePi says whether the image starts like a Raspberry Pi image
	// (build --target pi): an MBR whose first partition is FAT32 and whose
	// fourth is the extended partition.
	ImagePi bool
}

// Describe says what the target is: "SanDisk Cruzer Blade, 14.9 GiB".
func (t *Target) Describe() string {
	switch {
	case t.File && !t.Exists:
		return "new file"
	case t.File:
		return "file, " + Size(t.Size)
	case t.Model != "":
		return t.Model + ", " + Size(t.Size)
	}
	return Size(t.Size)
}

// Size formats n bytes for people: "512 B", "64 MiB", "14.9 GiB".
func Size(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	f, u := float64(n), 0
	for f >= 1024 && u < len(units)-1 {
		f /= 1024
		u++
	}
	s := strconv.FormatFloat(f, 'f', 1, 64)
	s = strings.TrimSuffix(s, ".0")
	return s + " " + units[u]
}

// Check decides whether src may be written to dst and describes dst. Every
// refusal matches ErrRefused and says why and what to do instead.
func Check(src, dst string, opts Options) (*Target, error) {
	sys := opts.system()
	fi, err := os.Stat(src)
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("image %s is not a regular file: give the .img file written by nodeboot build", src)
	}
	if fi.Size() == 0 {
		return nil, fmt.Errorf("image %s is empty", src)
	}
	t := &Target{Path: dst, Image: src, ImageSize: fi.Size(), ImageGPT: isGPT(src), ImagePi: isPiMBR(src)}

	n, err := sys.Stat(dst)
	switch {
	case errors.Is(err, fs.ErrNotExist) && opts.ForceFile:
		t.File = true
		return t, nil
	case errors.Is(err, fs.ErrNotExist):
		also := ""
		if !strings.HasPrefix(dst, "/dev/") {
			also = ", or pass --force-file to write the image into a new file"
		}
		return nil, refuse(dst, "no such device: give the whole disk of the USB stick or SD card, e.g. /dev/sdb (lsblk lists disks; the stick is the one that appears when you plug it in)%s", also)
	case err != nil:
		return nil, fmt.Errorf("%s: %w", dst, err)
	case n.Mode.IsRegular():
		if !opts.ForceFile {
			return nil, refuse(dst, "it is a regular file, not a block device: give the whole disk of a USB stick or SD card, e.g. /dev/sdb (see lsblk), or pass --force-file to write the image into this file")
		}
		di, err := os.Stat(dst)
		if err != nil {
			return nil, err
		}
		if os.SameFile(fi, di) {
			return nil, refuse(dst, "it is the image itself: give another file or a device")
		}
		t.File, t.Exists, t.Size = true, true, di.Size()
		return t, nil
	case !n.IsBlock():
		return nil, refuse(dst, "it is not a block device (%s): give the whole disk of a USB stick or SD card, e.g. /dev/sdb (see lsblk)", kind(n.Mode))
	}
	if err := checkBlock(sys, t, n.Rdev); err != nil {
		return nil, err
	}
	return t, nil
}

func kind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeNamedPipe != 0:
		return "a pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	}
	return "type " + m.Type().String()
}

// isGPT reports whether the image has a GPT header at LBA 1 (512- or
// 4096-byte sectors).
func isGPT(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	for _, off := range []int64{512, 4096} {
		b := make([]byte, 8)
		if _, err := f.ReadAt(b, off); err == nil && string(b) == "EFI PART" {
			return true
		}
	}
	return false
}

// isPiMBR reports whether the image has the MBR of a Pi image: the boot
// signature, partition 1 FAT32 (LBA) and partition 4 extended (LBA).
func isPiMBR(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	b := make([]byte, 512)
	if _, err := f.ReadAt(b, 0); err != nil {
		return false
	}
	return b[510] == 0x55 && b[511] == 0xaa && b[446+4] == 0x0c && b[446+3*16+4] == 0x0f
}

// sysfs reads block device facts through a System.
type sysfs struct{ System }

func (s sysfs) read(name string) string {
	b, err := s.ReadFile(name)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func (s sysfs) exists(name string) bool {
	_, err := s.ReadFile(name)
	return err == nil
}

// name returns the kernel name of block device dev (sda, sda1, dm-0).
func (s sysfs) name(dev DevNum) (string, error) {
	names, err := s.ReadDir("/sys/class/block")
	if err != nil {
		return "", fmt.Errorf("listing block devices: %w (is /sys mounted?)", err)
	}
	for _, n := range names {
		if s.read("/sys/class/block/"+n+"/dev") == dev.String() {
			return n, nil
		}
	}
	return "", fmt.Errorf("block device %s is not in /sys/class/block", dev)
}

func (s sysfs) isPartition(name string) bool {
	return s.exists("/sys/class/block/" + name + "/partition")
}

// parent returns the disk a partition belongs to.
func (s sysfs) parent(part string) string {
	disks, _ := s.ReadDir("/sys/block")
	for _, d := range disks {
		if s.exists("/sys/block/" + d + "/" + part + "/partition") {
			return d
		}
	}
	return ""
}

// partitions returns a disk's partitions and their device numbers.
func (s sysfs) partitions(disk string) map[string]DevNum {
	parts := map[string]DevNum{}
	entries, _ := s.ReadDir("/sys/class/block/" + disk)
	for _, e := range entries {
		dir := "/sys/class/block/" + disk + "/" + e
		if !s.exists(dir + "/partition") {
			continue
		}
		if d, err := ParseDevNum(s.read(dir + "/dev")); err == nil {
			parts[e] = d
		}
	}
	return parts
}

// model says what the disk is: vendor and model, an MMC card's name, or a
// loop device's backing file.
func (s sysfs) model(disk string) string {
	base := "/sys/block/" + disk
	var parts []string
	for _, f := range []string{"vendor", "model"} {
		if v := s.read(base + "/device/" + f); v != "" {
			parts = append(parts, v)
		}
	}
	if len(parts) > 0 {
		return strings.Join(parts, " ")
	}
	if v := s.read(base + "/device/name"); v != "" {
		return v
	}
	if v := s.read(base + "/loop/backing_file"); v != "" {
		return "loop device of " + v
	}
	return ""
}

// holder describes a device stacked on a disk, and how to take it down.
func (s sysfs) holder(h string) (what, fix string) {
	dm := s.read("/sys/class/block/" + h + "/dm/name")
	uuid := s.read("/sys/class/block/" + h + "/dm/uuid")
	switch {
	case strings.HasPrefix(uuid, "LVM-"):
		return fmt.Sprintf("LVM volume %s (/dev/%s)", dm, h), fmt.Sprintf("deactivate its volume group (sudo vgchange -an %s)", lvmVG(dm))
	case strings.HasPrefix(uuid, "CRYPT-"):
		return fmt.Sprintf("encrypted volume %s (/dev/%s)", dm, h), fmt.Sprintf("unmount and close it (sudo cryptsetup close %s)", dm)
	case dm != "":
		return fmt.Sprintf("device-mapper device %s (/dev/%s)", dm, h), fmt.Sprintf("remove it (sudo dmsetup remove %s)", dm)
	case strings.HasPrefix(h, "md"):
		return fmt.Sprintf("RAID array /dev/%s", h), fmt.Sprintf("stop it (sudo mdadm --stop /dev/%s)", h)
	}
	return "/dev/" + h, "stop what uses it"
}

// rootDisks returns the names of the devices the root file system is on:
// its partition, the partition's disk and, through device-mapper, RAID or
// LUKS, every device underneath.
func (s sysfs) rootDisks() (set map[string]bool, root string) {
	b, err := s.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, ""
	}
	var m *mount
	for _, x := range parseMountinfo(b) {
		if x.Point == "/" {
			m = &x
		}
	}
	if m == nil {
		return nil, ""
	}
	name, err := s.name(m.Dev)
	if err != nil && strings.HasPrefix(m.Source, "/dev/") {
		// btrfs and others show an anonymous device number: go by the source.
		if n, err2 := s.Stat(m.Source); err2 == nil && n.IsBlock() {
			name, err = s.name(n.Rdev)
		}
	}
	if err != nil {
		return nil, "" // overlay, tmpfs, 9p...: no disk to protect here
	}
	set = map[string]bool{}
	var add func(n string, depth int)
	add = func(n string, depth int) {
		if n == "" || set[n] || depth > 16 {
			return
		}
		set[n] = true
		if s.isPartition(n) {
			add(s.parent(n), depth+1)
		}
		slaves, _ := s.ReadDir("/sys/class/block/" + n + "/slaves")
		for _, sl := range slaves {
			add(sl, depth+1)
		}
	}
	add(name, 0)
	return set, name
}

// checkBlock runs the checks for a block device and fills in t.
func checkBlock(sys System, t *Target, dev DevNum) error {
	s := sysfs{sys}
	dst := t.Path
	name, err := s.name(dev)
	if err != nil {
		return fmt.Errorf("%s: %w", dst, err)
	}
	t.Name = name
	if filepath.Base(dst) != name {
		dst = fmt.Sprintf("%s (/dev/%s)", dst, name)
	}

	if s.isPartition(name) {
		p := s.parent(name)
		if p == "" {
			return refuse(dst, "it is a partition, not a whole disk: an image brings its own partition table, so give the whole disk (lsblk shows which disk it belongs to)")
		}
		return refuse(dst, "it is a partition of /dev/%s, not a whole disk: an image brings its own partition table, so write to the whole disk: nodeboot write %s /dev/%s", p, t.Image, p)
	}

	t.Model = s.model(name)
	sectors, err := strconv.ParseInt(s.read("/sys/class/block/"+name+"/size"), 10, 64)
	if err != nil {
		return fmt.Errorf("%s: cannot read its size from /sys/class/block/%s/size", dst, name)
	}
	t.Size = sectors * 512 // sysfs counts 512-byte sectors whatever the device's

	if system, root := s.rootDisks(); system[name] {
		return refuse(dst, "it is the system disk: it holds the running system's root file system (/ is on /dev/%s); writing would destroy this computer's operating system. Plug in the USB stick or SD card and give its disk (lsblk lists disks; the stick is the one that appears when you plug it in)", root)
	}

	parts := s.partitions(name)
	devs := map[DevNum]string{dev: name}
	names := []string{name}
	for p, d := range parts {
		devs[d] = p
		names = append(names, p)
	}
	slices.Sort(names)

	// Mounted: the disk or any partition, by number, or by source name for
	// file systems that show an anonymous number (btrfs).
	mountinfo, err := s.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return fmt.Errorf("cannot tell whether %s is mounted: %w", dst, err)
	}
	mounted := map[string][]string{}
	for _, m := range parseMountinfo(mountinfo) {
		n, ok := devs[m.Dev]
		if !ok && strings.HasPrefix(m.Source, "/dev/") && slices.Contains(names, filepath.Base(m.Source)) {
			n, ok = filepath.Base(m.Source), true
		}
		if ok && !slices.Contains(mounted[n], m.Point) {
			mounted[n] = append(mounted[n], m.Point)
		}
	}
	if len(mounted) > 0 {
		var what, umount []string
		for _, n := range names {
			if pts := mounted[n]; len(pts) > 0 {
				what = append(what, fmt.Sprintf("/dev/%s is mounted at %s", n, strings.Join(pts, " and ")))
				umount = append(umount, "/dev/"+n)
			}
		}
		return refuse(dst, "%s: unmount first (sudo umount %s, or eject it in the file manager), then run this again", strings.Join(what, "; "), strings.Join(umount, " "))
	}

	if b, err := s.ReadFile("/proc/swaps"); err == nil {
		for _, f := range parseSwaps(b) {
			n := ""
			if nd, err := s.Stat(f); err == nil && nd.IsBlock() {
				n = devs[nd.Rdev]
			}
			if n == "" && strings.HasPrefix(f, "/dev/") && slices.Contains(names, filepath.Base(f)) {
				n = filepath.Base(f)
			}
			if n != "" {
				return refuse(dst, "/dev/%s is in use as swap: turn it off first (sudo swapoff /dev/%s), then run this again", n, n)
			}
		}
	}

	for _, n := range names {
		holders, _ := s.ReadDir("/sys/class/block/" + n + "/holders")
		if len(holders) > 0 {
			what, fix := s.holder(holders[0])
			return refuse(dst, "/dev/%s is in use by %s: %s, then run this again", n, what, fix)
		}
	}

	if abs, err := filepath.Abs(t.Image); err == nil && s.read("/sys/block/"+name+"/loop/backing_file") == abs {
		return refuse(dst, "it is a loop device of the image itself")
	}

	if s.read("/sys/class/block/"+name+"/ro") == "1" {
		return refuse(dst, "the device is read-only (an SD card's lock switch?): unlock it, plug it in again, and run this again")
	}
	if t.Size == 0 {
		return refuse(dst, "the device reports a size of 0: no medium (a card reader without a card?): insert the card and run this again")
	}
	if t.Size < t.ImageSize {
		return refuse(dst, "the device is smaller than the image: %s holds %s (%d bytes), the image %s is %s (%d bytes): use a device of at least %s",
			t.Path, Size(t.Size), t.Size, t.Image, Size(t.ImageSize), t.ImageSize, Size(t.ImageSize))
	}
	return nil
}

// lvmVG returns the volume group of an LVM device-mapper name: VG-LV, with
// the dashes inside either name doubled.
func lvmVG(dm string) string {
	for i := 0; i < len(dm); i++ {
		if dm[i] != '-' {
			continue
		}
		if i+1 < len(dm) && dm[i+1] == '-' {
			i++
			continue
		}
		return strings.ReplaceAll(dm[:i], "--", "-")
	}
	return dm
}
