package build

import (
	"fmt"
	"os"

	"github.com/nodeboot/nodeboot/internal/target"
)

// Where node's C library and its other shared libraries come from.
const (
	LibrariesHost   = "host"   // the build host's files (a Linux host of the target's arch)
	LibrariesDebian = "debian" // the target's Debian packages, fetched and verified
)

// EnvLibraries is the default of --libraries.
const EnvLibraries = "NODEBOOT_LIBRARIES"

// librarySource decides where the libraries come from for target t on a
// host of goos/goarch, given --libraries (or $NODEBOOT_LIBRARIES) choice:
// by default the host's when it runs the target's Linux binaries, else
// Debian's packages for the target (a Mac, or another arch). "debian"
// forces the packages on a Linux host too, so that path is exercised
// where the tests run, and gives an image that does not depend on the
// build host's distribution.
func librarySource(choice, goos, goarch string, t target.Arch) (string, error) {
	native := goos == "linux" && goarch == t.Name
	switch choice {
	case "":
		if native {
			return LibrariesHost, nil
		}
		return LibrariesDebian, nil
	case LibrariesDebian:
		return LibrariesDebian, nil
	case LibrariesHost:
		if !native {
			return "", fmt.Errorf("--libraries host: this %s/%s host has no %s Linux libraries to put in the image; use --libraries debian (the default here), which takes them from Debian's %s packages", goos, goarch, t.Name, t.DebianArch)
		}
		return LibrariesHost, nil
	}
	return "", fmt.Errorf("--libraries %q (or %s): use host or debian", choice, EnvLibraries)
}

// LibrariesDefault is --libraries' default: $NODEBOOT_LIBRARIES, else
// automatic.
func LibrariesDefault() string { return os.Getenv(EnvLibraries) }
