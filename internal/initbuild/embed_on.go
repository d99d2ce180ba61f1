//go:build nodeboot_embed

package initbuild

import "embed"

// The directory always holds its README, so this compiles on a fresh clone
// too; the Makefile fills it with nodeboot-init-<arch> before building.
//
//go:embed embedded
var embeddedFiles embed.FS
