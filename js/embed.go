// Package js holds the `nodeboot` JavaScript module (js/nodeboot): the
// image build copies it into every image (internal/build), and it is the
// directory packaged for npm.
package js

import "embed"

// Module is the module's files, under "nodeboot/"; its tests are not
// shipped.
//
//go:embed nodeboot/package.json nodeboot/index.js nodeboot/index.mjs nodeboot/index.d.ts nodeboot/README.md
var Module embed.FS
