package clock

import (
	"bytes"
	"fmt"
	"time"
)

// The saved-time file holds one line: the time in RFC 3339 (UTC, seconds),
// e.g. "2026-12-03T15:40:00Z\n". It lives on /data, which survives power
// loss only as far as the file system does: a torn or corrupt file must be
// refused, never half-believed, so the parser is strict.

// maxSavedLen bounds what the parser reads: a valid file is 21 bytes.
const maxSavedLen = 64

// FormatSaved renders t as the saved-time file's contents.
func FormatSaved(t time.Time) []byte {
	return []byte(t.UTC().Truncate(time.Second).Format(time.RFC3339) + "\n")
}

// ParseSaved reads the saved-time file's contents. It refuses anything but
// one RFC 3339 UTC time ending in a newline (a file cut short loses its
// newline), and years outside 2000-9999, which no real clock reading is.
func ParseSaved(b []byte) (time.Time, error) {
	if len(b) > maxSavedLen {
		return time.Time{}, fmt.Errorf("%d bytes, more than a saved time (%d at most)", len(b), maxSavedLen)
	}
	line, ok := bytes.CutSuffix(b, []byte("\n"))
	if !ok {
		return time.Time{}, fmt.Errorf("no final newline (a truncated write?)")
	}
	t, err := time.Parse(time.RFC3339, string(line))
	if err != nil {
		return time.Time{}, fmt.Errorf("not an RFC 3339 time: %w", err)
	}
	if _, off := t.Zone(); off != 0 {
		return time.Time{}, fmt.Errorf("%q is not in UTC", line)
	}
	if y := t.Year(); y < 2000 || y > 9999 {
		return time.Time{}, fmt.Errorf("year %d is not a plausible clock reading", y)
	}
	// One canonical form only, so a file that parses is exactly what
	// FormatSaved writes (fractions of seconds, lower-case "z" refused).
	if !bytes.Equal(FormatSaved(t), b) {
		return time.Time{}, fmt.Errorf("%q is not in the canonical form %q", line, bytes.TrimSuffix(FormatSaved(t), []byte("\n")))
	}
	return t.UTC(), nil
}
