package kernelbuild

import (
	"strings"
	"testing"
)

// FuzzParseConfig: the .config reader takes whatever the kernel's kconfig
// wrote; it must never panic, and what it accepts must survive a merge and
// compare equal to itself.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte("CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=\"x\"\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		opts, err := ParseConfig("f", b)
		if err != nil {
			return
		}
		var text strings.Builder
		for _, o := range opts {
			if o.Value == "n" {
				text.WriteString("# " + o.Name + " is not set\n")
			} else {
				text.WriteString(o.Name + "=" + o.Value + "\n")
			}
		}
		c, err := Merge([]Fragment{{"f", []byte(text.String())}})
		if err != nil {
			// Two lines setting one option differently are refused.
			return
		}
		if d, err := c.Dropped(c.Text); err != nil || len(d) != 0 {
			t.Fatalf("a config compared with itself: %v, %v", d, err)
		}
	})
}
