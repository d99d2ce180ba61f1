package disk

import (
	"os"
	"path/filepath"
	"testing"
)

func TestParseCounter(t *testing.T) {
	// As systemd-boot's config_entry_parse_tries reads them: the last '+',
	// digits, an optional "-digits", then exactly ".conf".
	for _, c := range []struct {
		name string
		want Counter
		next string
	}{
		{"nodeboot-a+3.conf", Counter{true, 3, 0}, "nodeboot-a+2-1.conf"},
		{"nodeboot-a+2-1.conf", Counter{true, 2, 1}, "nodeboot-a+1-2.conf"},
		{"nodeboot-a+0-3.conf", Counter{true, 0, 3}, "nodeboot-a+0-4.conf"},
		{"x+1+2.conf", Counter{true, 2, 0}, "x+1+1-1.conf"},
		{"nodeboot-a.conf", Counter{}, "nodeboot-a.conf"},
		{"nodeboot-a+.conf", Counter{}, "nodeboot-a+.conf"},
		{"nodeboot-a+3-.conf", Counter{}, "nodeboot-a+3-.conf"},
		{"nodeboot-a+3.CONF", Counter{}, "nodeboot-a+3.CONF"},
		{"nodeboot-a+3x.conf", Counter{}, "nodeboot-a+3x.conf"},
		{"nodeboot-a+9999999999.conf", Counter{}, "nodeboot-a+9999999999.conf"},
	} {
		if got := ParseCounter(c.name); got != c.want {
			t.Errorf("ParseCounter(%q) = %+v, want %+v", c.name, got, c.want)
		}
		if got := NextCounterName(c.name); got != c.next {
			t.Errorf("NextCounterName(%q) = %q, want %q", c.name, got, c.next)
		}
	}
	if !ParseCounter("a+0-3.conf").Out() || ParseCounter("a+1-2.conf").Out() || ParseCounter("a.conf").Out() {
		t.Error("Out")
	}
}

func TestEntryNames(t *testing.T) {
	if EntryName("b", 3) != "nodeboot-b+3.conf" || EntryName("b", 0) != "nodeboot-b.conf" || OutName("b", 2) != "nodeboot-b+0-2.conf" {
		t.Error("names")
	}
	for name, slot := range map[string]string{
		"nodeboot-a.conf": "a", "nodeboot-b+2-1.conf": "b", "nodeboot-b+0-3.conf": "b",
		"other.conf": "", "nodeboot-.conf": "", ".nodeboot-a.conf.tmp": "", "nodeboot-a.conf.tmp": "", "nodeboot-a-b.conf": "",
	} {
		if got := EntrySlot(name); got != slot {
			t.Errorf("EntrySlot(%q) = %q, want %q", name, got, slot)
		}
	}
}

func TestSlotEntry(t *testing.T) {
	b := SlotEntry("b", Slot{Cmdline: "console=ttyS0 root=PARTUUID=x", Title: "hello"}, 7)
	e, err := ParseEntry("nodeboot-b+3.conf", b)
	if err != nil {
		t.Fatal(err)
	}
	if e.Version != "0000000007" || Generation(e) != 7 || e.SortKey != "nodeboot" || e.Linux != KernelPath("b") || e.Title != "hello (slot B)" {
		t.Errorf("%+v", e)
	}
	if Generation(&Entry{}) != 0 {
		t.Error("an entry without a version is generation 0")
	}
}

func TestBaseCmdline(t *testing.T) {
	full := SlotCmdline("console=ttyS0 panic=5", "ABCD-1", true)
	base := BaseCmdline(full)
	if base != "console=ttyS0 panic=5 rootwait init=/init" {
		t.Errorf("BaseCmdline(%q) = %q", full, base)
	}
	if RootPartUUID(full) != "abcd-1" || RootPartUUID(base) != "" {
		t.Error("RootPartUUID")
	}
	// Given to another slot, it boots that slot with the same arguments.
	if got := SlotCmdline(base, "ef-2", true); got != "console=ttyS0 panic=5 rootwait init=/init root=PARTUUID=ef-2 rootfstype=squashfs ro" {
		t.Errorf("the other slot's line: %q", got)
	}
}

func TestSquashfsSize(t *testing.T) {
	f := newFixture(t)
	l := writeImage(t, f.options("disk.img"))
	img, err := os.Open(filepath.Join(f.dir, "disk.img"))
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	got, err := SquashfsSize(img, l.RootA.Offset)
	if err != nil || got != l.RootFSSize {
		t.Errorf("SquashfsSize = %d, %v; Write said %d", got, err, l.RootFSSize)
	}
	if _, err := SquashfsSize(img, l.RootB.Offset); err == nil {
		t.Error("the empty slot B has a squashfs")
	}
}
