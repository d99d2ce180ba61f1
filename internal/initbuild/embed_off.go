//go:build !nodeboot_embed

package initbuild

import "embed"

// Without the nodeboot_embed tag (go build, go test, go install) nothing is
// embedded and the init is compiled from source, so tests always run the
// current source rather than a binary left over from an earlier make.
var embeddedFiles embed.FS
