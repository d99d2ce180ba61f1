package build

import (
	"strings"
	"testing"

	"github.com/nodeboot/nodeboot/internal/target"
)

// Where the libraries come from, per build host and target: a Mac always
// takes Debian's packages (it has no Linux libraries), a Linux host its own
// for its arch unless --libraries debian forces the packages.
func TestLibrarySource(t *testing.T) {
	amd64, _ := target.Lookup("amd64")
	arm64, _ := target.Lookup("arm64")
	for _, c := range []struct {
		choice, goos, goarch string
		t                    target.Arch
		want, err            string
	}{
		{"", "linux", "amd64", amd64, LibrariesHost, ""},
		{"", "linux", "amd64", arm64, LibrariesDebian, ""},
		{"", "linux", "arm64", arm64, LibrariesHost, ""},
		{"", "darwin", "arm64", arm64, LibrariesDebian, ""},
		{"", "darwin", "arm64", amd64, LibrariesDebian, ""},
		{"", "darwin", "amd64", amd64, LibrariesDebian, ""},
		{"debian", "linux", "amd64", amd64, LibrariesDebian, ""},
		{"debian", "darwin", "arm64", amd64, LibrariesDebian, ""},
		{"host", "linux", "amd64", amd64, LibrariesHost, ""},
		{"host", "darwin", "arm64", arm64, "", "this darwin/arm64 host has no arm64 Linux libraries to put in the image; use --libraries debian"},
		{"host", "linux", "amd64", arm64, "", "this linux/amd64 host has no arm64 Linux libraries"},
		{"apt", "linux", "amd64", amd64, "", `--libraries "apt" (or NODEBOOT_LIBRARIES): use host or debian`},
	} {
		got, err := librarySource(c.choice, c.goos, c.goarch, c.t)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q on %s/%s for %s: err %v, want %q", c.choice, c.goos, c.goarch, c.t.Name, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%q on %s/%s for %s = %q, %v; want %q", c.choice, c.goos, c.goarch, c.t.Name, got, err, c.want)
		}
	}
}
