package update

import (
	"encoding/json"
	"fmt"
	"path"
	"strings"

	"github.com/nodeboot/nodeboot/internal/disk"
)

// BootState is what Boot found.
type BootState struct {
	// NoSlots: the node booted from an initramfs.
	NoSlots bool
	// Slot is the booted slot.
	Slot string
	// Trial says the booted slot is on trial: PID 1 runs the health gate
	// (every app healthy for update.healthySeconds), then calls Commit, or
	// Fail with the reason.
	Trial bool
	// Settled is the outcome this boot settled, if any: the other slot's
	// trial failed (the boot loader fell back to this slot), a commit whose
	// record a power cut interrupted, or an update interrupted before its
	// entry was written. PID 1 logs it; Status reports it as Last.
	Settled *Outcome
}

// Boot runs once at every boot, after the ESP and /data are mounted and
// before the apps start. It reads the ESP's entries and the records and
// settles what the last boots left: the other slot's failed trial is
// recorded with its reason and its entry removed (so it is never booted
// again unless sent again); a duplicate entry an interrupted rename left is
// removed; a booted slot without a fallback is committed at once, since
// there is nothing to roll back to.
func (u *Updater) Boot() (*BootState, error) {
	if len(u.cfg.Slots) == 0 {
		return &BootState{NoSlots: true}, nil
	}
	if u.cfg.Pi != nil {
		return u.piBoot()
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	esp := u.cfg.ESP
	booted, other := u.cfg.Booted, u.cfg.other().Name
	bs := &BootState{Slot: booted}
	ents, err := u.entries()
	if err != nil {
		return nil, err
	}
	// An interrupted rename (FAT has no atomic rename) can leave a slot's
	// entry under two names; keep the first (blessed, else fewest tries).
	for slot, es := range ents {
		for _, e := range es[1:] {
			if err := esp.Remove(path.Join(disk.EntriesDir, e.name)); err != nil {
				return nil, fmt.Errorf("removing a duplicate boot entry: %w", err)
			}
		}
		ents[slot] = es[:1]
	}
	if err := u.removeTemporaries(); err != nil {
		return nil, err
	}
	st, err := u.loadState()
	if err != nil {
		return nil, err
	}
	if rec := u.loadReceive(); rec != nil && rec.Slot == booted {
		// A record of an upload into the slot that is running now can only
		// be stale; following it could overwrite the running system.
		if err := u.cfg.State.Remove(receiveFile); err != nil {
			return nil, err
		}
	}
	now := u.cfg.Clock.Now().UTC()
	changed := false

	// The other slot was on trial, yet this one booted: systemd-boot gave
	// up on it (its tries ran out, or the trial gave up by itself), or
	// someone chose this slot at the boot menu. Either way its trial is
	// over and failed.
	if es := ents[other]; len(es) > 0 && es[0].c.Counted {
		img, _ := u.slotImage(other)
		o := &Outcome{Image: img, From: u.cfg.Running, At: now}
		var notes []string
		if t := st.Trial; t != nil && t.Slot == other {
			o.Image, o.From, o.Notes, o.Reason = t.Image, t.From, t.Notes, t.Reason
			notes = t.Notes
		}
		if f := u.slotFailure(other); o.Reason == "" && f != nil && f.Image.ID == o.Image.ID {
			// The trial gave up with /data on a tmpfs: its reason is on
			// the ESP only.
			o.Reason = f.Reason
			if len(o.Notes) == 0 {
				o.Notes, notes = f.Notes, f.Notes
			}
		}
		switch {
		case o.Reason != "":
		case es[0].c.Left > 0:
			// Tries left, yet not booted: not the counters' doing.
			o.Reason = fmt.Sprintf("the boot loader started slot %s instead of the trial (chosen at the boot menu, or an EFI variable LoaderEntryDefault, set with `bootctl set-default`, overrides the entries' order: remove it)", strings.ToUpper(booted))
		default:
			o.Reason = u.silentFailure(es[0].c, notes)
		}
		if err := esp.Remove(path.Join(disk.EntriesDir, es[0].name)); err != nil {
			return nil, fmt.Errorf("removing the failed slot %s's boot entry: %w", other, err)
		}
		if st.Failed == nil {
			st.Failed = map[string]Image{}
		}
		st.Failed[other] = o.Image
		st.Trial, st.Last, bs.Settled, changed = nil, o, o, true
		ents[other] = nil
	} else if t := st.Trial; t != nil && t.Slot == other {
		// Armed in the records, but its entry was never written (or a new
		// upload into the slot began): the power went before the update
		// became bootable. The verified part of the upload is kept.
		o := &Outcome{Image: t.Image, From: t.From, At: now,
			Reason: "the node restarted before the update was made bootable (a power cut?); nothing changed: send it again, it continues where it stopped"}
		st.Trial, st.Last, bs.Settled, changed = nil, o, o, true
	}

	es := ents[booted]
	switch {
	case len(es) > 0 && es[0].c.Counted:
		hasFallback := len(ents[other]) > 0 && !ents[other][0].c.Counted
		if !hasFallback {
			// Nothing to fall back to (a freshly flashed disk, or the other
			// slot empty or failed): giving up on this slot would only loop.
			if err := u.bless(es[0]); err != nil {
				return nil, err
			}
			if t := st.Trial; t != nil && t.Slot == booted {
				o := &Outcome{Image: t.Image, From: t.From, OK: true, At: now}
				st.Trial, st.Last, bs.Settled, changed = nil, o, o, true
			}
			break
		}
		bs.Trial = true
		if st.Trial == nil || st.Trial.Slot != booted {
			// On trial without a record (/data was lost or replaced): the
			// trial still runs, reported against what the slot holds.
			st.Trial = &trial{Slot: booted, Image: u.cfg.Running, Armed: now}
			if img, ok := u.slotImage(other); ok {
				st.Trial.From = img
			}
			changed = true
		}
	case st.Trial != nil && st.Trial.Slot == booted:
		// Blessed, but the record still says trial: a power cut between
		// Commit's rename and its record.
		o := &Outcome{Image: st.Trial.Image, From: st.Trial.From, OK: true, At: now}
		st.Trial, st.Last, bs.Settled, changed = nil, o, o, true
	}
	if changed {
		if err := u.saveState(st); err != nil {
			return nil, err
		}
	}
	// A failure record is read only while its trial is being settled
	// (above); once recorded in the state, or with the slot written
	// anew, it only takes room.
	for _, s := range u.cfg.Slots {
		if es := ents[s.Name]; len(es) > 0 && es[0].c.Counted && s.Name == booted {
			continue // this trial may still fail and write it
		}
		if err := esp.Remove(failurePath(s.Name)); err != nil {
			return nil, fmt.Errorf("removing slot %s's failure record: %w", s.Name, err)
		}
	}
	return bs, nil
}

// slotFailure reads the failure record a trial left on the ESP (nil if
// none or unreadable: it only explains).
func (u *Updater) slotFailure(slot string) *failure {
	b, err := u.cfg.ESP.ReadFile(failurePath(slot))
	if err != nil {
		return nil
	}
	var f failure
	if json.Unmarshal(b, &f) != nil || f.Reason == "" {
		return nil
	}
	return &f
}

// removeTemporaries removes the temporary files of atomic writes a power
// cut interrupted (".name.tmp"): nothing reads them, they only take room.
func (u *Updater) removeTemporaries() error {
	dirs := []struct {
		d    Dir
		name string
	}{{u.cfg.ESP, disk.EntriesDir}, {u.cfg.State, "/"}}
	for _, s := range u.cfg.Slots {
		dirs = append(dirs, struct {
			d    Dir
			name string
		}{u.cfg.ESP, path.Dir(disk.KernelPath(s.Name))})
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

// silentFailure explains a trial that ended without saying why.
func (u *Updater) silentFailure(c disk.Counter, notes []string) string {
	s := fmt.Sprintf("the trial boot did not come up healthy in %d tries (a kernel panic, PID 1 failing, or a hang the watchdog ended)", max(c.Done, 1))
	if len(notes) > 0 {
		s += "; its last note: " + notes[len(notes)-1]
	}
	return s
}

// bless renames a counted entry to its counter-less name: systemd-boot
// then never counts it down again. It is the commit point of an update.
func (u *Updater) bless(e entry) error {
	if err := u.cfg.ESP.Rename(path.Join(disk.EntriesDir, e.name), path.Join(disk.EntriesDir, disk.EntryName(e.slot, 0))); err != nil {
		return fmt.Errorf("blessing slot %s's boot entry: %w", e.slot, err)
	}
	return nil
}

// Commit ends the booted slot's trial well: PID 1 calls it once every app
// has been healthy for update.healthySeconds. The entry loses its counter
// (the commit point); being the newest generation, it is already the
// default. The other slot stays good, the way back for a manual rollback.
func (u *Updater) Commit() (*Outcome, error) {
	if len(u.cfg.Slots) == 0 {
		return nil, ErrNoSlots
	}
	if u.cfg.Pi != nil {
		return u.piCommit()
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	ents, err := u.entries()
	if err != nil {
		return nil, err
	}
	es := ents[u.cfg.Booted]
	if len(es) == 0 || !es[0].c.Counted {
		return nil, ErrNotTrial
	}
	if err := u.bless(es[0]); err != nil {
		return nil, err
	}
	return u.recordCommit()
}

// Fail ends the booted slot's trial badly, at once: PID 1 calls it when an
// app never became healthy or it cannot run the system. The reason is
// recorded for the old slot to report, and the entry's tries are set to
// none, so the next boot (Fail reboots) runs the old slot without spending
// the remaining tries on an image known to be bad.
func (u *Updater) Fail(reason string) error {
	if len(u.cfg.Slots) == 0 {
		return ErrNoSlots
	}
	if err := u.fail(reason); err != nil {
		return err
	}
	if u.cfg.Reboot == nil {
		return nil
	}
	return u.cfg.Reboot.Reboot("the OS update's trial failed: " + reason)
}

func (u *Updater) fail(reason string) error {
	if u.cfg.Pi != nil {
		return u.piFail(reason)
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	ents, err := u.entries()
	if err != nil {
		return err
	}
	es := ents[u.cfg.Booted]
	if len(es) == 0 || !es[0].c.Counted {
		return ErrNotTrial
	}
	if _, err := u.recordFailure(reason); err != nil {
		return err
	}
	if es[0].c.Left == 0 {
		return nil
	}
	out := disk.OutName(u.cfg.Booted, es[0].c.Done)
	if err := u.cfg.ESP.Rename(path.Join(disk.EntriesDir, es[0].name), path.Join(disk.EntriesDir, out)); err != nil {
		return fmt.Errorf("ending slot %s's tries: %w", u.cfg.Booted, err)
	}
	return nil
}

// Note records a line of the trial's progress ("apps started", "app web:
// port 3000 not answering"); when the trial ends without a reason (a panic,
// a hang), the old slot reports the last one.
func (u *Updater) Note(line string) error {
	if len(u.cfg.Slots) == 0 {
		return nil
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	st, err := u.loadState()
	if err != nil {
		return err
	}
	if st.Trial == nil || st.Trial.Slot != u.cfg.Booted {
		return ErrNotTrial
	}
	st.Trial.Notes = append(st.Trial.Notes, oneLine(line))
	if n := len(st.Trial.Notes); n > maxNotes {
		st.Trial.Notes = st.Trial.Notes[n-maxNotes:]
	}
	return u.saveState(st)
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 512 {
		s = s[:512]
	}
	return s
}
