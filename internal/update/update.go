// Package update is the node's side of OS updates: it receives a signed
// payload (internal/ospayload) into the inactive root slot, verifying each
// chunk before writing it; makes the slot bootable only once everything
// matched (the kernel to the slot's place on the ESP, then a Boot Loader
// Specification entry with systemd-boot boot counting, "+3" tries); and, on
// the boots that follow, commits the new slot once PID 1 found it healthy,
// or records why its trial failed once systemd-boot fell back to the old
// slot. No EFI variable is read or written: the entries' names and
// versions on the ESP are the whole boot state, because real firmware
// loses variables.
//
// The package knows nothing of HTTP, processes or block device paths: the
// ESP and the state directory are Dirs, the inactive slot a Device, so the
// tests run the whole state machine against an emulated systemd-boot and cut
// the power at every write (docs/updates.md).
package update

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nodeboot/nodeboot/internal/disk"
	"github.com/nodeboot/nodeboot/internal/ospayload"
)

// Device is the inactive root slot's block device.
type Device interface {
	WriteAt(p []byte, off int64) (int, error)
	// Sync makes every write before it durable.
	Sync() error
	Close() error
}

// File is a file of a Dir written in place (the kernel while it streams in).
type File interface {
	WriteAt(p []byte, off int64) (int, error)
	Sync() error
	Close() error
}

// Dir is a directory of files: the mounted ESP, or the state directory on
// /data. Names are slash-separated and relative to it. Every change is
// durable when the call returns (the implementation syncs the file and its
// directory), and WriteFile is atomic: a reader sees the old content or the
// new, never a mix.
type Dir interface {
	ReadFile(name string) ([]byte, error)
	// ReadDir lists the names of the regular files in dir (none, without
	// error, if dir does not exist).
	ReadDir(dir string) ([]string, error)
	WriteFile(name string, data []byte) error
	// OpenFile opens name for writing in place, creating it (and its
	// directory) if needed, emptied first if truncate.
	OpenFile(name string, truncate bool) (File, error)
	Rename(oldname, newname string) error
	// Remove removes a file; one that does not exist is no error.
	Remove(name string) error
}

// Clock tells the time for the records.
type Clock interface{ Now() time.Time }

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// Rebooter restarts the machine through the firmware (never kexec: the
// boot counting happens in systemd-boot).
type Rebooter interface{ Reboot(reason string) error }

// Slot is one root slot of the node's disk.
type Slot struct {
	Name     string // "a" or "b", as in the GPT names and the entries
	PartUUID string // lower case; the kernel's root=PARTUUID=
	Size     int64  // bytes
	// Open opens the slot's block device for writing; only the inactive
	// slot is ever opened.
	Open func() (Device, error)
}

// Image says which image a slot holds.
type Image struct {
	ID      string    `json:"id"`
	Version uint64    `json:"version"`
	Built   time.Time `json:"built"`
}

func (i Image) String() string {
	if i.ID == "" {
		return "an unknown image"
	}
	return fmt.Sprintf("%s (version %d)", i.ID, i.Version)
}

// Config is what the updater works on.
type Config struct {
	ESP   Dir
	State Dir
	// Slots are the root slots; none when the node booted from an
	// initramfs, where every update is refused with ErrNoSlots.
	Slots []Slot
	// Booted names the slot the running system booted from (from the
	// kernel command line's root=PARTUUID, SlotFromCmdline).
	Booted string
	// Running is the image the booted root file system holds (baked into
	// it at build time).
	Running Image
	// Arch and Target of this node; a payload for others is refused.
	Arch, Target string
	// Keys are the update keys this node trusts (baked into its image).
	Keys []ed25519.PublicKey
	// Tries is the boot counter of a new entry (disk.BootTries if 0).
	Tries int
	// DiskSize is the whole disk's size, if known: a payload too large for
	// its slot is then refused with the --size of a disk that would fit.
	DiskSize int64
	Clock    Clock
	Reboot   Rebooter
	// Pi makes this a Raspberry Pi node (Target "pi"): the firmware's
	// tryboot switches the slots, each slot has its own boot partition,
	// and ESP is the control partition (pi.go).
	Pi *PiConfig
}

// Errors Install, Check and the trial calls wrap; the API maps them to
// status codes (ErrBusy and ErrTrial: 409; ErrNoSlots: 501 or 409; the
// payload's own faults: 4xx).
var (
	ErrBusy      = errors.New("another OS update is being received")
	ErrNoSlots   = errors.New("this node has no root slots to update")
	ErrTrial     = errors.New("the node is on a trial boot of an update")
	ErrDowngrade = errors.New("the update is not newer than the running image")
	ErrArch      = errors.New("the update is for another kind of node")
	ErrTooLarge  = errors.New("the update does not fit the node's root slot")
	ErrResume    = errors.New("the upload cannot resume there")
	ErrNotTrial  = errors.New("the booted slot is not on trial")
)

// TooLargeError is the error for a payload larger than the slot.
type TooLargeError struct {
	Slot     string
	RootFS   int64 // the payload's root file system
	SlotSize int64
	// DiskSize is the --size of a disk whose slots would hold it (0 if the
	// node's disk size is not known).
	DiskSize int64
}

func (e *TooLargeError) Error() string {
	s := fmt.Sprintf("%v: its root file system is %s (%d bytes), root slot %s holds %s (%d bytes)",
		ErrTooLarge, mib(e.RootFS), e.RootFS, strings.ToUpper(e.Slot), mib(e.SlotSize), e.SlotSize)
	if e.DiskSize > 0 {
		s += fmt.Sprintf("; make the image smaller, or build a new disk with `nodeboot build --format disk --size %dM` (its slots are sized for this root) and flash it, which empties /data", e.DiskSize/disk.MiB)
	} else {
		s += "; make the image smaller, or build and flash a new disk (`nodeboot build --format disk` sizes the slots for its root), which empties /data"
	}
	return s
}

func (e *TooLargeError) Unwrap() error { return ErrTooLarge }

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/float64(disk.MiB)) }

// Outcome is how an update ended.
type Outcome struct {
	Image  Image     `json:"image"`
	From   Image     `json:"from"`
	OK     bool      `json:"ok"`
	Reason string    `json:"reason,omitempty"`
	Notes  []string  `json:"notes,omitempty"` // the trial boot's last notes
	At     time.Time `json:"at"`
}

func (o *Outcome) String() string {
	if o.OK {
		return fmt.Sprintf("updated to %s (was %s)", o.Image.ID, o.From.ID)
	}
	return fmt.Sprintf("update to %s failed: %s", o.Image.ID, o.Reason)
}

// Files in the state directory.
const (
	stateFile   = "state.json"
	receiveFile = "receive.json"
	// maxNotes bounds the trial's notes kept for the failure report.
	maxNotes = 20
)

// state is state.json: what happened, which the ESP's entries cannot say.
type state struct {
	Trial *trial   `json:"trial,omitempty"`
	Last  *Outcome `json:"last,omitempty"`
	// Failed maps a slot to the image whose trial failed there, until the
	// slot is written again.
	Failed map[string]Image `json:"failed,omitempty"`
	// Images maps a slot to the image it held when it last ran or was
	// armed: for a slot whose ESP has no manifest (the image's own slot A).
	Images map[string]Image `json:"images,omitempty"`
}

func (st *state) setImage(slot string, img Image) {
	if st.Images == nil {
		st.Images = map[string]Image{}
	}
	st.Images[slot] = img
}

// trial is an armed or running trial boot.
type trial struct {
	Slot   string    `json:"slot"`
	Image  Image     `json:"image"`
	From   Image     `json:"from"`
	Armed  time.Time `json:"armed"`
	Notes  []string  `json:"notes,omitempty"`
	Reason string    `json:"reason,omitempty"`
}

// receive is receive.json: an upload in progress, so that an interrupted
// one resumes. Done counts body bytes written, synced and verified, from
// the start; a chunk is counted only after its write was synced.
type receive struct {
	Digest   string `json:"digest"`
	Slot     string `json:"slot"`
	Manifest []byte `json:"manifest"`
	Sig      []byte `json:"sig"`
	Done     int64  `json:"done"`
}

// Updater runs the state machine. Its methods are safe for concurrent use;
// one Install runs at a time.
type Updater struct {
	cfg  Config
	busy sync.Mutex // held by Install for its whole stream
	mu   sync.Mutex // guards the records
}

// New returns an updater over cfg. It changes nothing: Boot does the
// start-up work.
func New(cfg Config) (*Updater, error) {
	if cfg.Tries == 0 {
		cfg.Tries = disk.BootTries
	}
	if cfg.Clock == nil {
		cfg.Clock = systemClock{}
	}
	if len(cfg.Slots) > 0 {
		if cfg.ESP == nil || cfg.State == nil {
			return nil, errors.New("update: no ESP or state directory")
		}
		if len(cfg.Slots) != 2 {
			return nil, fmt.Errorf("update: %d root slots, want 2", len(cfg.Slots))
		}
		if cfg.slot(cfg.Booted) == nil {
			return nil, fmt.Errorf("update: the booted slot %q is not one of the disk's root slots", cfg.Booted)
		}
		if cfg.Pi != nil {
			if err := cfg.checkPi(); err != nil {
				return nil, err
			}
		}
	}
	return &Updater{cfg: cfg}, nil
}

func (c *Config) slot(name string) *Slot {
	for i := range c.Slots {
		if c.Slots[i].Name == name {
			return &c.Slots[i]
		}
	}
	return nil
}

func (c *Config) other() *Slot {
	for i := range c.Slots {
		if c.Slots[i].Name != c.Booted {
			return &c.Slots[i]
		}
	}
	return nil
}

// SlotFromCmdline returns the slot whose PARTUUID the kernel command line's
// root= names ("" if none).
func SlotFromCmdline(cmdline string, slots []Slot) string {
	root := disk.RootPartUUID(cmdline)
	for _, s := range slots {
		if root != "" && strings.EqualFold(s.PartUUID, root) {
			return s.Name
		}
	}
	return ""
}

// entry is one of the ESP's nodeboot entries.
type entry struct {
	name string
	slot string
	c    disk.Counter
	gen  uint64
}

// entries reads /loader/entries: each slot's entries, best first.
func (u *Updater) entries() (map[string][]entry, error) {
	names, err := u.cfg.ESP.ReadDir(disk.EntriesDir)
	if err != nil {
		return nil, fmt.Errorf("reading the ESP's boot entries: %w", err)
	}
	out := map[string][]entry{}
	for _, n := range names {
		slot := disk.EntrySlot(n)
		if slot == "" || u.cfg.slot(slot) == nil {
			continue
		}
		e := entry{name: n, slot: slot, c: disk.ParseCounter(n)}
		if b, err := u.cfg.ESP.ReadFile(path.Join(disk.EntriesDir, n)); err == nil {
			if pe, err := disk.ParseEntry(n, b); err == nil {
				e.gen = disk.Generation(pe)
			}
		}
		out[slot] = append(out[slot], e)
	}
	for _, es := range out {
		// Blessed first, then the one with fewest tries left: when an
		// interrupted rename left two names, keep the more cautious one.
		sort.Slice(es, func(i, j int) bool {
			if es[i].c.Counted != es[j].c.Counted {
				return !es[i].c.Counted
			}
			return es[i].c.Left < es[j].c.Left
		})
	}
	return out, nil
}

func (u *Updater) loadState() (*state, error) {
	st := &state{}
	b, err := u.cfg.State.ReadFile(stateFile)
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the update state: %w", err)
	}
	if err := json.Unmarshal(b, st); err != nil {
		// The records only explain; the ESP decides what boots. A damaged
		// record is dropped rather than blocking every later update.
		return &state{}, nil
	}
	return st, nil
}

func (u *Updater) saveState(st *state) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	if err := u.cfg.State.WriteFile(stateFile, b); err != nil {
		return fmt.Errorf("writing the update state: %w", err)
	}
	return nil
}

func (u *Updater) loadReceive() *receive {
	b, err := u.cfg.State.ReadFile(receiveFile)
	if err != nil {
		return nil
	}
	var r receive
	if json.Unmarshal(b, &r) != nil || r.Digest == "" {
		return nil
	}
	return &r
}

func (u *Updater) saveReceive(r *receive) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if err := u.cfg.State.WriteFile(receiveFile, b); err != nil {
		return fmt.Errorf("recording the upload's progress: %w", err)
	}
	return nil
}

// manifestPath is where a slot's signed manifest lives on the ESP, beside
// its kernel: it says what the slot holds even when /data is lost.
func manifestPath(slot string) string { return "/nodeboot/" + slot + "/manifest.json" }

// failurePath is where a trial that gave up writes its reason on the ESP,
// beside the slot's manifest. The state directory holds it too, but a
// trial that runs degraded (a runtime.json it cannot read) has a tmpfs for
// /data: only the ESP carries its reason to the old slot's PID 1.
func failurePath(slot string) string { return "/nodeboot/" + slot + "/failed.json" }

// failure is failed.json.
type failure struct {
	Image  Image    `json:"image"`
	Reason string   `json:"reason"`
	Notes  []string `json:"notes,omitempty"`
}

// stagingPath is where the kernel streams in before it is complete.
func stagingPath(slot string) string { return "/nodeboot/" + slot + "/vmlinuz.new" }

type slotManifest struct {
	Manifest json.RawMessage `json:"manifest"`
	Sig      []byte          `json:"signature"`
}

// slotImage reads what the ESP says a slot holds.
func (u *Updater) slotImage(slot string) (Image, bool) {
	b, err := u.cfg.ESP.ReadFile(manifestPath(slot))
	if err != nil {
		return Image{}, false
	}
	var sm slotManifest
	if json.Unmarshal(b, &sm) != nil {
		return Image{}, false
	}
	m, err := ospayload.ParseManifest(sm.Manifest)
	if err != nil {
		return Image{}, false
	}
	return imageOf(m), true
}

func imageOf(m *ospayload.Manifest) Image {
	return Image{ID: m.Image, Version: m.Version, Built: m.Built}
}

// SlotStatus is one slot as status shows it.
type SlotStatus struct {
	Name     string `json:"name"`
	PartUUID string `json:"partuuid"`
	Size     int64  `json:"size"`
	Booted   bool   `json:"booted"`
	// State: "good" (boots when chosen; the booted slot once committed),
	// "trial" (counted: being tried, or armed for the next boot), "failed"
	// (its trial failed; not booted again unless sent again), "receiving"
	// (an upload is in progress or was interrupted), "empty".
	State string `json:"state"`
	Image *Image `json:"image,omitempty"`
	// TriesLeft is the boot counter's tries, for a slot on trial.
	TriesLeft int `json:"triesLeft,omitempty"`
}

// Progress is an upload in progress.
type Progress struct {
	Image Image `json:"image"`
	Done  int64 `json:"done"`
	Total int64 `json:"total"`
}

// Status is what status, the status page and /metrics show.
type Status struct {
	NoSlots   bool         `json:"noSlots,omitempty"`
	Slots     []SlotStatus `json:"slots,omitempty"`
	Last      *Outcome     `json:"last,omitempty"`
	Receiving *Progress    `json:"receiving,omitempty"`
}

// Status reads the slots' state.
func (u *Updater) Status() (*Status, error) {
	if len(u.cfg.Slots) == 0 {
		return &Status{NoSlots: true}, nil
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	ents, err := u.entries()
	if err != nil {
		return nil, err
	}
	st, err := u.loadState()
	if err != nil {
		return nil, err
	}
	rec := u.loadReceive()
	s := &Status{Last: st.Last}
	if u.cfg.Pi != nil {
		committed, err := u.cfg.Pi.Switch.Committed()
		if err != nil {
			return nil, err
		}
		for _, sl := range u.cfg.Slots {
			s.Slots = append(s.Slots, u.piSlotState(sl, st, rec, committed, s))
		}
		return s, nil
	}
	for _, sl := range u.cfg.Slots {
		ss := SlotStatus{Name: sl.Name, PartUUID: sl.PartUUID, Size: sl.Size, Booted: sl.Name == u.cfg.Booted, State: "empty"}
		if ss.Booted {
			img := u.cfg.Running
			ss.Image = &img
		} else if img, ok := u.slotImage(sl.Name); ok {
			ss.Image = &img
		} else if img, ok := st.Images[sl.Name]; ok {
			ss.Image = &img
		}
		switch es := ents[sl.Name]; {
		case len(es) > 0 && es[0].c.Counted:
			ss.State, ss.TriesLeft = "trial", es[0].c.Left
		case len(es) > 0:
			ss.State = "good"
		case ss.Booted:
			ss.State = "good" // booted without an entry (a direct kernel boot)
		default:
			if img, ok := st.Failed[sl.Name]; ok {
				ss.State, ss.Image = "failed", &img
			} else if rec != nil && rec.Slot == sl.Name {
				ss.State = "receiving"
				if m, err := ospayload.ParseManifest(rec.Manifest); err == nil {
					img := imageOf(m)
					ss.Image = &img
					s.Receiving = &Progress{Image: img, Done: rec.Done, Total: m.BodySize()}
				}
			} else {
				ss.Image = nil // a kernel or manifest without an entry boots nothing
			}
		}
		s.Slots = append(s.Slots, ss)
	}
	return s, nil
}
