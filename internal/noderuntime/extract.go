package noderuntime

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// extracted describes what extractPackage wrote.
type extracted struct {
	SHA256  string // of bin/node
	Size    int64
	License bool // LICENSE was present and written
}

// extractPackage reads an npm package tarball (.tgz) and writes its bin/node
// to dir/node and LICENSE to dir/LICENSE. Everything else (headers, man
// pages, docs) is skipped: the image only needs the binary and its notices.
func extractPackage(r io.Reader, dir string) (*extracted, error) {
	gz, err := gzip.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("tarball is not gzip: %w", err)
	}
	defer gz.Close()
	tr := tar.NewReader(gz)
	ex := &extracted{}
	var haveNode bool
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading tarball: %w", err)
		}
		name := packagePath(hdr.Name)
		switch name {
		case "bin/node":
			if hdr.Typeflag != tar.TypeReg {
				return nil, fmt.Errorf("tarball's bin/node is not a regular file (type %q)", hdr.Typeflag)
			}
			if hdr.Size > maxNodeBytes {
				return nil, fmt.Errorf("tarball's bin/node is %d bytes, over the %d limit", hdr.Size, int64(maxNodeBytes))
			}
			sum, n, err := writeFile(filepath.Join(dir, "node"), tr, 0o755)
			if err != nil {
				return nil, err
			}
			ex.SHA256, ex.Size, haveNode = sum, n, true
		case "LICENSE":
			if hdr.Typeflag != tar.TypeReg || hdr.Size > maxNodeBytes {
				continue
			}
			if _, _, err := writeFile(filepath.Join(dir, "LICENSE"), tr, 0o644); err != nil {
				return nil, err
			}
			ex.License = true
		}
	}
	if !haveNode {
		return nil, errors.New("tarball has no package/bin/node; this release is not a prebuilt node binary")
	}
	return ex, nil
}

// packagePath strips the tarball's top directory ("package/" by convention,
// but npm ignores its name, and so do we) and cleans the rest.
func packagePath(name string) string {
	// Names climbing out with ".." are never what a packer produced; ignore
	// them rather than guess what they mean.
	for _, el := range strings.Split(name, "/") {
		if el == ".." {
			return ""
		}
	}
	name = strings.TrimPrefix(path.Clean("/"+name), "/")
	_, rest, ok := strings.Cut(name, "/")
	if !ok {
		return ""
	}
	return rest
}

// writeFile writes r to p, fsyncs it, and returns its sha256 and size. The
// fsync matters because the cache entry is published by a rename right after;
// without it a crash could leave a published but empty binary.
func writeFile(p string, r io.Reader, mode os.FileMode) (string, int64, error) {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return "", 0, err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), r)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", 0, fmt.Errorf("writing %s: %w", p, err)
	}
	// OpenFile's mode is filtered by the umask; the cached binary must be
	// executable regardless.
	if err := os.Chmod(p, mode); err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}
