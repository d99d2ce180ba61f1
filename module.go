// Package nodeboot holds what the CLI needs of the module's own root: its
// go.mod and go.sum, embedded so that a CLI with no source tree and no go
// command still knows the exact versions and h1: hashes it was built with
// (the default kernel is fetched and verified against them).
package nodeboot

import _ "embed"

// GoMod is nodeboot's go.mod.
//
//go:embed go.mod
var GoMod []byte

// GoSum is nodeboot's go.sum.
//
//go:embed go.sum
var GoSum []byte
