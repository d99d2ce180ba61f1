package spec

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"unicode/utf16"

	"github.com/nodeboot/nodeboot/internal/gitignore"
)

// IgnoreFile lists, in .gitignore syntax and with git's exact meaning
// (internal/gitignore; only this one file, at the app dir's top), paths of
// the app directory that do not go into the image.
const IgnoreFile = ".nodebootignore"

// File is one entry of an app's tree as it goes into the image.
type File struct {
	Rel  string      // path relative to the app dir, forward slashes
	Mode fs.FileMode // type bits and permissions, as lstat reports them
	Size int64       // regular files only
	Link string      // symlink target, as written (relative, within the app)
}

// ErrSymlinkEscapes: a symlink of the app points outside it, so it would
// dangle in the image, where only the app directory exists.
var ErrSymlinkEscapes = errors.New("symlink points outside the app directory")

// maxLinkErrors caps how many escaping symlinks one error lists.
const maxLinkErrors = 10

// ListFiles walks an app directory and returns what goes into the image,
// sorted by Rel (so a directory comes before its contents), and the relative
// paths of the native addons (*.node) among them, which need their shared
// libraries in the image too.
//
// Left out: .git anywhere (version control metadata, never loaded at run
// time, and often larger than the app), .nodeboot at the top (nodeboot's own
// work directory), nodeboot's own output wherever it lies (IsArtefact: a
// build run inside the app dir must not pack its earlier image into the
// next one), whatever .nodebootignore matches, and files that are
// neither regular, directory nor symlink (sockets and fifos left by dev
// tools; an image cannot ship them meaningfully). node_modules is included:
// it is the app's dependencies.
//
// Symlinks are not followed; they are kept as symlinks. One whose target is
// absolute or leaves the app directory is an error naming it, because it
// would dangle in the image.
func ListFiles(dir string) (files []File, addons []string, err error) {
	root, err := filepath.Abs(dir)
	if err == nil {
		// The app dir itself may be reached through a symlink; walk what
		// it points to, since WalkDir does not descend into a symlink root.
		root, err = filepath.EvalSymlinks(root)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("app directory %s: %w", dir, err)
	}
	ign, err := readIgnore(root)
	if err != nil {
		return nil, nil, err
	}
	var linkErrs []error
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("walking app directory: %w", err)
		}
		if p == root {
			return nil
		}
		r, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel := filepath.ToSlash(r)
		if skip(rel, d, ign) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return fmt.Errorf("walking app directory: %w", err)
		}
		if IsArtefact(p, info) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		f := File{Rel: rel, Mode: info.Mode()}
		switch {
		case info.IsDir():
		case info.Mode().IsRegular():
			f.Size = info.Size()
			if strings.HasSuffix(rel, ".node") {
				addons = append(addons, rel)
			}
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return fmt.Errorf("walking app directory: %w", err)
			}
			if err := checkLink(rel, target); err != nil {
				linkErrs = append(linkErrs, err)
			}
			f.Link = target
		default:
			return nil
		}
		files = append(files, f)
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	if len(linkErrs) > 0 {
		if len(linkErrs) > maxLinkErrors {
			more := len(linkErrs) - maxLinkErrors
			linkErrs = append(linkErrs[:maxLinkErrors:maxLinkErrors], fmt.Errorf("... and %d more such symlinks", more))
		}
		return nil, nil, kindErr(ErrSymlinkEscapes, fmt.Errorf(
			"app directory %s has symlinks that would dangle in the image, which holds only the app directory; make them relative links within it, replace them by copies, or list them in %s:\n%w",
			root, IgnoreFile, errors.Join(linkErrs...)))
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Rel < files[j].Rel })
	sort.Strings(addons)
	return files, addons, nil
}

// TempPrefix starts the names of the build's work files and directories
// (beside the output, which may lie inside the app dir): an interrupted
// build's leftovers are never packed into the next image.
const TempPrefix = ".nodeboot-tmp-"

// DiskESPLabel is the GPT name of a nodeboot disk image's first partition
// (internal/disk's LabelESP, checked equal by internal/build's tests; spec
// does not import the disk writer).
const DiskESPLabel = "nodeboot-esp"

// minDiskImage is less than any disk image nodeboot writes (its ESP alone
// is 128 MiB): smaller files are not read to look for a GPT.
const minDiskImage = 64 << 20

// IsArtefact reports whether p (lstat'ed as info) is something nodeboot
// itself wrote: a build output directory (it holds a nodeboot
// manifest.json), a disk image with nodeboot's GPT, a manifest, or an
// interrupted build's work file. It looks at contents, not names, so an
// output dir called anything, anywhere in the app, is recognised.
func IsArtefact(p string, info fs.FileInfo) bool {
	name := info.Name()
	if strings.HasPrefix(name, TempPrefix) {
		return true
	}
	switch {
	case info.IsDir():
		return isManifest(filepath.Join(p, "manifest.json")) || onlyArtefacts(p)
	case info.Mode().IsRegular():
		if name == "manifest.json" || strings.HasSuffix(name, ".manifest.json") {
			return isManifest(p)
		}
		return info.Size() >= minDiskImage && isDiskImage(p)
	}
	return false
}

// onlyArtefacts reports whether dir holds nodeboot's output and nothing
// else (out/ holding disk.img and disk.manifest.json). Only small dirs are
// looked into; an empty one is the user's.
func onlyArtefacts(dir string) bool {
	f, err := os.Open(dir)
	if err != nil {
		return false
	}
	defer f.Close()
	ents, err := f.Readdir(17)
	if len(ents) == 0 || len(ents) > 16 || (err != nil && err != io.EOF) {
		return false
	}
	for _, e := range ents {
		if e.IsDir() || !IsArtefact(filepath.Join(dir, e.Name()), e) {
			return false
		}
	}
	return true
}

// isManifest reports whether p is a manifest.json that nodeboot wrote.
func isManifest(p string) bool {
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	var m struct {
		Nodeboot     *string          `json:"nodeboot"`
		ImageVersion *string          `json:"imageVersion"`
		Kernel       *json.RawMessage `json:"kernel"`
	}
	// A manifest is a few KiB; a bigger file is not one.
	if json.NewDecoder(io.LimitReader(f, 4<<20)).Decode(&m) != nil {
		return false
	}
	return m.Nodeboot != nil && m.ImageVersion != nil && m.Kernel != nil
}

// isDiskImage reports whether p starts with a GPT whose first partition is
// named DiskESPLabel (512-byte sectors, as nodeboot writes them).
func isDiskImage(p string) bool {
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	return firstPartitionName(f) == DiskESPLabel
}

// firstPartitionName reads the name of a GPT's first partition entry, ""
// when r holds no GPT. The bytes are anyone's (a file of the app dir).
func firstPartitionName(r io.ReaderAt) string {
	hdr := make([]byte, 92)
	if _, err := r.ReadAt(hdr, 512); err != nil || string(hdr[:8]) != "EFI PART" {
		return ""
	}
	lba := binary.LittleEndian.Uint64(hdr[72:80])
	if lba < 2 || lba > 1<<20 {
		return ""
	}
	ent := make([]byte, 128)
	if _, err := r.ReadAt(ent, int64(lba)*512); err != nil {
		return ""
	}
	u := make([]uint16, 36)
	for i := range u {
		u[i] = binary.LittleEndian.Uint16(ent[56+2*i:])
	}
	name := string(utf16.Decode(u))
	if i := strings.IndexByte(name, 0); i >= 0 {
		name = name[:i]
	}
	return name
}

// skip reports whether rel is left out of the image.
func skip(rel string, d fs.DirEntry, ign *gitignore.Matcher) bool {
	if d.Name() == ".git" || rel == ".nodeboot" {
		return true
	}
	if ign == nil {
		return false
	}
	return ign.Match(rel, d.IsDir())
}

// checkLink rejects a symlink whose target is absolute or, resolved from the
// link's directory, leaves the app. The check is lexical, like the image's
// symlink will be: the target is judged as it will be resolved there.
func checkLink(rel, target string) error {
	t := filepath.ToSlash(target)
	if path.IsAbs(t) || filepath.IsAbs(target) {
		return fmt.Errorf("%s -> %s: absolute target", rel, target)
	}
	if !filepath.IsLocal(filepath.FromSlash(path.Join(path.Dir(rel), t))) {
		return fmt.Errorf("%s -> %s: leaves the app directory", rel, target)
	}
	return nil
}

// readIgnore compiles dir/.nodebootignore, or returns nil when there is none.
func readIgnore(dir string) (*gitignore.Matcher, error) {
	data, err := os.ReadFile(filepath.Join(dir, IgnoreFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", IgnoreFile, err)
	}
	return gitignore.Parse(string(data)), nil
}
