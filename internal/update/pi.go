package update

import (
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/nodeboot/nodeboot/internal/disk"
	"github.com/nodeboot/nodeboot/internal/ospayload"
	"github.com/nodeboot/nodeboot/internal/piboot"
	"github.com/nodeboot/nodeboot/internal/tryboot"
)

// A Raspberry Pi node (Config.Pi) runs the same state machine with the
// firmware's tryboot in place of systemd-boot's entries:
//
//   - the payload's kernel section is the slot's boot set (a tar,
//     piboot.ReadBootSet); it streams into a staging file in the state
//     directory, and once every chunk matched the node writes it, with a
//     cmdline.txt naming its own disk's root and data PARTUUIDs, as a new
//     FAT32 file system over the inactive slot's boot partition (raw, never
//     mounted: nothing reads that partition until autoboot.txt's [tryboot]
//     and the tryboot flag both point at it), and the root into the
//     inactive squashfs slot;
//   - arming is tryboot.Switch.Arm (the record, and [tryboot] at the
//     slot), the reboot is RebootIntoTrial's tryboot reboot;
//   - the boot on trial is the one whose slot is not autoboot.txt's [all];
//     committing rewrites autoboot.txt in place; a trial that fails in any
//     way ends with the firmware starting the committed slot (the tryboot
//     flag does not survive a reboot), whose Boot reports it.
//
// The control partition (partition 1, mounted) stands in for the ESP: it
// holds each slot's signed manifest and a failed trial's reason, as the
// ESP does on a PC.

// PiConfig is what a Raspberry Pi node adds to Config.
type PiConfig struct {
	// Switch drives autoboot.txt on the control partition; its State is
	// the state directory.
	Switch *tryboot.Switch
	// Boot is each slot's boot partition ("a", "b").
	Boot map[string]BootPartition
	// Signature is the disk's MBR signature: the PARTUUIDs a slot's
	// cmdline.txt names.
	Signature uint32
	// TryReboot reboots with the tryboot flag set: reboot(2) with
	// LINUX_REBOOT_CMD_RESTART2 and "0 tryboot", which the Pi's firmware
	// driver turns into the flag the bootloader reads once.
	TryReboot Rebooter
}

// BootPartition is a slot's FAT boot partition.
type BootPartition struct {
	Offset int64 // on the disk, for the FAT's hidden sectors
	Size   int64
	// Open opens its block device for writing.
	Open func() (Device, error)
}

// piStagingPath is where a Pi slot's boot set streams in, in the state
// directory: the control partition has room for one boot set beside slot
// A's own only.
func piStagingPath(slot string) string { return "bootset-" + slot + ".tar" }

func (c *Config) checkPi() error {
	p := c.Pi
	if p.Switch == nil || p.TryReboot == nil {
		return errors.New("update: a Pi node needs its tryboot switch and reboot")
	}
	for _, s := range c.Slots {
		if b, ok := p.Boot[s.Name]; !ok || b.Open == nil || b.Size <= 0 {
			return fmt.Errorf("update: slot %s has no boot partition", s.Name)
		}
	}
	return nil
}

// piOnTrial says whether the booted slot is on trial: not the one
// autoboot.txt's [all] boots.
func (u *Updater) piOnTrial() (bool, error) {
	committed, err := u.cfg.Pi.Switch.Committed()
	if err != nil {
		return false, err
	}
	return committed != u.cfg.Booted, nil
}

// piCheck is Check's part for a Pi: the boot set must fit the boot
// partition, and the booted slot must not be on trial.
func (u *Updater) piCheck(m *ospayload.Manifest, other *Slot) error {
	bp := u.cfg.Pi.Boot[other.Name]
	// The FAT's tables and directories take about 1/128 of a partition
	// of 512-byte clusters; what is left must hold the boot set and
	// cmdline.txt.
	if room := bp.Size - bp.Size/64; m.Kernel.Size > room {
		return fmt.Errorf("%w: its boot set (firmware, kernel, device trees) is %s, boot partition %d of slot %s holds %s; make the image smaller, or build and flash a new disk with larger boot partitions, which empties /data",
			ErrTooLarge, mib(m.Kernel.Size), piboot.BootPartition(other.Name), strings.ToUpper(other.Name), mib(room))
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	trial, err := u.piOnTrial()
	if err != nil {
		return err
	}
	if trial {
		return fmt.Errorf("%w: image %s has not been committed yet; wait until it is (or until it rolls back), then send the update again", ErrTrial, u.cfg.Running.ID)
	}
	return nil
}

// piBoot is Boot for a Pi.
func (u *Updater) piBoot() (*BootState, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	booted, other := u.cfg.Booted, u.cfg.other().Name
	bs := &BootState{Slot: booted}
	if err := u.removeStateTemporaries(); err != nil {
		return nil, err
	}
	st, err := u.loadState()
	if err != nil {
		return nil, err
	}
	if rec := u.loadReceive(); rec != nil && rec.Slot == booted {
		if err := u.cfg.State.Remove(receiveFile); err != nil {
			return nil, err
		}
	}
	tb, err := u.cfg.Pi.Switch.Boot(booted)
	if err != nil {
		return nil, fmt.Errorf("the Pi's boot state: %w", err)
	}
	now := u.cfg.Clock.Now().UTC()
	changed := false
	switch o := tb.Settled; {
	case o != nil:
		out := &Outcome{Image: Image{ID: o.Image}, From: u.cfg.Running, OK: o.OK, At: now}
		if img, ok := u.slotImage(o.Slot); ok {
			out.Image = img
		}
		if t := st.Trial; t != nil && t.Slot == o.Slot {
			out.Image, out.From, out.Notes = t.Image, t.From, t.Notes
			if !o.OK {
				out.Reason = t.Reason
			}
		}
		if !o.OK {
			if f := u.slotFailure(o.Slot); out.Reason == "" && f != nil && f.Image.ID == out.Image.ID {
				// The trial gave up with /data on a tmpfs: its reason is
				// on the control partition only.
				out.Reason = f.Reason
				if len(out.Notes) == 0 {
					out.Notes = f.Notes
				}
			}
			if out.Reason == "" {
				out.Reason = o.Reason
				if len(out.Notes) > 0 {
					out.Reason += "; its last note: " + out.Notes[len(out.Notes)-1]
				}
			}
			if st.Failed == nil {
				st.Failed = map[string]Image{}
			}
			st.Failed[o.Slot] = out.Image
		} else {
			delete(st.Failed, o.Slot)
		}
		st.Trial, st.Last, bs.Settled, changed = nil, out, out, true
	case tb.Trial:
		bs.Trial = true
		if st.Trial == nil || st.Trial.Slot != booted {
			// On trial without a record (/data was lost or replaced).
			st.Trial = &trial{Slot: booted, Image: u.cfg.Running, Armed: now}
			if img, ok := u.slotImage(other); ok {
				st.Trial.From = img
			}
			changed = true
		}
	case st.Trial != nil && st.Trial.Slot == booted:
		// Committed (autoboot.txt boots this slot), but the record still
		// says trial: a power cut between the commit and its record.
		o := &Outcome{Image: st.Trial.Image, From: st.Trial.From, OK: true, At: now}
		st.Trial, st.Last, bs.Settled, changed = nil, o, o, true
	case st.Trial != nil && st.Trial.Slot == other:
		// Recorded as armed, but the switch never was: the power went
		// before the update became bootable.
		o := &Outcome{Image: st.Trial.Image, From: st.Trial.From, At: now,
			Reason: "the node restarted before the update was made bootable (a power cut?); nothing changed: send it again"}
		st.Trial, st.Last, bs.Settled, changed = nil, o, o, true
	}
	if changed {
		if err := u.saveState(st); err != nil {
			return nil, err
		}
	}
	for _, s := range u.cfg.Slots {
		if s.Name == booted && bs.Trial {
			continue // this trial may still fail and write it
		}
		if err := u.cfg.ESP.Remove(failurePath(s.Name)); err != nil {
			return nil, fmt.Errorf("removing slot %s's failure record: %w", s.Name, err)
		}
	}
	return bs, nil
}

// removeStateTemporaries removes what interrupted atomic writes left in
// the state directory and the slots' directories on the control partition.
func (u *Updater) removeStateTemporaries() error {
	dirs := []struct {
		d    Dir
		name string
	}{{u.cfg.State, "/"}}
	for _, s := range u.cfg.Slots {
		dirs = append(dirs, struct {
			d    Dir
			name string
		}{u.cfg.ESP, path.Dir(manifestPath(s.Name))})
	}
	for _, d := range dirs {
		names, err := d.d.ReadDir(d.name)
		if err != nil {
			return err
		}
		for _, n := range names {
			if strings.HasPrefix(n, ".") && strings.HasSuffix(n, ".tmp") {
				if err := d.d.Remove(path.Join(d.name, n)); err != nil {
					return fmt.Errorf("removing %s: %w", n, err)
				}
			}
		}
	}
	return nil
}

// piCommit is Commit for a Pi: the one in-place write of autoboot.txt.
func (u *Updater) piCommit() (*Outcome, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	trial, err := u.piOnTrial()
	if err != nil {
		return nil, err
	}
	if !trial {
		return nil, ErrNotTrial
	}
	if _, err := u.cfg.Pi.Switch.Commit(u.cfg.Booted); err != nil {
		return nil, fmt.Errorf("committing slot %s: %w", u.cfg.Booted, err)
	}
	return u.recordCommit()
}

// recordCommit records the booted slot's trial as committed.
func (u *Updater) recordCommit() (*Outcome, error) {
	st, err := u.loadState()
	if err != nil {
		return nil, err
	}
	o := &Outcome{Image: u.cfg.Running, OK: true, At: u.cfg.Clock.Now().UTC()}
	if t := st.Trial; t != nil && t.Slot == u.cfg.Booted {
		o.Image, o.From = t.Image, t.From
	}
	st.Trial, st.Last = nil, o
	delete(st.Failed, u.cfg.Booted)
	if err := u.saveState(st); err != nil {
		return nil, err
	}
	return o, nil
}

// piFail is fail for a Pi: the reason is recorded (state, control
// partition, the switch's record); the plain reboot that follows starts
// the committed slot, the flag being spent.
func (u *Updater) piFail(reason string) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	trial, err := u.piOnTrial()
	if err != nil {
		return err
	}
	if !trial {
		return ErrNotTrial
	}
	st, err := u.recordFailure(reason)
	if err != nil {
		return err
	}
	return u.cfg.Pi.Switch.Fail(u.cfg.Booted, st.Trial.Reason)
}

// recordFailure records why the booted slot's trial failed, in the state
// and on the ESP (or control partition).
func (u *Updater) recordFailure(reason string) (*state, error) {
	st, err := u.loadState()
	if err != nil {
		return nil, err
	}
	if st.Trial == nil || st.Trial.Slot != u.cfg.Booted {
		st.Trial = &trial{Slot: u.cfg.Booted, Image: u.cfg.Running}
	}
	st.Trial.Reason = oneLine(reason)
	if err := u.saveState(st); err != nil {
		return nil, err
	}
	b, err := json.Marshal(failure{Image: st.Trial.Image, Reason: st.Trial.Reason, Notes: st.Trial.Notes})
	if err != nil {
		return nil, err
	}
	if err := u.cfg.ESP.WriteFile(failurePath(u.cfg.Booted), b); err != nil {
		return nil, fmt.Errorf("recording the trial's failure: %w", err)
	}
	return st, nil
}

// piWriteBoot writes the staged boot set of slot, with its cmdline.txt, as
// the slot's boot partition file system, and syncs it.
func (u *Updater) piWriteBoot(m *ospayload.Manifest, slot string) error {
	set, err := u.cfg.State.ReadFile(piStagingPath(slot))
	if err != nil {
		return fmt.Errorf("reading the received boot set: %w", err)
	}
	if int64(len(set)) < m.Kernel.Size {
		return fmt.Errorf("the received boot set is %d bytes, the update's %d: send it again", len(set), m.Kernel.Size)
	}
	files, err := piboot.ReadBootSet(set[:m.Kernel.Size])
	if err != nil {
		// Signed, so made by a nodeboot that wrote a boot set this one
		// cannot use.
		return fmt.Errorf("%w: %v; build the update with this node's nodeboot version", ospayload.ErrInvalid, err)
	}
	set = nil
	cmdline := piboot.Cmdline(m.Cmdline, u.cfg.Pi.Signature, slot, false)
	files = append(files, piboot.BootFile{Name: piboot.CmdlineFile, Data: []byte(cmdline)})
	bp := u.cfg.Pi.Boot[slot]
	dev, err := bp.Open()
	if err != nil {
		return fmt.Errorf("opening slot %s's boot partition: %w", slot, err)
	}
	defer dev.Close()
	// The volume serial is the slot's and the disk's, not the build's: the
	// same on every write of the slot, distinct between slots and disks.
	vol := u.cfg.Pi.Signature ^ uint32(piboot.BootPartition(slot))<<24
	if err := disk.WritePiBootFS(dev, disk.PiBootFS{Size: bp.Size, Offset: bp.Offset, Label: "NODEBOOT-" + strings.ToUpper(slot),
		VolumeID: vol, MTime: m.Built, Files: files}); err != nil {
		return fmt.Errorf("writing slot %s's boot partition: %w", slot, err)
	}
	if err := dev.Sync(); err != nil {
		return fmt.Errorf("writing slot %s's boot partition: %w", slot, err)
	}
	return dev.Close()
}

// piStatus is Status's slot states for a Pi.
func (u *Updater) piSlotState(sl Slot, st *state, rec *receive, committed string, s *Status) SlotStatus {
	ss := SlotStatus{Name: sl.Name, PartUUID: sl.PartUUID, Size: sl.Size, Booted: sl.Name == u.cfg.Booted, State: "empty"}
	if ss.Booted {
		img := u.cfg.Running
		ss.Image = &img
		ss.State = "good"
		if committed != sl.Name {
			ss.State = "trial"
		}
		return ss
	}
	if img, ok := u.slotImage(sl.Name); ok {
		ss.Image = &img
	} else if img, ok := st.Images[sl.Name]; ok {
		ss.Image = &img
	}
	switch img, failed := st.Failed[sl.Name]; {
	case failed:
		ss.State, ss.Image = "failed", &img
	case rec != nil && rec.Slot == sl.Name:
		ss.State, ss.Image = "receiving", nil
		if m, err := ospayload.ParseManifest(rec.Manifest); err == nil {
			img := imageOf(m)
			ss.Image = &img
			s.Receiving = &Progress{Image: img, Done: rec.Done, Total: m.BodySize()}
		}
	case st.Trial != nil && st.Trial.Slot == sl.Name:
		ss.State = "trial" // armed: the next tryboot starts it
	case ss.Image != nil:
		ss.State = "good" // the previous image: what a rollback boots
	}
	return ss
}

// piForget drops what the records say a slot holds, before its first byte
// is overwritten.
func (u *Updater) piForget(st *state, slot string) bool {
	if _, ok := st.Images[slot]; !ok {
		return false
	}
	delete(st.Images, slot)
	return true
}

// piArm makes the fully verified slot bootable for one tryboot, in an
// order where a power cut at any point leaves the committed slot the one
// that boots: the boot partition from the staged boot set, the slot's
// manifest, the trial's record, then the switch (its record, and
// [tryboot] at the slot). Nothing but the tryboot reboot ever starts it.
func (u *Updater) piArm(h *ospayload.Header, slot *Slot) (*Armed, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	m := h.Manifest
	if err := u.piWriteBoot(m, slot.Name); err != nil {
		return nil, err
	}
	sm, err := json.Marshal(slotManifest{Manifest: h.Raw, Sig: h.Sig})
	if err != nil {
		return nil, err
	}
	if err := u.cfg.ESP.WriteFile(manifestPath(slot.Name), sm); err != nil {
		return nil, fmt.Errorf("writing slot %s's manifest: %w", slot.Name, err)
	}
	st, err := u.loadState()
	if err != nil {
		return nil, err
	}
	img := imageOf(m)
	st.Trial = &trial{Slot: slot.Name, Image: img, From: u.cfg.Running, Armed: u.cfg.Clock.Now().UTC()}
	st.setImage(u.cfg.Booted, u.cfg.Running)
	st.setImage(slot.Name, img)
	if err := u.saveState(st); err != nil {
		return nil, err
	}
	if err := u.cfg.Pi.Switch.Arm(slot.Name, img.ID); err != nil {
		return nil, fmt.Errorf("arming slot %s's tryboot: %w", slot.Name, err)
	}
	if err := u.cfg.State.Remove(receiveFile); err != nil {
		return nil, fmt.Errorf("removing the upload's record: %w", err)
	}
	if err := u.cfg.State.Remove(piStagingPath(slot.Name)); err != nil {
		return nil, fmt.Errorf("removing the received boot set: %w", err)
	}
	return &Armed{Slot: slot.Name, Image: img, From: u.cfg.Running, Entry: "autoboot.txt [tryboot] boot_partition=" + fmt.Sprint(piboot.BootPartition(slot.Name))}, nil
}
