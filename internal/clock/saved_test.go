package clock

import (
	"bytes"
	"testing"
	"time"
)

func TestParseSaved(t *testing.T) {
	good := time.Date(2026, 12, 3, 15, 40, 0, 0, time.UTC)
	if got, err := ParseSaved(FormatSaved(good)); err != nil || !got.Equal(good) {
		t.Fatalf("round trip: %v, %v", got, err)
	}
	for _, bad := range []string{
		"", "\n", "2026-12-03T15:40:00Z", "2026-12-03T15:40:00Z\n\n", "2026-12-03T15:40:00.5Z\n",
		"2026-12-03T15:40:00+01:00\n", "1970-01-01T00:00:00Z\n", "2026-12-03t15:40:00z\n",
		"2026-12-03T15:40:00Z\x00\n", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n",
	} {
		if got, err := ParseSaved([]byte(bad)); err == nil {
			t.Errorf("ParseSaved(%q) = %v, want an error", bad, got)
		}
	}
}

// FuzzParseSaved: the saved file is read from /data, which a power cut or
// a broken card can fill with anything. A file that parses must be exactly
// what FormatSaved writes for that time.
func FuzzParseSaved(f *testing.F) {
	f.Add([]byte("2026-12-03T15:40:00Z\n"))
	f.Add([]byte("2026-12-03T15:40"))
	f.Add([]byte("9999-12-31T23:59:59Z\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := ParseSaved(b)
		if err != nil {
			return
		}
		if !bytes.Equal(FormatSaved(got), b) {
			t.Fatalf("%q parsed to %v, which formats as %q", b, got, FormatSaved(got))
		}
		if got.Before(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)) {
			t.Fatalf("%q parsed to an implausible %v", b, got)
		}
	})
}
