package update

import (
	"errors"
	"path"
	"sort"
	"strings"
	"testing"

	"github.com/nodeboot/nodeboot/internal/disk"
)

// sdBoot emulates systemd-boot 252 choosing an entry with no one at the
// keyboard and no EFI variables set, as on a machine whose firmware lost
// them: it reads /loader/entries/*.conf (not dot files, not "auto-"),
// drops entries that are not Linux entries or whose kernel file is missing,
// sorts them as config_entry_compare does (entries out of tries last; sort
// key; version, newest first; file name, newest first; more tries left;
// fewer done), picks the first that matches loader.conf's "default"
// pattern (or the first of all), and counts a try down by renaming it
// (config_entry_bump_counters: +LEFT-DONE to +(LEFT-1)-(DONE+1), LEFT
// never below 0). It returns the chosen entry as the kernel sees it.
func sdBoot(esp Dir) (*disk.Entry, error) {
	names, err := esp.ReadDir(disk.EntriesDir)
	if err != nil {
		return nil, err
	}
	type cand struct {
		e  *disk.Entry
		id string
		c  disk.Counter
	}
	var cs []cand
	for _, n := range names {
		if strings.HasPrefix(n, ".") || strings.HasPrefix(n, "auto-") || !strings.HasSuffix(strings.ToLower(n), ".conf") {
			continue
		}
		b, err := esp.ReadFile(path.Join(disk.EntriesDir, n))
		if err != nil {
			continue
		}
		e, err := disk.ParseEntry(n, b)
		if err != nil {
			continue // no linux line: not an entry systemd-boot adds
		}
		if _, err := esp.ReadFile(e.Linux); err != nil {
			continue // "check existence": an entry without its kernel is not listed
		}
		cs = append(cs, cand{e, strings.ToLower(n), disk.ParseCounter(n)})
	}
	if len(cs) == 0 {
		return nil, errors.New("no bootable entry: the machine does not boot")
	}
	sort.SliceStable(cs, func(i, j int) bool {
		a, b := cs[i], cs[j]
		if a.c.Out() != b.c.Out() {
			return !a.c.Out()
		}
		if (a.e.SortKey == "") != (b.e.SortKey == "") {
			return a.e.SortKey != ""
		}
		if a.e.SortKey != "" {
			if a.e.SortKey != b.e.SortKey {
				return a.e.SortKey < b.e.SortKey
			}
			if r := strverscmp(a.e.Version, b.e.Version); r != 0 {
				return r > 0
			}
		}
		if r := strverscmp(a.id, b.id); r != 0 {
			return r > 0
		}
		if !a.c.Counted || !b.c.Counted {
			return false
		}
		if a.c.Left != b.c.Left {
			return a.c.Left > b.c.Left
		}
		return a.c.Done < b.c.Done
	})
	chosen := cs[0]
	conf, _ := esp.ReadFile("/loader/loader.conf")
	if pat := loaderDefault(conf); pat != "" {
		for _, c := range cs {
			if ok, _ := path.Match(strings.ToLower(pat), c.id); ok {
				chosen = c
				break
			}
		}
	}
	if chosen.c.Counted {
		next := disk.NextCounterName(chosen.e.ID)
		if err := esp.Rename(path.Join(disk.EntriesDir, chosen.e.ID), path.Join(disk.EntriesDir, next)); err != nil {
			return nil, err
		}
	}
	return chosen.e, nil
}

func loaderDefault(b []byte) string {
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(strings.TrimSpace(line), " ")
		if k == "default" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// strverscmp is systemd's strverscmp_improved (src/fundamental/string-util-fundamental.c):
// segments of digits compare as numbers, of letters as strings; '~' sorts
// before everything, '-' before '^' before '.'; a longer string is newer.
func strverscmp(a, b string) int {
	if a == "" || b == "" {
		return strings.Compare(a, b)
	}
	valid := func(c byte) bool {
		return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || strings.IndexByte("~-^.", c) >= 0
	}
	digit := func(c byte) bool { return c >= '0' && c <= '9' }
	alpha := func(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
	at := func(s string, i int) byte {
		if i < len(s) {
			return s[i]
		}
		return 0
	}
	cmp := func(x, y bool) int { // CMP(x, y) of two truth values
		switch {
		case x == y:
			return 0
		case x:
			return 1
		}
		return -1
	}
	i, j := 0, 0
	for {
		for i < len(a) && !valid(a[i]) {
			i++
		}
		for j < len(b) && !valid(b[j]) {
			j++
		}
		for _, p := range []byte{'~'} {
			if at(a, i) == p || at(b, j) == p {
				if r := cmp(at(a, i) != p, at(b, j) != p); r != 0 {
					return r
				}
				i, j = i+1, j+1
			}
		}
		if i >= len(a) || j >= len(b) {
			return strings.Compare(a[min(i, len(a)):], b[min(j, len(b)):])
		}
		for _, p := range []byte{'-', '^', '.'} {
			if at(a, i) == p || at(b, j) == p {
				if r := cmp(at(a, i) != p, at(b, j) != p); r != 0 {
					return r
				}
				i, j = i+1, j+1
			}
		}
		if digit(at(a, i)) || digit(at(b, j)) {
			for at(a, i) == '0' {
				i++
			}
			for at(b, j) == '0' {
				j++
			}
			ii, jj := i, j
			for ii < len(a) && digit(a[ii]) {
				ii++
			}
			for jj < len(b) && digit(b[jj]) {
				jj++
			}
			if ii-i != jj-j {
				if ii-i > jj-j {
					return 1
				}
				return -1
			}
			if r := strings.Compare(a[i:ii], b[j:jj]); r != 0 {
				return r
			}
			i, j = ii, jj
		} else {
			ii, jj := i, j
			for ii < len(a) && alpha(a[ii]) {
				ii++
			}
			for jj < len(b) && alpha(b[jj]) {
				jj++
			}
			n := min(ii-i, jj-j)
			if r := strings.Compare(a[i:i+n], b[j:j+n]); r != 0 {
				return r
			}
			if ii-i != jj-j {
				if ii-i > jj-j {
					return 1
				}
				return -1
			}
			i, j = ii, jj
		}
	}
}

func TestStrverscmp(t *testing.T) {
	// The order systemd's own comment lists, oldest first.
	order := []string{"122.1", "123~rc1-1", "123", "123-a", "123-a.1", "123-1", "123-1.1", "123^post1", "123.a-1", "123.1-1", "123a-1", "124-1"}
	for i := range order {
		for j := range order {
			want := 0
			if i < j {
				want = -1
			} else if i > j {
				want = 1
			}
			if got := strverscmp(order[i], order[j]); got != want {
				t.Errorf("strverscmp(%q, %q) = %d, want %d", order[i], order[j], got, want)
			}
		}
	}
	for _, c := range []struct {
		a, b string
		want int
	}{
		{"9", "10", -1}, {"0000000009", "0000000010", -1}, {"010", "10", 0},
		{"nodeboot-b.conf", "nodeboot-a.conf", 1}, {"nodeboot-a+3.conf", "nodeboot-a.conf", 1},
		{"", "1", -1},
	} {
		if got := strverscmp(c.a, c.b); got != c.want {
			t.Errorf("strverscmp(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
}

// TestSdBoot checks the emulator on the cases the update relies on, and
// that disk.Choose (what `run --boot direct` uses) agrees with it.
func TestSdBoot(t *testing.T) {
	entry := func(slot string, gen uint64) []byte {
		return disk.SlotEntry(slot, disk.Slot{Cmdline: "root=PARTUUID=" + slot, Title: "t"}, gen)
	}
	for _, c := range []struct {
		name    string
		entries map[string][]byte
		want    string // chosen file name
		next    string // its name after the boot
	}{
		{"the newer generation first", map[string][]byte{"nodeboot-a.conf": entry("a", 1), "nodeboot-b+3.conf": entry("b", 2)}, "nodeboot-b+3.conf", "nodeboot-b+2-1.conf"},
		{"numeric versions", map[string][]byte{"nodeboot-a.conf": entry("a", 10), "nodeboot-b.conf": entry("b", 9)}, "nodeboot-a.conf", "nodeboot-a.conf"},
		{"out of tries goes last", map[string][]byte{"nodeboot-a.conf": entry("a", 1), "nodeboot-b+0-3.conf": entry("b", 2)}, "nodeboot-a.conf", "nodeboot-a.conf"},
		{"only out of tries still boots", map[string][]byte{"nodeboot-a+0-3.conf": entry("a", 1)}, "nodeboot-a+0-3.conf", "nodeboot-a+0-4.conf"},
		{"an image's first entry (no version) loses to an update", map[string][]byte{"nodeboot-a.conf": func() []byte {
			_, b := disk.BootEntry("a", disk.Slot{Cmdline: "x"}, 0)
			return b
		}(), "nodeboot-b+3.conf": entry("b", 1)}, "nodeboot-b+3.conf", "nodeboot-b+2-1.conf"},
		{"temporary files are no entries", map[string][]byte{"nodeboot-a.conf": entry("a", 1), ".nodeboot-b+3.conf.tmp": entry("b", 2)}, "nodeboot-a.conf", "nodeboot-a.conf"},
	} {
		t.Run(c.name, func(t *testing.T) {
			esp := newMemDir(&crasher{})
			esp.files["/loader/loader.conf"] = disk.LoaderConf()
			esp.files["/nodeboot/a/vmlinuz"] = []byte("ka")
			esp.files["/nodeboot/b/vmlinuz"] = []byte("kb")
			var parsed []*disk.Entry
			for n, b := range c.entries {
				esp.files["/loader/entries/"+n] = b
				if e, err := disk.ParseEntry(n, b); err == nil && !strings.HasPrefix(n, ".") {
					parsed = append(parsed, e)
				}
			}
			if ch, err := disk.Choose(parsed, "nodeboot-*"); err != nil || ch.ID != c.want {
				t.Errorf("disk.Choose picks %v (%v), the emulator should pick %s", ch, err, c.want)
			}
			e, err := sdBoot(esp)
			if err != nil {
				t.Fatal(err)
			}
			if e.ID != c.want {
				t.Errorf("booted %s, want %s", e.ID, c.want)
			}
			if _, ok := esp.files["/loader/entries/"+c.next]; !ok {
				t.Errorf("after the boot there is no %s: %v", c.next, keys(esp.files))
			}
		})
	}
	// A missing kernel hides its entry.
	esp := newMemDir(&crasher{})
	esp.files["/loader/loader.conf"] = disk.LoaderConf()
	esp.files["/nodeboot/a/vmlinuz"] = []byte("ka")
	esp.files["/loader/entries/nodeboot-a.conf"] = entry("a", 1)
	esp.files["/loader/entries/nodeboot-b+3.conf"] = entry("b", 2)
	if e, _ := sdBoot(esp); e == nil || e.ID != "nodeboot-a.conf" {
		t.Errorf("an entry without its kernel was chosen: %v", e)
	}
}

func keys(m map[string][]byte) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
