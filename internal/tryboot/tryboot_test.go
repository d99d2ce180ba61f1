package tryboot

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nodeboot/nodeboot/internal/piboot"
)

var errPowerCut = errors.New("power cut")

// files is a Control and a State in memory. cutAt > 0 cuts the power at
// that write (counting both kinds): the write does not happen.
type files struct {
	m      map[string][]byte
	writes *int
	cutAt  *int
}

func (f files) write() error {
	*f.writes++
	if *f.cutAt > 0 && *f.writes == *f.cutAt {
		return errPowerCut
	}
	return nil
}

func (f files) ReadFile(name string) ([]byte, error) {
	b, ok := f.m[name]
	if !ok {
		return nil, fs.ErrNotExist
	}
	return append([]byte(nil), b...), nil
}

func (f files) WriteInPlace(name string, data []byte) error {
	old, ok := f.m[name]
	if !ok || len(old) != len(data) {
		return fmt.Errorf("in-place write of %s changes its length (%d → %d)", name, len(old), len(data))
	}
	if err := f.write(); err != nil {
		return err
	}
	f.m[name] = append([]byte(nil), data...)
	return nil
}

func (f files) WriteFile(name string, data []byte) error {
	if err := f.write(); err != nil {
		return err
	}
	f.m[name] = append([]byte(nil), data...)
	return nil
}

func (f files) Remove(name string) error {
	if err := f.write(); err != nil {
		return err
	}
	delete(f.m, name)
	return nil
}

// pi emulates a Raspberry Pi 4's EEPROM bootloader as its documentation
// describes it: it reads autoboot.txt (at most 512 bytes) from partition 1;
// with tryboot_a_b=1 and the tryboot flag set it boots the [tryboot]
// section's boot_partition, else [all]'s; the flag is cleared by every
// boot, and lost with the power. A partition without a boot set does not
// boot. The parser here is the test's own, not piboot's.
type pi struct {
	control  files
	tryFlag  bool
	bootable map[int]string // partition -> the image its boot set starts
}

func (p *pi) powerOn() (slot, image string, err error) {
	flag := p.tryFlag
	p.tryFlag = false
	b := p.control.m["autoboot.txt"]
	if len(b) > 512 {
		b = b[:512]
	}
	part, try, ab := 1, 0, false
	section := "all"
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
		case line == "tryboot_a_b=1":
			ab = true
		case strings.HasPrefix(line, "boot_partition="):
			n, _ := strconv.Atoi(strings.TrimPrefix(line, "boot_partition="))
			if section == "all" {
				part = n
			} else if section == "tryboot" {
				try = n
			}
		}
	}
	if flag && ab && try != 0 {
		part = try
	}
	img, ok := p.bootable[part]
	if !ok {
		return "", "", fmt.Errorf("partition %d holds nothing to boot", part)
	}
	return map[int]string{2: "a", 3: "b"}[part], img, nil
}

// reboot is `reboot "0 tryboot"` when tryboot is set, a plain reboot
// (Fail's, a panic's) otherwise.
func (p *pi) reboot(tryboot bool) { p.tryFlag = tryboot }

// powerCut loses the flag.
func (p *pi) powerCut() { p.tryFlag = false }

func newPi(t *testing.T) (*pi, *Switch, *int) {
	writes, cut := 0, 0
	ctl := files{m: map[string][]byte{"autoboot.txt": piboot.Autoboot{TrybootAB: true, Boot: 2, Try: 3}.Format()}, writes: &writes, cutAt: &cut}
	st := files{m: map[string][]byte{}, writes: &writes, cutAt: &cut}
	p := &pi{control: ctl, bootable: map[int]string{2: "v1"}}
	now := time.Unix(1_800_000_000, 0)
	return p, &Switch{Control: ctl, State: st, Clock: func() time.Time { return now }}, &cut
}

func boot(t *testing.T, p *pi, s *Switch) (*BootState, string) {
	t.Helper()
	slot, img, err := p.powerOn()
	if err != nil {
		t.Fatal(err)
	}
	bs, err := s.Boot(slot)
	if err != nil {
		t.Fatal(err)
	}
	return bs, img
}

// update writes image into the other slot's partitions and arms it.
func update(t *testing.T, p *pi, s *Switch, running, image string) {
	t.Helper()
	next := other(running)
	p.bootable[piboot.BootPartition(next)] = image
	if err := s.Arm(next, image); err != nil {
		t.Fatal(err)
	}
	p.reboot(true)
}

func TestCommit(t *testing.T) {
	p, s, _ := newPi(t)
	bs, img := boot(t, p, s)
	if bs.Slot != "a" || bs.Trial || bs.Settled != nil || img != "v1" {
		t.Fatalf("first boot: %+v %s", bs, img)
	}
	update(t, p, s, "a", "v2")
	bs, img = boot(t, p, s)
	if bs.Slot != "b" || !bs.Trial || img != "v2" {
		t.Fatalf("the tryboot started %+v (%s), want slot B on trial", bs, img)
	}
	o, err := s.Commit("b")
	if err != nil || !o.OK || o.Image != "v2" {
		t.Fatalf("Commit = %v, %v", o, err)
	}
	// Committed: every boot, with or without the flag, is B now.
	p.reboot(false)
	bs, img = boot(t, p, s)
	if bs.Slot != "b" || bs.Trial || bs.Settled != nil || img != "v2" {
		t.Fatalf("after the commit: %+v %s", bs, img)
	}
	p.powerCut()
	if bs, _ = boot(t, p, s); bs.Slot != "b" {
		t.Fatalf("after a power cut: %+v", bs)
	}
	if c, _ := s.Committed(); c != "b" {
		t.Errorf("Committed = %s", c)
	}
}

func TestTrialFails(t *testing.T) {
	for _, c := range []struct {
		name   string
		end    func(p *pi, s *Switch)
		reason string
	}{
		{"given up by the health gate", func(p *pi, s *Switch) {
			if err := s.Fail("b", "app web never became healthy"); err != nil {
				t.Fatal(err)
			}
			p.reboot(false)
		}, "app web never became healthy"},
		{"kernel panic (panic=10 reboots without the flag)", func(p *pi, s *Switch) { p.reboot(false) }, "restarted before the trial was committed"},
		{"power cut", func(p *pi, s *Switch) { p.powerCut() }, "power cut"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, s, _ := newPi(t)
			boot(t, p, s)
			update(t, p, s, "a", "v2")
			if bs, _ := boot(t, p, s); !bs.Trial {
				t.Fatal("no trial")
			}
			c.end(p, s)
			bs, img := boot(t, p, s)
			if bs.Slot != "a" || bs.Trial || img != "v1" {
				t.Fatalf("after the failed trial: %+v %s, want slot A", bs, img)
			}
			if o := bs.Settled; o == nil || o.OK || o.Slot != "b" || !strings.Contains(o.Reason, c.reason) {
				t.Fatalf("Settled = %v, want B failed with %q", bs.Settled, c.reason)
			}
			// Reported once.
			if bs, _ := boot(t, p, s); bs.Settled != nil {
				t.Errorf("the outcome was reported again: %v", bs.Settled)
			}
			// The next update into B works.
			update(t, p, s, "a", "v3")
			if bs, img := boot(t, p, s); bs.Slot != "b" || !bs.Trial || img != "v3" {
				t.Fatalf("retry: %+v %s", bs, img)
			}
		})
	}
}

// TestPowerCuts cuts the power at every write of an update's arm and
// commit, then boots on: the node runs a whole image (old or new) every
// time, and the update's outcome is reported once, never lost.
func TestPowerCuts(t *testing.T) {
	for cutAt := 1; ; cutAt++ {
		p, s, cut := newPi(t)
		boot(t, p, s)
		*cut = cutAt
		armErr := func() error {
			p.bootable[3] = "v2"
			if err := s.Arm("b", "v2"); err != nil {
				return err
			}
			p.reboot(true)
			slot, _, err := p.powerOn()
			if err != nil {
				t.Fatal(err)
			}
			bs, err := s.Boot(slot)
			if err != nil {
				return err
			}
			if !bs.Trial {
				t.Fatalf("cut %d: no trial", cutAt)
			}
			_, err = s.Commit("b")
			return err
		}()
		*cut = 0
		if armErr == nil {
			if cutAt < 3 {
				t.Fatalf("only %d writes", cutAt)
			}
			break // the cut came after the last write
		}
		if !errors.Is(armErr, errPowerCut) {
			t.Fatalf("cut %d: %v", cutAt, armErr)
		}
		p.powerCut()
		bs, img := boot(t, p, s)
		if img != map[string]string{"a": "v1", "b": "v2"}[bs.Slot] || bs.Trial {
			t.Fatalf("cut %d: booted %+v (%s)", cutAt, bs, img)
		}
		if o := bs.Settled; o != nil && o.OK != (bs.Slot == "b") {
			t.Fatalf("cut %d: booted %s but the outcome says %v", cutAt, bs.Slot, o)
		}
		if bs.Slot == "b" && (bs.Settled == nil || !bs.Settled.OK) {
			t.Fatalf("cut %d: B committed but its outcome is %v", cutAt, bs.Settled)
		}
	}
}

func TestCycles(t *testing.T) {
	p, s, _ := newPi(t)
	bs, _ := boot(t, p, s)
	running := bs.Slot
	for i := 0; i < 100; i++ {
		img := fmt.Sprintf("v%d", i+2)
		update(t, p, s, running, img)
		bs, got := boot(t, p, s)
		if !bs.Trial || got != img {
			t.Fatalf("cycle %d: %+v %s", i, bs, got)
		}
		if _, err := s.Commit(bs.Slot); err != nil {
			t.Fatal(err)
		}
		running = bs.Slot
	}
	if running != "a" {
		t.Errorf("after 100 updates slot %s runs, want A", running)
	}
}

func TestRefuses(t *testing.T) {
	p, s, _ := newPi(t)
	boot(t, p, s)
	if err := s.Arm("a", "v2"); err == nil || !strings.Contains(err.Error(), "committed") {
		t.Errorf("Arm of the running slot: %v", err)
	}
	if _, err := s.Commit("a"); err == nil || !strings.Contains(err.Error(), "not on trial") {
		t.Errorf("Commit of the committed slot: %v", err)
	}
	for name, content := range map[string]string{
		"no tryboot_a_b": "[all]\nboot_partition=2\n[tryboot]\nboot_partition=3\n",
		"short":          "[all]\ntryboot_a_b=1\nboot_partition=2\n[tryboot]\nboot_partition=3\n",
		"partition 1":    string(piboot.Autoboot{TrybootAB: true, Boot: 1, Try: 3}.Format()),
	} {
		p.control.m["autoboot.txt"] = []byte(content)
		if err := s.Arm("b", "v2"); !errors.Is(err, ErrAutoboot) {
			t.Errorf("%s: Arm = %v, want ErrAutoboot", name, err)
		}
		if _, err := s.Boot("a"); !errors.Is(err, ErrAutoboot) {
			t.Errorf("%s: Boot = %v, want ErrAutoboot", name, err)
		}
	}
}
