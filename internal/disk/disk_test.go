package disk

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/nodeboot/nodeboot/internal/image"
)

// The tests read every image back with readers that share no code with the
// writer: sfdisk and go-diskfs for the GPT, go-diskfs, mtools and fsck.vfat
// for the ESP, unsquashfs for the root file system. A missing tool skips its
// check, unless NODEBOOT_E2E is set, where it fails (the Makefile installs
// them: fdisk, mtools, dosfstools, squashfs-tools).

// testSize keeps the images small enough to hash quickly.
const testSize = 768 * MiB

func needTool(t *testing.T, tool, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		if _, err := os.Stat(filepath.Join(dir, tool)); err == nil {
			return filepath.Join(dir, tool)
		}
	}
	if os.Getenv("NODEBOOT_E2E") != "" {
		t.Fatalf("%s is not installed (apt-get install %s)", tool, pkg)
	}
	t.Skipf("%s is not installed (apt-get install %s); with NODEBOOT_E2E=1 this is a failure", tool, pkg)
	return ""
}

type fixture struct {
	dir      string
	tree     *image.Tree
	kernel   string
	efi      string
	kernelB  []byte
	efiBytes []byte
}

// compressible returns n bytes of deterministic text-like data.
func compressible(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	words := []string{"require", "module", "exports", "function", "const", "return", "await", "node", "boot", "=>", "{", "}", ";\n"}
	var b bytes.Buffer
	for b.Len() < n {
		b.WriteString(words[r.IntN(len(words))])
		b.WriteByte(' ')
	}
	return b.Bytes()[:n]
}

func random(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 2))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{dir: t.TempDir(), tree: image.NewTree()}
	write := func(name string, data []byte) string {
		p := filepath.Join(f.dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	f.kernelB = random(1<<20+17, 7)
	f.kernel = write("bzImage", f.kernelB)
	f.efiBytes = random(140000, 8)
	f.efi = write("systemd-bootx64.efi", f.efiBytes)

	tr := f.tree
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	add := func(p string, data []byte, mode fs.FileMode) {
		src := write(strings.ReplaceAll(strings.TrimPrefix(p, "/"), "/", "_"), data)
		must(tr.AddFile(p, src, mode, int64(len(data))))
	}
	must(tr.AddData("/init", []byte("#!/not/a/shell\n"), 0o755))
	must(tr.AddData("/etc/hostname", []byte("node\n"), 0o644))
	add("/usr/bin/big", compressible(5<<20+123, 1), 0o755)    // blocks and a tail
	add("/usr/lib/block", random(sqBlockSize, 2), 0o644)      // one raw block, no tail
	add("/usr/lib/block1", random(sqBlockSize+1, 3), 0o444)   // a block and a 1-byte tail
	add("/usr/lib/empty", nil, 0o600)                         // no data at all
	add("/usr/share/ünïcødé name.txt", []byte("hi\n"), 0o644) // not ASCII, a space
	add("/usr/bin/suid", []byte("x"), 0o755)
	e, _ := tr.Get("/usr/bin/suid")
	e.Mode = 0o4755
	must(tr.AddDir("/tmp", 0o777|fs.ModeSticky, 0, 0))
	must(tr.AddDir("/srv/app", 0o750, 1000, 1000))
	must(tr.AddData("/srv/app/data.json", []byte(`{"a":1}`), 0o640))
	e, _ = tr.Get("/srv/app/data.json")
	e.UID, e.GID = 1000, 1001
	must(tr.AddSymlink("/usr/bin/nodejs", "big"))
	must(tr.AddSymlink("/etc/abs", "/etc/hostname"))
	must(tr.AddSymlink("/lib64", "usr/lib"))
	// More entries than one directory header holds (256), more listing
	// than one metadata block (8 KiB), and many fragments.
	for i := 0; i < 300; i++ {
		must(tr.AddData(fmt.Sprintf("/many/file-with-a-longish-name-%03d.js", i), compressible(100+i*37, uint64(i)), 0o644))
	}
	must(tr.AddDir("/emptydir", 0o700, 0, 0))
	return f
}

func (f *fixture) options(name string) Options {
	return Options{
		Path:        filepath.Join(f.dir, name),
		Size:        testSize,
		Root:        f.tree,
		Kernel:      f.kernel,
		Cmdline:     "console=ttyS0,115200 panic=10",
		SystemdBoot: f.efi,
		Seed:        "test-seed",
	}
}

func writeImage(t *testing.T, o Options) *Layout {
	t.Helper()
	start := time.Now()
	l, err := Write(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s in %v: root fs %d bytes", filepath.Base(o.Path), time.Since(start).Round(time.Millisecond), l.RootFSSize)
	return l
}

func TestLayout(t *testing.T) {
	f := newFixture(t)
	o := f.options("disk.img")
	l := writeImage(t, o)

	st, err := os.Stat(o.Path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() != testSize || l.Size != testSize {
		t.Errorf("image is %d bytes, layout says %d, want %d", st.Size(), l.Size, testSize)
	}
	parts := []Partition{l.ESP, l.RootA, l.RootB, l.Data}
	for i, p := range parts {
		if p.Number != i+1 || p.Offset%MiB != 0 {
			t.Errorf("partition %+v: want number %d, 1 MiB aligned", p, i+1)
		}
		if i > 0 && p.Offset != parts[i-1].Offset+parts[i-1].Size {
			t.Errorf("partition %d does not follow %d", i+1, i)
		}
	}
	if l.ESP.Offset != MiB || l.ESP.Size != DefaultESPSize {
		t.Errorf("ESP %+v", l.ESP)
	}
	if l.RootA.Size != MinRootSize || l.RootB.Size != l.RootA.Size {
		t.Errorf("root slots %d/%d, want %d", l.RootA.Size, l.RootB.Size, MinRootSize)
	}
	if end := l.Data.Offset + l.Data.Size; end != testSize-gptTail {
		t.Errorf("data ends at %d, want the last usable byte %d", end, testSize-gptTail)
	}
	if want := "console=ttyS0,115200 panic=10 root=PARTUUID=" + l.RootA.GUID + " rootfstype=squashfs ro rootwait init=/init"; l.SlotA.Cmdline != want {
		t.Errorf("cmdline %q, want %q", l.SlotA.Cmdline, want)
	}

	// go-diskfs's GPT reader.
	d, err := diskfs.Open(o.Path, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	pt, err := d.GetPartitionTable()
	if err != nil {
		t.Fatal(err)
	}
	gt, ok := pt.(*gpt.Table)
	if !ok {
		t.Fatalf("partition table is %T, want GPT", pt)
	}
	if !strings.EqualFold(gt.GUID, l.DiskGUID) || !gt.ProtectiveMBR {
		t.Errorf("disk GUID %s (protective MBR %v), want %s", gt.GUID, gt.ProtectiveMBR, l.DiskGUID)
	}
	if len(gt.Partitions) != 4 {
		t.Fatalf("%d partitions, want 4", len(gt.Partitions))
	}
	for i, p := range gt.Partitions {
		w := parts[i]
		if p.Index != w.Number || int64(p.Start)*512 != w.Offset || int64(p.Size) != w.Size ||
			!strings.EqualFold(string(p.Type), w.Type) || p.Name != w.Label || !strings.EqualFold(p.GUID, w.GUID) {
			t.Errorf("go-diskfs reads partition %d as %+v, want %+v", i+1, p, w)
		}
	}

	// The data partition and slot B start zeroed.
	img, err := os.Open(o.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	for _, p := range []Partition{l.RootB, l.Data} {
		b := make([]byte, MiB)
		if _, err := img.ReadAt(b, p.Offset); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, make([]byte, MiB)) {
			t.Errorf("%s does not start with a zeroed MiB", p.Label)
		}
	}

	// sfdisk, from util-linux.
	sfdisk := needTool(t, "sfdisk", "fdisk")
	out, err := exec.Command(sfdisk, "--json", o.Path).Output()
	if err != nil {
		t.Fatalf("sfdisk --json: %v", err)
	}
	var sf struct {
		PartitionTable struct {
			Label      string `json:"label"`
			ID         string `json:"id"`
			SectorSize int64  `json:"sectorsize"`
			Partitions []struct {
				Start int64  `json:"start"`
				Size  int64  `json:"size"`
				Type  string `json:"type"`
				UUID  string `json:"uuid"`
				Name  string `json:"name"`
			} `json:"partitions"`
		} `json:"partitiontable"`
	}
	if err := json.Unmarshal(out, &sf); err != nil {
		t.Fatalf("sfdisk output: %v\n%s", err, out)
	}
	spt := sf.PartitionTable
	if spt.Label != "gpt" || !strings.EqualFold(spt.ID, l.DiskGUID) || spt.SectorSize != 512 || len(spt.Partitions) != 4 {
		t.Fatalf("sfdisk reads %s", out)
	}
	for i, p := range spt.Partitions {
		w := parts[i]
		if p.Start*512 != w.Offset || p.Size*512 != w.Size || !strings.EqualFold(p.Type, w.Type) ||
			!strings.EqualFold(p.UUID, w.GUID) || p.Name != w.Label {
			t.Errorf("sfdisk reads partition %d as %+v, want %+v", i+1, p, w)
		}
	}
	if out, err := exec.Command(sfdisk, "--verify", o.Path).CombinedOutput(); err != nil || !strings.Contains(string(out), "No errors detected") {
		t.Errorf("sfdisk --verify: %v\n%s", err, out)
	}
}

// espFiles is what the ESP must hold, byte for byte.
func espFiles(f *fixture, l *Layout) map[string][]byte {
	entry := fmt.Sprintf("title nodeboot (slot A)\nsort-key nodeboot\nlinux /nodeboot/a/vmlinuz\noptions %s\n", l.SlotA.Cmdline)
	return map[string][]byte{
		"/EFI/BOOT/BOOTX64.EFI":             f.efiBytes,
		"/loader/loader.conf":               []byte("default nodeboot-*\ntimeout 0\neditor no\nauto-entries no\nauto-firmware no\n"),
		"/loader/entries/nodeboot-a+3.conf": []byte(entry),
		"/nodeboot/a/vmlinuz":               f.kernelB,
	}
}

func TestESP(t *testing.T) {
	f := newFixture(t)
	o := f.options("disk.img")
	l := writeImage(t, o)
	want := espFiles(f, l)

	// go-diskfs's FAT32 reader.
	d, err := diskfs.Open(o.Path, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	efs, err := d.GetFilesystem(1)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(efs.Label()); got != "NODEBOOT" {
		t.Errorf("ESP label %q", got)
	}
	for p, data := range want {
		got, err := efs.ReadFile(p)
		if err != nil {
			t.Errorf("go-diskfs: %s: %v", p, err)
		} else if !bytes.Equal(got, data) {
			t.Errorf("go-diskfs: %s differs (%d bytes, want %d)", p, len(got), len(data))
		}
	}
	names := map[string][]string{".": {"EFI", "loader", "nodeboot"}, "/EFI": {"BOOT"}, "/loader": {"entries", "loader.conf"}, "/nodeboot": {"a"}}
	for dir, wantNames := range names {
		ents, err := efs.ReadDir(strings.TrimPrefix(dir, "/"))
		if err != nil {
			t.Fatalf("go-diskfs: %s: %v", dir, err)
		}
		var got []string
		for _, e := range ents {
			got = append(got, e.Name())
		}
		if strings.Join(got, ",") != strings.Join(wantNames, ",") {
			t.Errorf("go-diskfs: %s holds %q, want %q", dir, got, wantNames)
		}
	}

	// The ESP alone, for the host tools.
	esp := filepath.Join(f.dir, "esp.img")
	extract(t, o.Path, esp, l.ESP)

	fsck := needTool(t, "fsck.vfat", "dosfstools")
	if out, err := exec.Command(fsck, "-n", "-v", esp).CombinedOutput(); err != nil || bytes.Contains(out, []byte("Fixing")) {
		t.Errorf("fsck.vfat -n: %v\n%s", err, out)
	}
	mtype := needTool(t, "mtype", "mtools")
	for p, data := range want {
		cmd := exec.Command(mtype, "-i", esp, "::"+p)
		cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
		got, err := cmd.Output()
		if err != nil {
			t.Errorf("mtype %s: %v", p, err)
		} else if !bytes.Equal(got, data) {
			t.Errorf("mtype: %s differs (%d bytes, want %d)", p, len(got), len(data))
		}
	}
	out, err := exec.Command(needTool(t, "minfo", "mtools"), "-i", esp, "::").CombinedOutput()
	if err != nil {
		t.Fatalf("minfo: %v\n%s", err, out)
	}
	if serial := fmt.Sprintf("serial number: %08X", l.VolumeID); !strings.Contains(string(out), serial) {
		t.Errorf("minfo does not show %q:\n%s", serial, out)
	}
}

func extract(t *testing.T, img, out string, p Partition) {
	t.Helper()
	in, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	o, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(o, io.NewSectionReader(in, p.Offset, p.Size)); err != nil {
		t.Fatal(err)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
}

// modeString formats like ls -l (and unsquashfs -lln).
func modeString(k image.Kind, m fs.FileMode) string {
	perm := uint32(m & 0o7777)
	if m&fs.ModeSetuid != 0 {
		perm |= 0o4000
	}
	if m&fs.ModeSticky != 0 {
		perm |= 0o1000
	}
	typ := map[image.Kind]byte{image.KindDir: 'd', image.KindFile: '-', image.KindSymlink: 'l'}[k]
	if k == image.KindSymlink {
		perm = 0o777
	}
	b := []byte{typ}
	for i, rwx := range []string{"rwx", "rwx", "rwx"} {
		shift := uint(6 - 3*i)
		for j := 0; j < 3; j++ {
			if perm>>(shift+uint(2-j))&1 != 0 {
				b = append(b, rwx[j])
			} else {
				b = append(b, '-')
			}
		}
	}
	special := []struct {
		bit uint32
		pos int
		set byte
	}{{0o4000, 3, 's'}, {0o2000, 6, 's'}, {0o1000, 9, 't'}}
	for _, s := range special {
		if perm&s.bit != 0 {
			if b[s.pos] == '-' {
				b[s.pos] = s.set - 'a' + 'A'
			} else {
				b[s.pos] = s.set
			}
		}
	}
	return string(b)
}

func TestRootFS(t *testing.T) {
	unsquashfs := needTool(t, "unsquashfs", "squashfs-tools")
	for _, comp := range []string{"gzip", "none"} {
		t.Run(comp, func(t *testing.T) {
			f := newFixture(t)
			o := f.options("disk.img")
			o.RootCompression = comp
			o.MTime = time.Unix(1700000000, 0)
			l := writeImage(t, o)
			if comp == "gzip" && l.RootFSSize > f.tree.Size()/2 {
				t.Errorf("compressed root fs is %d bytes for %d bytes of files", l.RootFSSize, f.tree.Size())
			}
			if comp == "none" && l.RootFSSize < f.tree.Size() {
				t.Errorf("uncompressed root fs is %d bytes for %d bytes of files", l.RootFSSize, f.tree.Size())
			}
			checkSquashfs(t, unsquashfs, o.Path, l.RootA.Offset, f.tree, "2023-11-14 22:13")
		})
	}
}

// checkSquashfs extracts the squashfs at off in img and compares it with t.
func checkSquashfs(t *testing.T, unsquashfs, img string, off int64, tree *image.Tree, stamp string) {
	t.Helper()
	dest := filepath.Join(t.TempDir(), "root")
	out, err := exec.Command(unsquashfs, "-no-progress", "-o", fmt.Sprint(off), "-d", dest, img).CombinedOutput()
	if err != nil {
		t.Fatalf("unsquashfs: %v\n%s", err, out)
	}
	// Owners, modes and times from the listing: extraction applies owners
	// only when run as root.
	ls := exec.Command(unsquashfs, "-o", fmt.Sprint(off), "-lln", "-d", "", img)
	ls.Env = append(os.Environ(), "TZ=UTC")
	out, err = ls.CombinedOutput()
	if err != nil {
		t.Fatalf("unsquashfs -lln: %v\n%s", err, out)
	}
	listed := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 5 && len(fields[0]) == 10 {
			fields = append(fields, "/") // the root, listed with an empty name
		}
		if len(fields) < 6 || len(fields[0]) != 10 {
			continue
		}
		// mode uid/gid size date time path[ -> target]
		name := strings.Join(fields[5:], " ")
		if i := strings.Index(name, " -> "); i >= 0 {
			name = name[:i]
		}
		if name == "" {
			name = "/"
		}
		listed[name] = fields[0] + " " + fields[1] + " " + fields[3] + " " + fields[4]
	}
	seen := 0
	for _, e := range tree.Entries() {
		want := fmt.Sprintf("%s %d/%d %s", modeString(e.Kind, e.Mode), e.UID, e.GID, stamp)
		if got := listed[e.Path]; got != want {
			t.Errorf("%s: listed as %q, want %q", e.Path, got, want)
		}
		seen++
		p := filepath.Join(dest, filepath.FromSlash(e.Path))
		st, err := os.Lstat(p)
		if err != nil {
			t.Errorf("%s: %v", e.Path, err)
			continue
		}
		switch e.Kind {
		case image.KindDir:
			if !st.IsDir() {
				t.Errorf("%s: not a directory", e.Path)
			}
		case image.KindSymlink:
			if target, err := os.Readlink(p); err != nil || target != e.Link {
				t.Errorf("%s: link %q (%v), want %q", e.Path, target, err, e.Link)
			}
		case image.KindFile:
			got, err := os.ReadFile(p)
			if err != nil {
				t.Errorf("%s: %v", e.Path, err)
				continue
			}
			data := e.Data
			if e.Source != "" {
				if data, err = os.ReadFile(e.Source); err != nil {
					t.Fatal(err)
				}
			}
			if !bytes.Equal(got, data) {
				t.Errorf("%s: content differs (%d bytes, want %d)", e.Path, len(got), len(data))
			}
		}
	}
	if seen != len(listed) {
		t.Errorf("the image holds %d entries, the tree %d", len(listed), seen)
	}
}

// same reports whether files a and b hold the same bytes.
func same(t *testing.T, a, b string) bool {
	t.Helper()
	fa, err := os.Open(a)
	if err != nil {
		t.Fatal(err)
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		t.Fatal(err)
	}
	defer fb.Close()
	ba, bb := make([]byte, 4*MiB), make([]byte, 4*MiB)
	for {
		na, ea := io.ReadFull(fa, ba)
		nb, eb := io.ReadFull(fb, bb)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			return false
		}
		if ea != nil || eb != nil {
			for _, e := range []error{ea, eb} {
				if e != nil && e != io.EOF && e != io.ErrUnexpectedEOF {
					t.Fatal(e)
				}
			}
			return ea != nil && eb != nil
		}

	}
}

func TestReproducible(t *testing.T) {
	f := newFixture(t)
	// Small partitions, so that hashing the images is quick.
	small := func(name string) Options {
		o := f.options(name)
		o.Size, o.ESPSize, o.RootSize = 160*MiB, 40*MiB, 16*MiB
		return o
	}
	o1 := small("one.img")
	l1 := writeImage(t, o1)
	o2 := small("two.img")
	l2 := writeImage(t, o2)
	if !same(t, o1.Path, o2.Path) {
		t.Fatal("two writes of the same inputs differ")
	}
	if fmt.Sprint(*l1) != fmt.Sprint(*l2) {
		t.Errorf("layouts differ:\n%+v\n%+v", *l1, *l2)
	}

	// Another seed: other GUIDs, and nothing else.
	o3 := small("three.img")
	o3.Seed = "other"
	l3 := writeImage(t, o3)
	ids := map[string]bool{}
	for _, l := range []*Layout{l1, l3} {
		for _, g := range []string{l.DiskGUID, l.ESP.GUID, l.RootA.GUID, l.RootB.GUID, l.Data.GUID, fmt.Sprint(l.VolumeID)} {
			if ids[g] {
				t.Errorf("GUID %s repeats", g)
			}
			ids[g] = true
		}
	}
	if l1.RootFSSize != l3.RootFSSize {
		t.Errorf("the seed changed the root file system")
	}

	// No seed: derived from the contents, still reproducible.
	o4, o5 := small("four.img"), small("five.img")
	o4.Seed, o5.Seed = "", ""
	l4, l5 := writeImage(t, o4), writeImage(t, o5)
	if l4.DiskGUID != l5.DiskGUID || l4.DiskGUID == l1.DiskGUID {
		t.Errorf("derived seeds: %s, %s (explicit: %s)", l4.DiskGUID, l5.DiskGUID, l1.DiskGUID)
	}
	if !same(t, o4.Path, o5.Path) {
		t.Error("two writes without a seed differ")
	}
}

// leftovers lists the files in dir other than the fixture's inputs.
func leftovers(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".img") || strings.HasPrefix(e.Name(), ".") {
			out = append(out, e.Name())
		}
	}
	return out
}

func TestTooSmall(t *testing.T) {
	f := newFixture(t)

	o := f.options("small.img")
	o.Size = 600 * MiB
	_, err := Write(o)
	var tse *TooSmallError
	// 1 MiB + 128 MiB ESP + 2 × 256 MiB + 64 MiB data + the backup GPT.
	const min = 706 * MiB
	if !errors.As(err, &tse) || tse.Min != min || !strings.Contains(err.Error(), "at least 706 MiB") {
		t.Errorf("600 MiB image: %v, want a TooSmallError naming 706 MiB", err)
	}
	o.Size = min
	if _, err := Write(o); err != nil {
		t.Errorf("image of exactly the minimum: %v", err)
	}
	os.Remove(o.Path)

	// A root slot smaller than the squashfs is found after writing it.
	o = f.options("slot.img")
	o.RootSize = 1 * MiB
	_, err = Write(o)
	if !errors.As(err, &tse) || tse.What != "root slot" || !strings.Contains(err.Error(), "root slot size 1 MiB is too small: it needs at least 2 MiB") {
		t.Errorf("1 MiB root slot: %v", err)
	}
	// A big root slot makes the image too small after the fact, too.
	o.RootSize = 512 * MiB
	_, err = Write(o)
	if !errors.As(err, &tse) || tse.Min != 1218*MiB {
		t.Errorf("512 MiB slots in 768 MiB: %v, want a minimum of 1218 MiB", err)
	}
	if l := leftovers(t, f.dir); len(l) != 0 {
		t.Errorf("failed writes left %q behind", l)
	}
}

func TestMissingInputs(t *testing.T) {
	f := newFixture(t)
	o := f.options("x.img")
	o.SystemdBoot = filepath.Join(f.dir, "nonexistent.efi")
	_, err := Write(o)
	if !errors.Is(err, ErrNoSystemdBoot) || !strings.Contains(err.Error(), "apt-get install systemd-boot-efi") {
		t.Errorf("missing systemd-boot: %v", err)
	}
	o = f.options("x.img")
	o.Kernel = filepath.Join(f.dir, "nonexistent")
	if _, err := Write(o); err == nil || !strings.Contains(err.Error(), "kernel") {
		t.Errorf("missing kernel: %v", err)
	}
	o = f.options("x.img")
	o.RootCompression = "xz"
	if _, err := Write(o); err == nil || !strings.Contains(err.Error(), "xz") {
		t.Errorf("unknown compression: %v", err)
	}
	// A tree file that vanished: the error names it, nothing is left.
	o = f.options("x.img")
	e, _ := f.tree.Get("/usr/lib/block")
	os.Rename(e.Source, e.Source+".gone")
	if _, err := Write(o); err == nil || !strings.Contains(err.Error(), "/usr/lib/block") {
		t.Errorf("missing tree file: %v", err)
	}
	if l := leftovers(t, f.dir); len(l) != 0 {
		t.Errorf("failed writes left %q behind", l)
	}
}

func TestDefaultSystemdBoot(t *testing.T) {
	if _, err := os.Stat(DefaultSystemdBoot); err != nil {
		if os.Getenv("NODEBOOT_E2E") != "" {
			t.Fatalf("%s: %v (apt-get install systemd-boot-efi)", DefaultSystemdBoot, err)
		}
		t.Skipf("%s: %v (apt-get install systemd-boot-efi)", DefaultSystemdBoot, err)
	}
	f := newFixture(t)
	o := f.options("x.img")
	o.SystemdBoot = ""
	if _, err := Write(o); err != nil {
		t.Fatal(err)
	}
}

func TestSlotCmdline(t *testing.T) {
	const g = "0AB9C7D6-0000-4000-8000-000000000001"
	for _, c := range []struct {
		base    string
		init    bool
		want    string
		comment string
	}{
		{"console=ttyS0", true, "console=ttyS0 root=PARTUUID=0ab9c7d6-0000-4000-8000-000000000001 rootfstype=squashfs ro rootwait init=/init", ""},
		{"", false, "root=PARTUUID=0ab9c7d6-0000-4000-8000-000000000001 rootfstype=squashfs ro rootwait", "no /init in the tree"},
		{"init=/sbin/other  rootdelay=5", true, "init=/sbin/other rootdelay=5 root=PARTUUID=0ab9c7d6-0000-4000-8000-000000000001 rootfstype=squashfs ro", "the caller's init and wait win"},
	} {
		if got := SlotCmdline(c.base, g, c.init); got != c.want {
			t.Errorf("SlotCmdline(%q, %v) = %q, want %q (%s)", c.base, c.init, got, c.want, c.comment)
		}
	}
}

func TestBootEntry(t *testing.T) {
	p, b := BootEntry("b", Slot{Kernel: "k", Cmdline: "console=ttyS0 root=PARTUUID=x", Title: "shop"}, 3)
	if p != "/loader/entries/nodeboot-b+3.conf" {
		t.Errorf("path %s", p)
	}
	want := "title shop (slot B)\nsort-key nodeboot\nlinux /nodeboot/b/vmlinuz\noptions console=ttyS0 root=PARTUUID=x\n"
	if string(b) != want {
		t.Errorf("entry %q, want %q", b, want)
	}
	if p, _ := BootEntry("a", Slot{}, 0); p != "/loader/entries/nodeboot-a.conf" {
		t.Errorf("blessed entry path %s", p)
	}
}

func TestSeedGUID(t *testing.T) {
	g := seedGUID("s", "disk")
	if len(g) != 36 || g[14] != '4' || !strings.ContainsRune("89ab", rune(g[19])) {
		t.Errorf("%s is not a version 4 GUID", g)
	}
	if g != seedGUID("s", "disk") || g == seedGUID("s", "esp") || g == seedGUID("t", "disk") {
		t.Error("GUIDs are not a function of seed and name")
	}
}
