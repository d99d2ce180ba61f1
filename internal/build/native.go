package build

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/nodeboot/nodeboot/internal/elfdeps"
	"github.com/nodeboot/nodeboot/internal/spec"
)

// nativeClosure resolves the shared libraries of node and of every app's
// prebuilt native files: each *.node addon and each shared library shipped
// inside node_modules, so that a library sharp's addon reaches through
// RUNPATH $ORIGIN, or one a package dlopens, is checked as well. A missing
// library is an error naming the package and the file. Libraries found
// inside an app dir are the app's own files and stay there (the loader
// finds them through $ORIGIN on the node as on the host); only the others
// are returned for the image's system dirs.
func nativeClosure(proj *spec.Project, nodePath, arch, sysroot string, logf func(string, ...any)) (*elfdeps.Closure, error) {
	bins := []string{nodePath}
	for _, a := range proj.Apps {
		var rels []string
		for _, f := range a.Files {
			if f.Mode.IsRegular() {
				rels = append(rels, f.Rel)
			}
		}
		use, skipped, err := elfdeps.SelectNative(a.SrcDir, rels, arch)
		if err != nil {
			return nil, fmt.Errorf("app %s: %w", a.Name, err)
		}
		if len(skipped) > 0 {
			logf("app %s: %d files named like native code left as plain files (node on %s never loads them; first: %s: %s)",
				a.Name, len(skipped), arch, skipped[0].Rel, skipped[0].Why)
		}
		for _, n := range use {
			bins = append(bins, filepath.Join(a.SrcDir, filepath.FromSlash(n.Rel)))
		}
	}
	// sysroot: the target's Debian packages, as the image's loader will
	// see them ("" = the host, which runs the target's binaries).
	closure, err := elfdeps.Resolve(bins, elfdeps.Options{Root: sysroot})
	if err != nil {
		var miss *elfdeps.MissingLibraryError
		if errors.As(err, &miss) {
			for _, a := range proj.Apps {
				if _, ok := elfdeps.RelIn(a.SrcDir, miss.NeededBy); ok {
					return nil, fmt.Errorf("app %s: %w", a.Name, elfdeps.InPackage(a.SrcDir, miss.NeededBy, err))
				}
			}
		}
		return nil, err
	}
	files := closure.Files[:0]
	for _, f := range closure.Files {
		own, err := appOwned(proj, f)
		if err != nil {
			return nil, err
		}
		if !own {
			files = append(files, f)
		}
	}
	closure.Files = files
	return closure, nil
}

// appOwned reports whether a library of the closure is one of an app's
// own files, and refuses one that lies in the app dir but is left out of
// the image (.nodebootignore): the loader would not find it on the node.
func appOwned(proj *spec.Project, f elfdeps.File) (bool, error) {
	for _, a := range proj.Apps {
		rel, ok := elfdeps.RelIn(a.SrcDir, f.Target)
		if !ok {
			continue
		}
		for _, af := range a.Files {
			if af.Rel == rel {
				return true, nil
			}
		}
		return false, fmt.Errorf("app %s: %s (%s) needs the shared library %s, which the app ships but %s leaves out of the image: stop ignoring it",
			a.Name, elfdeps.PackageOf(rel), f.NeededBy, rel, spec.IgnoreFile)
	}
	return false, nil
}
