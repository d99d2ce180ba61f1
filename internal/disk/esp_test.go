package disk

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadBoot(t *testing.T) {
	f := newFixture(t)
	o := f.options("disk.img")
	l := writeImage(t, o)
	b, err := ReadBoot(o.Path)
	if err != nil {
		t.Fatal(err)
	}
	if b.Entry.ID != strings.TrimPrefix(l.EntryPath, "/loader/entries/") {
		t.Errorf("entry %s, want %s", b.Entry.ID, l.EntryPath)
	}
	if b.Entry.Options != l.SlotA.Cmdline {
		t.Errorf("options %q, want %q", b.Entry.Options, l.SlotA.Cmdline)
	}
	if !bytes.Equal(b.Kernel, f.kernelB) {
		t.Errorf("kernel: %d bytes, not the %d the image was written with", len(b.Kernel), len(f.kernelB))
	}
	p, err := b.WriteKernel(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(p); !bytes.Equal(got, f.kernelB) {
		t.Error("WriteKernel wrote other bytes")
	}
}

func TestReadBootNotAnImage(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "junk.img")
	if err := os.WriteFile(p, bytes.Repeat([]byte("not a disk "), 100000), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := ReadBoot(p)
	if err == nil || !strings.Contains(err.Error(), "junk.img") {
		t.Fatalf("err = %v, want one naming the file", err)
	}
	if _, err := ReadBoot(filepath.Join(dir, "missing.img")); err == nil {
		t.Fatal("a missing image gave no error")
	}
}

func TestParseEntry(t *testing.T) {
	e, err := ParseEntry("nodeboot-b+0-3.conf", []byte("# comment\ntitle  hello (slot B)\nsort-key nodeboot\nlinux /nodeboot/b/vmlinuz\noptions a=1 b\noptions c\nunknown-key x\n"))
	if err != nil {
		t.Fatal(err)
	}
	if e.Title != "hello (slot B)" || e.SortKey != "nodeboot" || e.Linux != "/nodeboot/b/vmlinuz" || e.Options != "a=1 b c" {
		t.Errorf("parsed %+v", e)
	}
	if !e.TriesOK || !e.TriesOut {
		t.Errorf("tries of %s: counted %v, out %v", e.ID, e.TriesOK, e.TriesOut)
	}
	if _, err := ParseEntry("x.conf", []byte("title no kernel\n")); err == nil || !strings.Contains(err.Error(), "no linux line") {
		t.Errorf("entry without linux: %v", err)
	}
	if _, err := ParseEntry("x.conf", bytes.Repeat([]byte("a"), maxEntrySize+1)); err == nil {
		t.Error("an oversized entry was accepted")
	}
}

func TestTriesOf(t *testing.T) {
	for id, want := range map[string][2]bool{
		"nodeboot-a.conf":       {false, false},
		"nodeboot-a+3.conf":     {true, false},
		"nodeboot-a+2-1.conf":   {true, false},
		"nodeboot-a+0-3.conf":   {true, true},
		"nodeboot-a+0.conf":     {true, true},
		"nodeboot-a+x.conf":     {false, false},
		"nodeboot+a-b+1-2.conf": {true, false},
	} {
		c, o := triesOf(id)
		if c != want[0] || o != want[1] {
			t.Errorf("triesOf(%s) = %v, %v; want %v", id, c, o, want)
		}
	}
}

func TestChoose(t *testing.T) {
	entry := func(id, version string) *Entry {
		e, err := ParseEntry(id, []byte("sort-key nodeboot\nversion "+version+"\nlinux /k\n"))
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	a, bOut, other := entry("nodeboot-a+3.conf", ""), entry("nodeboot-b+0-3.conf", ""), entry("zz-other.conf", "")
	for _, c := range []struct {
		entries []*Entry
		pattern string
		want    string
	}{
		// A slot out of tries loses to the other, whatever the names say.
		{[]*Entry{a, bOut}, "nodeboot-*", "nodeboot-a+3.conf"},
		// The last file name first, as systemd-boot orders equal entries.
		{[]*Entry{a, entry("nodeboot-b+3.conf", "")}, "nodeboot-*", "nodeboot-b+3.conf"},
		// Newest version first.
		{[]*Entry{entry("nodeboot-b.conf", "1"), entry("nodeboot-a.conf", "2")}, "nodeboot-*", "nodeboot-a.conf"},
		// The pattern skips what does not match.
		{[]*Entry{a, other}, "nodeboot-*", "nodeboot-a+3.conf"},
		{[]*Entry{a, other}, "", "zz-other.conf"},
		// When every slot is out of tries, the first of them still boots.
		{[]*Entry{bOut}, "nodeboot-*", "nodeboot-b+0-3.conf"},
	} {
		got, err := Choose(c.entries, c.pattern)
		if err != nil {
			t.Errorf("%q: %v", c.pattern, err)
			continue
		}
		if got.ID != c.want {
			t.Errorf("Choose(%q) = %s, want %s", c.pattern, got.ID, c.want)
		}
	}
	if _, err := Choose([]*Entry{other}, "nodeboot-*"); err == nil {
		t.Error("no match gave no error")
	}
	if _, err := Choose(nil, ""); err == nil {
		t.Error("no entries gave no error")
	}
}

func FuzzParseEntry(f *testing.F) {
	_, e := BootEntry("a", Slot{Cmdline: "console=ttyS0 root=PARTUUID=x"}, 3)
	f.Add("nodeboot-a+3.conf", e)
	f.Add("x+0-1.conf", []byte("linux\noptions\n\n#\x00"))
	f.Fuzz(func(t *testing.T, id string, b []byte) {
		e, err := ParseEntry(id, b)
		if err != nil {
			return
		}
		if e.Linux == "" {
			t.Fatal("accepted an entry without a kernel")
		}
		if e.TriesOut && !e.TriesOK {
			t.Fatal("out of tries without a counter")
		}
	})
}
