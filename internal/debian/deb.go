package debian

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"pault.ag/go/debian/deb"
)

// ExtractData unpacks a .deb's data.tar (any compression dpkg writes) into
// dir: directories, regular files, symbolic links (targets kept as they
// are: dir is a root tree, read as one) and hard links (copied). Device
// nodes and other types are skipped; a path that would leave dir is an
// error. Owners are not kept (the caller runs unprivileged).
func ExtractData(debPath, dir string) error {
	f, err := os.Open(debPath)
	if err != nil {
		return err
	}
	defer f.Close()
	d, err := deb.Load(f, debPath)
	if err != nil {
		return fmt.Errorf("%s: not a Debian package: %w", debPath, err)
	}
	defer d.Close()
	if err := extractTar(d.Data, dir); err != nil {
		return fmt.Errorf("%s: %w", debPath, err)
	}
	return nil
}

func extractTar(tr *tar.Reader, dir string) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("data.tar: %w", err)
		}
		name := path.Clean(strings.TrimPrefix(h.Name, "./"))
		if name == "." || name == "/" {
			continue
		}
		if path.IsAbs(name) || name == ".." || strings.HasPrefix(name, "../") {
			return fmt.Errorf("data.tar: unsafe path %q", h.Name)
		}
		if err := root.MkdirAll(path.Dir(name), 0o755); err != nil && path.Dir(name) != "." {
			return fmt.Errorf("data.tar: %s: %w", name, err)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(name, 0o755); err != nil {
				return fmt.Errorf("data.tar: %s: %w", name, err)
			}
		case tar.TypeReg:
			if err := writeFile(root, name, tr, h.FileInfo().Mode().Perm()); err != nil {
				return err
			}
		case tar.TypeSymlink:
			_ = root.Remove(name)
			if err := root.Symlink(h.Linkname, name); err != nil {
				return fmt.Errorf("data.tar: %s: %w", name, err)
			}
		case tar.TypeLink:
			src := path.Clean(strings.TrimPrefix(h.Linkname, "./"))
			if path.IsAbs(src) || src == ".." || strings.HasPrefix(src, "../") {
				return fmt.Errorf("data.tar: unsafe link %q", h.Linkname)
			}
			in, err := root.Open(src)
			if err != nil {
				return fmt.Errorf("data.tar: hard link %s → %s: %w", name, src, err)
			}
			err = writeFile(root, name, in, 0o644)
			in.Close()
			if err != nil {
				return err
			}
		}
	}
}

func writeFile(root *os.Root, name string, r io.Reader, mode os.FileMode) error {
	_ = root.Remove(name)
	out, err := root.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode|0o200)
	if err != nil {
		return fmt.Errorf("data.tar: %s: %w", name, err)
	}
	if _, err := io.Copy(out, r); err != nil {
		out.Close()
		return fmt.Errorf("data.tar: %s: %w", name, err)
	}
	return out.Close()
}

// Sysroot returns a directory holding names and their dependency closure
// for arch, unpacked as they would be installed (a root tree for
// internal/elfdeps to resolve against), and the packages in it. The tree
// is cached per set of package versions, so it is built once.
func (a *Archive) Sysroot(ctx context.Context, arch string, names ...string) (string, []*Package, error) {
	ix, err := a.Index(ctx, arch)
	if err != nil {
		return "", nil, err
	}
	pkgs, err := ix.Closure(names...)
	if err != nil {
		return "", nil, err
	}
	cache, err := a.cacheDir()
	if err != nil {
		return "", nil, err
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\n", arch)
	for _, p := range pkgs {
		fmt.Fprintf(h, "%s %s %s\n", p.Name, p.Version, p.SHA256)
	}
	dir := filepath.Join(cache, "sysroot", arch+"-"+hex.EncodeToString(h.Sum(nil))[:16])
	if st, err := os.Stat(dir); err == nil && st.IsDir() {
		return dir, pkgs, nil
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", nil, err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".tmp-")
	if err != nil {
		return "", nil, err
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", nil, err
	}
	for _, p := range pkgs {
		debPath, err := a.Fetch(ctx, p)
		if err != nil {
			return "", nil, err
		}
		if err := ExtractData(debPath, tmp); err != nil {
			return "", nil, err
		}
	}
	if err := os.Rename(tmp, dir); err != nil {
		if st, serr := os.Stat(dir); serr == nil && st.IsDir() {
			return dir, pkgs, nil // another build made it meanwhile
		}
		return "", nil, errors.Join(fmt.Errorf("putting the sysroot at %s", dir), err)
	}
	return dir, pkgs, nil
}
