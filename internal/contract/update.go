package contract

import "time"

// OS updates (docs/updates.md, docs/api.md "Update the OS").
const (
	// PathUpdate takes a payload (PUT, the body
	// application/vnd.nodeboot.os-update.v1) and answers 202 with
	// UpdateAccepted; the node then reboots into the trial.
	PathUpdate = "/v1/update"
	// PathUpdateOffset takes a payload's header (POST) and answers
	// UpdateOffset: how much of its body the node already holds, verified.
	PathUpdateOffset = "/v1/update/offset"
	// UpdateFromParam is PUT /v1/update's query parameter for a resumed
	// upload: the body offset the stream continues at after its header.
	UpdateFromParam = "from"
	// UpdateDowngradeParam ("1") accepts an image not newer than the
	// running one.
	UpdateDowngradeParam = "allowDowngrade"
	// UpdateMediaType is the payload's content type.
	UpdateMediaType = "application/vnd.nodeboot.os-update.v1"
)

// Console markers of an OS update, logged by PID 1.
const (
	// UpdateTrial begins the line PID 1 logs when it boots an update's
	// trial, followed by the image id.
	UpdateTrial = "OS update trial: "
	// UpdateCommitted begins the line logged when the trial is committed.
	UpdateCommitted = "OS update committed: "
	// UpdateFailed begins the line logged when a trial fails (on the
	// trial, by PID 1's health gate) or is found failed (on the old slot).
	UpdateFailed = "OS update failed: "
)

// UpdateImage names an OS image: its id (the build's image version) and
// its update version (0 for the image a disk was flashed with).
type UpdateImage struct {
	ID      string    `json:"id"`
	Version uint64    `json:"version"`
	Built   time.Time `json:"built"`
}

// UpdateAccepted is the answer of PUT /v1/update: the payload is written
// and verified, the slot is armed, and the node reboots into its trial.
type UpdateAccepted struct {
	Slot  string      `json:"slot"`
	Image UpdateImage `json:"image"`
	From  UpdateImage `json:"from"`
	Entry string      `json:"entry"`
}

// UpdateOffset is the answer of POST /v1/update/offset.
type UpdateOffset struct {
	Offset int64 `json:"offset"`
	Total  int64 `json:"total"`
}

// OSStatus is the "os" object of GET /v1/status: the root slots and the
// last update's outcome.
type OSStatus struct {
	// NoSlots: the node booted from an initramfs and cannot be updated.
	NoSlots   bool            `json:"noSlots,omitempty"`
	Slots     []SlotStatus    `json:"slots,omitempty"`
	Last      *UpdateOutcome  `json:"last,omitempty"`
	Receiving *UpdateProgress `json:"receiving,omitempty"`
	// Error says why the slots could not be read.
	Error string `json:"error,omitempty"`
}

// SlotStatus is one root slot. State is "good", "trial", "failed",
// "receiving" or "empty".
type SlotStatus struct {
	Name      string       `json:"name"`
	PartUUID  string       `json:"partuuid"`
	Size      int64        `json:"size"`
	Booted    bool         `json:"booted"`
	State     string       `json:"state"`
	Image     *UpdateImage `json:"image,omitempty"`
	TriesLeft int          `json:"triesLeft,omitempty"`
}

// UpdateOutcome is how the last update ended.
type UpdateOutcome struct {
	Image  UpdateImage `json:"image"`
	From   UpdateImage `json:"from"`
	OK     bool        `json:"ok"`
	Reason string      `json:"reason,omitempty"`
	Notes  []string    `json:"notes,omitempty"`
	At     time.Time   `json:"at"`
}

// UpdateProgress is an upload in progress (or interrupted).
type UpdateProgress struct {
	Image UpdateImage `json:"image"`
	Done  int64       `json:"done"`
	Total int64       `json:"total"`
}

// Booted returns the booted slot, or nil.
func (s *OSStatus) Booted() *SlotStatus {
	if s == nil {
		return nil
	}
	for i := range s.Slots {
		if s.Slots[i].Booted {
			return &s.Slots[i]
		}
	}
	return nil
}
