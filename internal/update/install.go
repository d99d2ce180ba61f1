package update

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"

	"github.com/nodeboot/nodeboot/internal/disk"
	"github.com/nodeboot/nodeboot/internal/ospayload"
)

// InstallOptions tune one Install.
type InstallOptions struct {
	// AllowDowngrade accepts a version not newer than the running one.
	AllowDowngrade bool
	// From is the body offset the stream continues at after its header:
	// 0 for a whole payload, or at most what Offset said for a resumed one.
	From int64
	// Progress, if set, is called after each chunk is written: body bytes
	// verified and written so far, and the body's size.
	Progress func(done, total int64)
}

// Armed is an update made bootable: the next boot is its trial.
type Armed struct {
	Slot  string
	Image Image
	From  Image
	// Entry is the boot entry's file name on the ESP.
	Entry string
}

// Check says whether a payload with header h would be accepted, without
// writing anything: the signature, arch and target, version, size, and the
// node's own state (slots, a trial in progress). Install runs it first.
func (u *Updater) Check(h *ospayload.Header, o InstallOptions) error {
	c := &u.cfg
	if len(c.Slots) == 0 {
		return fmt.Errorf("%w: it booted from an initramfs, which has none; an OS update needs a node flashed with a disk image (`nodeboot build --format disk`, then `nodeboot write`)", ErrNoSlots)
	}
	m := h.Manifest
	if _, err := h.Verify(c.Keys); err != nil {
		return err
	}
	if m.Arch != c.Arch || m.Target != c.Target {
		return fmt.Errorf("%w: the update is for %s/%s, this node is %s/%s; build it for this node's arch and target",
			ErrArch, m.Arch, m.Target, c.Arch, c.Target)
	}
	if m.Image == c.Running.ID && !o.AllowDowngrade {
		return fmt.Errorf("%w: the node already runs image %s", ErrDowngrade, m.Image)
	}
	if m.Version <= c.Running.Version && !o.AllowDowngrade {
		return fmt.Errorf("%w: image %s is version %d, the node runs %s: send a newer build, or allow the downgrade (--allow-downgrade)",
			ErrDowngrade, m.Image, m.Version, c.Running)
	}
	other := c.other()
	if m.RootFS.Size > other.Size {
		e := &TooLargeError{Slot: other.Name, RootFS: m.RootFS.Size, SlotSize: other.Size}
		if c.DiskSize > 0 {
			// What disk.Write gives each slot for this root, and the disk
			// that has room for two of them beside what this one has.
			need := max((2*m.RootFS.Size+64*disk.MiB-1)/(64*disk.MiB)*(64*disk.MiB), disk.MinRootSize)
			e.DiskSize = (c.DiskSize + 2*(need-other.Size) + disk.MiB - 1) / disk.MiB * disk.MiB
		}
		return e
	}
	if c.Pi != nil {
		return u.piCheck(m, other)
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	ents, err := u.entries()
	if err != nil {
		return err
	}
	if es := ents[c.Booted]; len(es) > 0 && es[0].c.Counted {
		return fmt.Errorf("%w: image %s has not been committed yet; wait until it is (or until it rolls back), then send the update again", ErrTrial, c.Running.ID)
	}
	return nil
}

// Offset is how much of the payload with header h the node already holds,
// verified: a resumed upload sends the header and then the body from here.
func (u *Updater) Offset(h *ospayload.Header) int64 {
	if len(u.cfg.Slots) == 0 {
		return 0
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if r := u.loadReceive(); r != nil && r.Digest == h.Digest() && r.Slot == u.cfg.other().Name {
		return r.Done
	}
	return 0
}

// Install receives a payload stream from r (the header, then the body from
// o.From) into the inactive slot and arms its trial boot. Each chunk is
// verified against the signed manifest before it is written; the slot's
// old entry goes before its first byte is overwritten; the new entry is
// written only after every chunk matched, the kernel is in place and the
// record of the trial is durable. On error nothing bootable has changed,
// and what was verified so far is kept for a resumed upload. The caller
// reboots (RebootIntoTrial) once it has answered.
func (u *Updater) Install(ctx context.Context, r io.Reader, o InstallOptions) (*Armed, error) {
	if !u.busy.TryLock() {
		return nil, fmt.Errorf("%w: wait until it is done (`nodeboot status` shows its progress), then send this one again", ErrBusy)
	}
	defer u.busy.Unlock()
	if len(u.cfg.Slots) == 0 {
		return nil, u.Check(nil, o)
	}
	h, err := ospayload.ReadHeader(r)
	if err != nil {
		return nil, err
	}
	if err := u.Check(h, o); err != nil {
		return nil, err
	}
	m := h.Manifest
	slot := u.cfg.other()

	u.mu.Lock()
	rec := u.loadReceive()
	u.mu.Unlock()
	resume := rec != nil && rec.Digest == h.Digest() && rec.Slot == slot.Name
	have := int64(0)
	if resume {
		have = rec.Done
	}
	if o.From > have {
		return nil, fmt.Errorf("%w: the stream continues at byte %d of the body, the node holds %d; continue from %d", ErrResume, o.From, have, have)
	}
	cr, err := ospayload.NewChunkReader(r, m, o.From)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrResume, err)
	}

	w := &slotWriter{u: u, slot: slot, h: h, rec: rec, resume: resume}
	defer w.close()
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		c, err := cr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if err := w.write(c); err != nil {
			return nil, err
		}
		if o.Progress != nil {
			o.Progress(w.rec.Done, m.BodySize())
		}
	}
	if w.rec == nil || w.rec.Done != m.BodySize() {
		// Only possible when resuming at the end without a record of it.
		return nil, fmt.Errorf("%w: the node holds %d of %d bytes of this payload; send it from there", ErrResume, have, m.BodySize())
	}
	if err := w.close(); err != nil {
		return nil, err
	}
	if u.cfg.Pi != nil {
		return u.piArm(h, slot)
	}
	return u.arm(h, slot)
}

// slotWriter writes verified chunks: the kernel to its staging file on the
// ESP, the root file system to the slot's device.
type slotWriter struct {
	u      *Updater
	slot   *Slot
	h      *ospayload.Header
	rec    *receive
	resume bool
	kernel File
	dev    Device
	opened bool
}

// open prepares the slot, only once the first chunk has been verified, so
// that a payload refused at once changes nothing at all.
func (w *slotWriter) open() error {
	u, esp := w.u, w.u.cfg.ESP
	u.mu.Lock()
	defer u.mu.Unlock()
	// The slot stops being bootable before its first byte is overwritten:
	// its entry goes first (it may be the previous, good image, kept for
	// a manual rollback until now, or a failed trial's).
	ents, err := u.entries()
	if err != nil {
		return err
	}
	for _, e := range ents[w.slot.Name] {
		if err := esp.Remove(path.Join(disk.EntriesDir, e.name)); err != nil {
			return fmt.Errorf("removing slot %s's old boot entry: %w", w.slot.Name, err)
		}
	}
	if !w.resume {
		if err := esp.Remove(manifestPath(w.slot.Name)); err != nil {
			return fmt.Errorf("removing slot %s's old manifest: %w", w.slot.Name, err)
		}
		if err := esp.Remove(failurePath(w.slot.Name)); err != nil {
			return fmt.Errorf("removing slot %s's old failure record: %w", w.slot.Name, err)
		}
		st, err := u.loadState()
		if err != nil {
			return err
		}
		_, failed := st.Failed[w.slot.Name]
		armed := st.Trial != nil && st.Trial.Slot == w.slot.Name
		// A Pi slot's image is known from the records only: the slot
		// holds it no more.
		forgot := u.cfg.Pi != nil && u.piForget(st, w.slot.Name)
		if failed || armed || forgot {
			// The slot no longer holds that image: a failure or an armed
			// trial recorded for it is over.
			delete(st.Failed, w.slot.Name)
			if armed {
				st.Trial = nil
			}
			if err := u.saveState(st); err != nil {
				return err
			}
		}
		w.rec = &receive{Digest: w.h.Digest(), Slot: w.slot.Name, Manifest: w.h.Raw, Sig: w.h.Sig}
		if err := u.saveReceive(w.rec); err != nil {
			return err
		}
	}
	if u.cfg.Pi != nil {
		if w.kernel, err = u.cfg.State.OpenFile(piStagingPath(w.slot.Name), !w.resume); err != nil {
			return fmt.Errorf("opening the boot set's place in the state directory: %w", err)
		}
	} else if w.kernel, err = esp.OpenFile(stagingPath(w.slot.Name), !w.resume); err != nil {
		return fmt.Errorf("opening the kernel's place on the ESP: %w", err)
	}
	if w.dev, err = w.slot.Open(); err != nil {
		return fmt.Errorf("opening root slot %s: %w", w.slot.Name, err)
	}
	w.opened = true
	return nil
}

func (w *slotWriter) write(c *ospayload.Chunk) error {
	if !w.opened {
		if err := w.open(); err != nil {
			return err
		}
	}
	dst, what := File(w.kernel), "the kernel on the ESP"
	if c.RootFS {
		dst, what = w.dev, "root slot "+w.slot.Name
	}
	if _, err := dst.WriteAt(c.Data, c.Offset); err != nil {
		return fmt.Errorf("writing %s: %w", what, err)
	}
	if err := dst.Sync(); err != nil {
		return fmt.Errorf("writing %s: %w", what, err)
	}
	// Counted only once durable: a resumed upload never skips a chunk
	// that a power cut lost.
	end := w.h.Manifest.BodyOffset(c.RootFS, c.Index) + int64(len(c.Data))
	if end > w.rec.Done {
		w.rec.Done = end
		w.u.mu.Lock()
		err := w.u.saveReceive(w.rec)
		w.u.mu.Unlock()
		return err
	}
	return nil
}

func (w *slotWriter) close() error {
	var errs []error
	if w.kernel != nil {
		errs = append(errs, w.kernel.Close())
		w.kernel = nil
	}
	if w.dev != nil {
		errs = append(errs, w.dev.Close())
		w.dev = nil
	}
	return errors.Join(errs...)
}

// arm makes the fully verified slot bootable, in an order where a power cut
// at any point leaves the old slot the one that boots, or the new one
// complete: the kernel into place, the slot's manifest, the trial's record,
// and last the entry, whose rename is the moment the slot becomes bootable.
func (u *Updater) arm(h *ospayload.Header, slot *Slot) (*Armed, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	esp, m := u.cfg.ESP, h.Manifest
	// The staging file is gone only if this rename already happened, in an
	// arm that a power cut interrupted: the kernel is in place then.
	names, err := esp.ReadDir(path.Dir(stagingPath(slot.Name)))
	if err != nil {
		return nil, fmt.Errorf("reading the new kernel's place: %w", err)
	}
	if slices.Contains(names, path.Base(stagingPath(slot.Name))) {
		if err := esp.Rename(stagingPath(slot.Name), disk.KernelPath(slot.Name)); err != nil {
			return nil, fmt.Errorf("putting the new kernel in place: %w", err)
		}
	}
	sm, err := json.Marshal(slotManifest{Manifest: h.Raw, Sig: h.Sig})
	if err != nil {
		return nil, err
	}
	if err := esp.WriteFile(manifestPath(slot.Name), sm); err != nil {
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
	ents, err := u.entries()
	if err != nil {
		return nil, err
	}
	var gen uint64
	for _, es := range ents {
		for _, e := range es {
			gen = max(gen, e.gen)
		}
	}
	title := m.Title
	if title == "" {
		title = "nodeboot"
	}
	name := disk.EntryName(slot.Name, u.cfg.Tries)
	entry := disk.SlotEntry(slot.Name, disk.Slot{
		// init=/init unless the image names its own (SlotCmdline adds it
		// only when the line has no init=).
		Cmdline: disk.SlotCmdline(m.Cmdline, slot.PartUUID, true),
		Title:   title + " " + m.Image,
	}, gen+1)
	if err := esp.WriteFile(path.Join(disk.EntriesDir, name), entry); err != nil {
		return nil, fmt.Errorf("writing slot %s's boot entry: %w", slot.Name, err)
	}
	// The upload is over; its record would only make a later payload with
	// the same digest skip the writes the slot now needs again.
	if err := u.cfg.State.Remove(receiveFile); err != nil {
		return nil, fmt.Errorf("removing the upload's record: %w", err)
	}
	return &Armed{Slot: slot.Name, Image: img, From: u.cfg.Running, Entry: name}, nil
}

// RebootIntoTrial reboots into an armed trial (on a Pi, with the tryboot
// flag: the one boot of the armed slot).
func (u *Updater) RebootIntoTrial() error {
	if u.cfg.Pi != nil {
		return u.cfg.Pi.TryReboot.Reboot("trial boot of an OS update (tryboot)")
	}
	if u.cfg.Reboot == nil {
		return errors.New("update: no way to reboot")
	}
	return u.cfg.Reboot.Reboot("trial boot of an OS update")
}
