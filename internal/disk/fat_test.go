package disk

import (
	"strings"
	"testing"
	"time"
)

func TestShortNames(t *testing.T) {
	d := &fatNode{dir: true}
	for _, n := range []string{"BOOTX64.EFI", "loader", "loader.conf", "nodeboot-a+3.conf", "nodeboot-b+3.conf", "a", "vmlinuz", "EFI", ".hidden", "ünï"} {
		d.children = append(d.children, &fatNode{name: n})
	}
	if err := assignShortNames(d); err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		sfn string
		lfn bool
	}{
		"BOOTX64.EFI":       {"BOOTX64 EFI", false},
		"EFI":               {"EFI        ", false},
		"loader":            {"LOADER     ", true},
		"loader.conf":       {"LOADER~1CON", true},
		"nodeboot-a+3.conf": {"NODEBO~1CON", true},
		"nodeboot-b+3.conf": {"NODEBO~2CON", true},
		"a":                 {"A          ", true},
		"vmlinuz":           {"VMLINUZ    ", true},
		".hidden":           {"HIDDEN~1   ", true},
		"ünï":               {"_N_~1      ", true}, // Ü and Ï have no 8.3 form
	}
	for _, c := range d.children {
		w := want[c.name]
		if string(c.sfn[:]) != w.sfn || c.needsLFN() != w.lfn {
			t.Errorf("%q: short name %q (long name %v), want %q (%v)", c.name, c.sfn[:], c.needsLFN(), w.sfn, w.lfn)
		}
	}

	d = &fatNode{dir: true, children: []*fatNode{{name: "A"}, {name: "a"}}}
	if err := assignShortNames(d); err == nil || !strings.Contains(err.Error(), "case") {
		t.Errorf("names differing in case: %v", err)
	}
}

func TestLFNEntries(t *testing.T) {
	sfn := pack83("NODEBO~1", "CON")
	ents := lfnEntries("nodeboot-a+3.conf", sfn) // 17 characters: two entries
	if len(ents) != 2 || ents[0][0] != 0x42 || ents[1][0] != 0x01 {
		t.Fatalf("entries %x", ents)
	}
	for _, e := range ents {
		if e[11] != fatAttrLFN || e[13] != sfnChecksum(sfn) {
			t.Errorf("entry %x: attributes or checksum", e)
		}
	}
	// The second part holds "conf", then a NUL, then 0xFFFF padding.
	if e := ents[0]; e[1] != 'c' || e[7] != 'f' || e[9] != 0 || e[10] != 0 || e[11] != 0x0F || e[14] != 0xFF {
		t.Errorf("last entry %x", e)
	}
}

func TestFATTimestamp(t *testing.T) {
	if ts := fatTimestamp(time.Unix(0, 0)); ts.date != 1<<5|1 || ts.time != 0 {
		t.Errorf("epoch: %+v, want 1980-01-01 00:00", ts)
	}
	ts := fatTimestamp(time.Date(2024, 2, 29, 13, 45, 31, 0, time.UTC))
	if ts.date != 44<<9|2<<5|29 || ts.time != 13<<11|45<<5|15 {
		t.Errorf("2024-02-29 13:45:31: %+v", ts)
	}
}

func TestFATGeometry(t *testing.T) {
	for _, c := range []struct {
		size     int64
		spc      uint32
		errMatch string
	}{
		{128 * MiB, 1, ""},
		{40 * MiB, 1, ""},
		{512 * MiB, 8, ""},
		{16 * MiB, 0, "too small"},
		{300 * MiB, 8, ""},
	} {
		g, err := fatGeometryFor(c.size)
		if c.errMatch != "" {
			if err == nil || !strings.Contains(err.Error(), c.errMatch) {
				t.Errorf("%d MiB: %v, want %q", c.size>>20, err, c.errMatch)
			}
			continue
		}
		if err != nil || g.spc != c.spc {
			t.Errorf("%d MiB: %+v %v", c.size>>20, g, err)
			continue
		}
		need := uint64(fatReserved) + 2*uint64(g.fatSectors) + uint64(g.clusters)*uint64(g.spc)
		if need > uint64(g.total) || uint64(g.fatSectors)*fatSector/4 < uint64(g.clusters)+2 {
			t.Errorf("%d MiB: inconsistent %+v", c.size>>20, g)
		}
	}
}
