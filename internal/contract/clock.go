package contract

import "time"

// ClockStatus is the "clock" object of GET /v1/status (internal/clock,
// issue 16): whether the node's wall clock can be trusted.
type ClockStatus struct {
	// Now is the node's clock when the status was read.
	Now time.Time `json:"now"`
	// Synced is true once an NTP server answered this boot.
	Synced bool `json:"synced"`
	// Source is the last NTP server that answered, or before any answer
	// where the boot set the clock from ("saved time", "build time"), or
	// "" when the clock was already later than both.
	Source string `json:"source,omitempty"`
	// OffsetSeconds is the last NTP correction (server minus node).
	OffsetSeconds float64 `json:"offsetSeconds"`
	// LastSync is when the last NTP answer was applied.
	LastSync time.Time `json:"lastSync,omitzero"`
	// Saved is the time last saved to /data (restored at the next boot).
	Saved time.Time `json:"saved,omitzero"`
	// NTP lists the servers asked, in order; empty with NTPOff.
	NTP    []string `json:"ntp,omitempty"`
	NTPOff bool     `json:"ntpOff,omitempty"`
}

// Console markers of internal/clock, which the e2e tests wait for.
const (
	// ClockSynced starts the line logged at the first NTP answer of a boot:
	// "clock synced: <server> (offset <d>)".
	ClockSynced = "clock synced: "
	// ClockRestored starts the line logged when the boot set the clock
	// forward: "clock: set forward from <t> to the <source> <t>".
	ClockRestored = "clock: set forward from "
)
