// Package tryboot is the Raspberry Pi 4/5's side of A/B OS updates: the
// boot state is autoboot.txt on the first FAT partition, whose [all]
// boot_partition the firmware boots normally and whose [tryboot]
// boot_partition it boots once after `reboot "0 tryboot"` (the flag lives
// in a power-management register: a later reboot, a kernel panic's or a
// power cut, clears it). So a trial that fails in any way ends in the
// committed slot without anything written, and committing is one in-place
// rewrite of autoboot.txt's single sector.
//
// The package knows nothing of mounts or syscalls: the control partition
// is a Control, the node's own records a State, so the tests run it
// against an emulated Pi firmware (tryboot_test.go) with the power cut at
// every write. It is the Pi's counterpart of internal/update's systemd-boot
// entries: Boot, Arm, Commit and Fail have the same meaning and Outcome.
package tryboot

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/nodeboot/nodeboot/internal/piboot"
)

// AutobootFile is autoboot.txt's name on the control partition.
const AutobootFile = "autoboot.txt"

// Control is the control partition (partition 1), mounted.
type Control interface {
	ReadFile(name string) ([]byte, error)
	// WriteInPlace overwrites name from its first byte with data, which
	// has name's length, and makes it durable: the file's directory entry
	// and clusters stay as they are.
	WriteInPlace(name string, data []byte) error
}

// State holds the node's own record of an armed trial (on /data). Its
// WriteFile is atomic.
type State interface {
	ReadFile(name string) ([]byte, error)
	WriteFile(name string, data []byte) error
	Remove(name string) error
}

// recordFile is the armed trial's record in State.
const recordFile = "tryboot.json"

type record struct {
	Slot    string    `json:"slot"`  // the slot armed for a trial
	From    string    `json:"from"`  // the slot committed when it was armed
	Image   string    `json:"image"` // what the armed slot holds
	ArmedAt time.Time `json:"armedAt"`
	Failed  string    `json:"failed,omitempty"` // why PID 1 gave the trial up
}

// Outcome is how a trial ended, as update.Outcome says it for UEFI.
type Outcome struct {
	OK     bool
	Slot   string // the slot that was tried
	Image  string
	Reason string // why it failed
}

func (o *Outcome) String() string {
	if o.OK {
		return fmt.Sprintf("slot %s (%s) committed", strings.ToUpper(o.Slot), o.Image)
	}
	return fmt.Sprintf("slot %s (%s) failed its trial: %s", strings.ToUpper(o.Slot), o.Image, o.Reason)
}

// BootState is what Boot found.
type BootState struct {
	Slot  string // the slot this boot runs
	Trial bool   // a tryboot of an uncommitted slot: commit or fail it
	// Settled is the outcome of a trial that ended before this boot.
	Settled *Outcome
}

// Switch drives autoboot.txt for two slots "a" and "b", whose boot
// partitions piboot numbers.
type Switch struct {
	Control Control
	State   State
	Clock   func() time.Time
}

// ErrAutoboot is wrapped when autoboot.txt is not what nodeboot wrote: the
// switch then changes nothing.
var ErrAutoboot = errors.New("autoboot.txt")

func slotOf(part int) string {
	switch part {
	case piboot.PartBootA:
		return "a"
	case piboot.PartBootB:
		return "b"
	}
	return ""
}

func other(slot string) string {
	if slot == "a" {
		return "b"
	}
	return "a"
}

// read returns autoboot.txt's settings and its length, checked to be an
// A/B switch nodeboot can rewrite in place.
func (s *Switch) read() (piboot.Autoboot, int, error) {
	b, err := s.Control.ReadFile(AutobootFile)
	if err != nil {
		return piboot.Autoboot{}, 0, fmt.Errorf("%w: %w", ErrAutoboot, err)
	}
	a, err := piboot.ParseAutoboot(b)
	if err != nil {
		return a, 0, fmt.Errorf("%w: %w", ErrAutoboot, err)
	}
	if !a.TrybootAB || slotOf(a.Boot) == "" || slotOf(a.Try) == "" || a.Boot == a.Try {
		return a, 0, fmt.Errorf("%w: boots partition %d and tries %d (tryboot_a_b %v); nodeboot writes boot_partition 2 or 3 in each, with tryboot_a_b=1: write the image again", ErrAutoboot, a.Boot, a.Try, a.TrybootAB)
	}
	if len(b) != piboot.AutobootSize {
		return a, 0, fmt.Errorf("%w: %d bytes, not the %d nodeboot writes, so it cannot be rewritten in place", ErrAutoboot, len(b), piboot.AutobootSize)
	}
	return a, len(b), nil
}

// Committed returns the slot every normal boot starts.
func (s *Switch) Committed() (string, error) {
	a, _, err := s.read()
	if err != nil {
		return "", err
	}
	return slotOf(a.Boot), nil
}

func (s *Switch) loadRecord() (*record, error) {
	b, err := s.State.ReadFile(recordFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil || (r.Slot != "a" && r.Slot != "b") {
		// A record nodeboot did not write is dropped: the firmware's
		// state, not this file, says what boots.
		return nil, s.State.Remove(recordFile)
	}
	return &r, nil
}

// Boot tells, early in every boot, which slot runs (booted, from the
// kernel's root=) and whether it is on trial, and settles a trial that
// ended: one the firmware fell back from (never committed: it failed,
// crashed, lost power or was given up by Fail) or one committed just
// before a power cut took the record's removal.
func (s *Switch) Boot(booted string) (*BootState, error) {
	committed, err := s.Committed()
	if err != nil {
		return nil, err
	}
	bs := &BootState{Slot: booted, Trial: booted != committed}
	if bs.Trial {
		return bs, nil
	}
	r, err := s.loadRecord()
	if err != nil || r == nil {
		return bs, err
	}
	o := &Outcome{Slot: r.Slot, Image: r.Image}
	switch {
	case r.Slot == booted:
		o.OK = true
	case r.Failed != "":
		o.Reason = r.Failed
	default:
		o.Reason = "the node restarted before the trial was committed (a crash, a kernel panic, a hang the watchdog reset, or a power cut), so the firmware started slot " + strings.ToUpper(booted) + " again"
	}
	if err := s.State.Remove(recordFile); err != nil {
		return nil, err
	}
	bs.Settled = o
	return bs, nil
}

// Arm makes slot, whose boot and root partitions the caller has written
// and verified, the one the next tryboot starts. It refuses the committed
// slot: overwriting the running system's partitions was the caller's
// mistake.
func (s *Switch) Arm(slot, image string) error {
	a, _, err := s.read()
	if err != nil {
		return err
	}
	if slotOf(a.Boot) == slot {
		return fmt.Errorf("slot %s is the committed one: an update goes into the other slot", strings.ToUpper(slot))
	}
	r := record{Slot: slot, From: slotOf(a.Boot), Image: image, ArmedAt: s.now()}
	b, _ := json.Marshal(r)
	if err := s.State.WriteFile(recordFile, b); err != nil {
		return err
	}
	if slotOf(a.Try) != slot {
		return s.write(piboot.Autoboot{TrybootAB: true, Boot: a.Boot, Try: piboot.BootPartition(slot)})
	}
	return nil
}

// Commit makes the slot on trial (booted) the one every boot starts, and
// the other the next tryboot's. It is one in-place write of autoboot.txt.
func (s *Switch) Commit(booted string) (*Outcome, error) {
	committed, err := s.Committed()
	if err != nil {
		return nil, err
	}
	if booted == committed {
		return nil, fmt.Errorf("slot %s is not on trial: it is already committed", strings.ToUpper(booted))
	}
	if err := s.write(piboot.Autoboot{TrybootAB: true, Boot: piboot.BootPartition(booted), Try: piboot.BootPartition(other(booted))}); err != nil {
		return nil, err
	}
	o := &Outcome{OK: true, Slot: booted}
	if r, err := s.loadRecord(); err == nil && r != nil {
		o.Image = r.Image
	}
	// Committed already: a power cut before this removal is settled by
	// the next Boot as committed.
	if err := s.State.Remove(recordFile); err != nil {
		return o, err
	}
	return o, nil
}

// Fail records why the trial of booted is given up; the caller then
// reboots normally, and the firmware starts the committed slot, whose Boot
// reports the reason.
func (s *Switch) Fail(booted, reason string) error {
	r, err := s.loadRecord()
	if err != nil {
		return err
	}
	if r == nil {
		r = &record{Slot: booted, ArmedAt: s.now()}
	}
	r.Failed = reason
	b, _ := json.Marshal(r)
	return s.State.WriteFile(recordFile, b)
}

func (s *Switch) write(a piboot.Autoboot) error {
	if err := s.Control.WriteInPlace(AutobootFile, a.Format()); err != nil {
		return fmt.Errorf("rewriting %s: %w", AutobootFile, err)
	}
	return nil
}

func (s *Switch) now() time.Time {
	if s.Clock != nil {
		return s.Clock()
	}
	return time.Now()
}
