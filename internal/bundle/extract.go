package bundle

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/klauspost/compress/zstd"
)

// maxWindow caps the zstd window the decoder accepts, and so the memory one
// decode may take: a bundle asking for more is refused, not allocated. Our
// encoder uses 8 MiB; zstd's own CLI stays within this below --long.
const maxWindow = 16 << 20

// maxTrailer bounds the zero padding accepted after the tar's end marker
// (tar tools pad to a 10 KiB record; Go's writer does not pad).
const maxTrailer = 1 << 20

// entryHook, when set (by tests), is called after each entry with the
// number of entries read so far: the memory test measures the heap there.
var entryHook func(n int)

// pathCost is what remembering one path costs beyond its bytes: a map
// slot, a string header and the kind or target.
const pathCost = 64

// kinds of paths Extract has made, for the duplicate and parent checks.
const (
	kindImplicitDir = iota + 1 // made as the parent of an entry
	kindDir
	kindFile
	kindLink
)

type extractor struct {
	root    *os.Root
	lim     Limits
	entries int
	bytes   int64
	// pathBytes is what made and links hold, charged before each
	// insertion (Limits.MaxPathBytes; issue 12, item 7).
	pathBytes int64
	made      map[string]int    // rel -> kind
	links     map[string]string // rel -> target
	files     []*os.File        // open only where files are synced one by one
}

// Extract reads a bundle from r, which may be hostile, and unpacks its app/
// tree into dst, which it creates (its parent must exist, dst must not). It
// returns the bundle's Meta. Every rejection wraps ErrUnsafe, ErrTooBig or
// ErrInvalid. On any error nothing is left: dst is removed. A nil error
// means the whole tree is on stable storage.
//
// Nothing of the bundle is trusted while writing: every path is created
// through an os.Root on dst (openat with no escape through symlinks or
// ".."), files with O_EXCL|O_NOFOLLOW, and a symlink the bundle made is
// never used as a parent of a later entry.
func Extract(r io.Reader, dst string, lim Limits) (meta Meta, err error) {
	lim = lim.withDefaults()
	if err := os.Mkdir(dst, 0o755); err != nil {
		return Meta{}, fmt.Errorf("creating the extraction directory: %w", err)
	}
	defer func() {
		if err != nil {
			if rerr := os.RemoveAll(dst); rerr != nil {
				err = errors.Join(err, fmt.Errorf("removing the partial extraction: %w", rerr))
			}
		}
	}()
	if err := os.Chmod(dst, 0o755); err != nil {
		return Meta{}, fmt.Errorf("creating the extraction directory: %w", err)
	}
	root, err := os.OpenRoot(dst)
	if err != nil {
		return Meta{}, fmt.Errorf("opening the extraction directory: %w", err)
	}
	defer root.Close()
	x := &extractor{root: root, lim: lim, made: map[string]int{".": kindImplicitDir}, links: map[string]string{}}
	defer func() {
		for _, f := range x.files {
			f.Close()
		}
	}()
	meta, err = x.run(r)
	if err != nil {
		return Meta{}, err
	}
	// The new directory's own entry lives in its parent.
	if err := syncDir(filepath.Dir(dst)); err != nil {
		return Meta{}, err
	}
	return meta, nil
}

func (x *extractor) run(r io.Reader) (Meta, error) {
	// The compressed stream is capped too: zstd skippable frames decode to
	// nothing, so without this an endless body would be read forever.
	cr := &capReader{r: r, left: x.lim.MaxCompressed()}
	zr, err := zstd.NewReader(cr,
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(maxWindow),
		zstd.WithDecoderMaxMemory(maxWindow))
	if err != nil {
		return Meta{}, fmt.Errorf("%w: zstd: %v", ErrInvalid, err)
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	wrap := func(err error) error {
		if cr.over {
			return fmt.Errorf("%w: the compressed bundle is larger than the limits allow", ErrTooBig)
		}
		// Reading the stream failed (the spool file's disk, the network):
		// not the bundle's fault, and the decoder may have reworded it.
		if cr.err != nil {
			return fmt.Errorf("reading the bundle: %w", cr.err)
		}
		if errors.Is(err, ErrUnsafe) || errors.Is(err, ErrTooBig) || errors.Is(err, ErrInvalid) {
			return err
		}
		// An OS error while writing the tree (ENOSPC, EIO, ...) is the
		// node's, not the bundle's: it keeps its errno (issue 12, item 3),
		// so the API can answer 507 or 500 rather than 400.
		var errno syscall.Errno
		if errors.As(err, &errno) {
			return err
		}
		return fmt.Errorf("%w: not a zstd-compressed tar: %v", ErrInvalid, err)
	}

	meta, err := x.readMeta(tr)
	if err != nil {
		return Meta{}, wrap(err)
	}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return Meta{}, wrap(err)
		}
		if err := x.entry(hdr, tr); err != nil {
			return Meta{}, wrap(err)
		}
		if entryHook != nil {
			entryHook(x.entries)
		}
	}
	if err := drain(zr); err != nil {
		return Meta{}, wrap(err)
	}
	work := maxLinkWork
	for rel := range x.links {
		if linkEscapesWithin(x.links, rel, &work) {
			if work < 0 {
				return Meta{}, fmt.Errorf("%w: the bundle's %d symlinks take too much work to resolve (long chains of long links)", ErrTooBig, len(x.links))
			}
			return Meta{}, fmt.Errorf("%w: symlink app/%s -> %s: resolved through the bundle's other links it leaves app/ (or loops)", ErrUnsafe, rel, x.links[rel])
		}
	}
	// Stat follows the bundle's links, but only inside the root.
	if st, err := x.root.Stat(meta.Entry); err != nil || !st.Mode().IsRegular() {
		return Meta{}, fmt.Errorf("%w: the entry point %q named in %s is not a file of the bundle's app/", ErrInvalid, meta.Entry, MetaName)
	}
	if err := x.sync(); err != nil {
		return Meta{}, err
	}
	return meta, nil
}

func (x *extractor) readMeta(tr *tar.Reader) (Meta, error) {
	hdr, err := tr.Next()
	if err == io.EOF {
		return Meta{}, fmt.Errorf("%w: empty archive, no %s", ErrInvalid, MetaName)
	}
	if err != nil {
		return Meta{}, err
	}
	x.entries++
	if hdr.Name != MetaName || hdr.Typeflag != tar.TypeReg {
		return Meta{}, fmt.Errorf("%w: the first entry is %q, not the file %s: make the bundle with nodeboot", ErrInvalid, hdr.Name, MetaName)
	}
	if hdr.Size > maxMetaSize {
		return Meta{}, fmt.Errorf("%w: %s is %d bytes, more than %d", ErrTooBig, MetaName, hdr.Size, maxMetaSize)
	}
	data, err := io.ReadAll(tr)
	if err != nil {
		return Meta{}, err
	}
	var m Meta
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return Meta{}, fmt.Errorf("%w: %s: %v", ErrInvalid, MetaName, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Meta{}, fmt.Errorf("%w: %s: data after the JSON object", ErrInvalid, MetaName)
	}
	if err := m.check(); err != nil {
		return Meta{}, fmt.Errorf("%w: %s: %v", ErrInvalid, MetaName, err)
	}
	return m, nil
}

// entry checks one tar entry after the first and creates it.
func (x *extractor) entry(hdr *tar.Header, tr *tar.Reader) error {
	x.entries++
	if x.entries > x.lim.MaxEntries {
		return fmt.Errorf("%w: more than %d entries", ErrTooBig, x.lim.MaxEntries)
	}
	name := hdr.Name
	if len(name) > MaxPath {
		return fmt.Errorf("%w: an entry's path is longer than %d bytes", ErrUnsafe, MaxPath)
	}
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeDir, tar.TypeSymlink:
	case tar.TypeLink:
		return fmt.Errorf("%w: %q is a hard link; bundles hold only files, directories and symlinks", ErrUnsafe, name)
	case tar.TypeChar, tar.TypeBlock:
		return fmt.Errorf("%w: %q is a device node", ErrUnsafe, name)
	case tar.TypeFifo:
		return fmt.Errorf("%w: %q is a FIFO", ErrUnsafe, name)
	default:
		return fmt.Errorf("%w: %q has the unsupported tar type %q", ErrUnsafe, name, hdr.Typeflag)
	}
	if hdr.Mode&0o7000 != 0 {
		return fmt.Errorf("%w: %q has the setuid, setgid or sticky bit (mode %#o)", ErrUnsafe, name, hdr.Mode)
	}
	if hdr.Typeflag == tar.TypeDir {
		name = strings.TrimSuffix(name, "/")
	}
	rel, err := appRel(name)
	if err != nil {
		return fmt.Errorf("%w: %q: %v", ErrUnsafe, hdr.Name, err)
	}
	// A directory first made as a parent may still get its own entry.
	if k := x.made[rel]; k != 0 && !(k == kindImplicitDir && hdr.Typeflag == tar.TypeDir) {
		return fmt.Errorf("%w: %q appears twice (or clashes with a directory made for an earlier entry)", ErrUnsafe, hdr.Name)
	}
	for d := path.Dir(rel); d != "."; d = path.Dir(d) {
		if _, ok := x.links[d]; ok {
			return fmt.Errorf("%w: %q lies under app/%s, a symlink of the bundle", ErrUnsafe, hdr.Name, d)
		}
		if x.made[d] == kindFile {
			return fmt.Errorf("%w: %q lies under app/%s, a file", ErrInvalid, hdr.Name, d)
		}
	}
	if hdr.Typeflag == tar.TypeReg {
		if hdr.Size > x.lim.MaxFile {
			return fmt.Errorf("%w: %q is %d bytes, more than the %d allowed for one file", ErrTooBig, hdr.Name, hdr.Size, x.lim.MaxFile)
		}
		if x.bytes += hdr.Size; x.bytes > x.lim.MaxBytes {
			return fmt.Errorf("%w: more than %d bytes unpacked", ErrTooBig, x.lim.MaxBytes)
		}
	}
	if rel == "." {
		x.made["."] = kindDir
		return nil
	}
	// Charge what remembering this entry costs before remembering it:
	// rel keeps the whole name alive, each new parent is one more path.
	cost := int64(len(hdr.Name)) + pathCost
	for d := path.Dir(rel); d != "." && x.made[d] == 0; d = path.Dir(d) {
		cost += pathCost
	}
	if hdr.Typeflag == tar.TypeSymlink {
		cost += int64(len(hdr.Linkname)) + pathCost
	}
	if x.pathBytes += cost; x.pathBytes > x.lim.MaxPathBytes {
		return fmt.Errorf("%w: the bundle's paths take more than %d bytes to check (%d entries so far); a real app's tree needs far less", ErrTooBig, x.lim.MaxPathBytes, x.entries)
	}
	if err := x.parents(rel); err != nil {
		return err
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		if x.made[rel] == 0 {
			if err := x.mkdir(rel); err != nil {
				return fmt.Errorf("extracting %s: %w", hdr.Name, err)
			}
		}
		x.made[rel] = kindDir
	case tar.TypeSymlink:
		if len(hdr.Linkname) > MaxPath {
			return fmt.Errorf("%w: symlink %q: target longer than %d bytes", ErrUnsafe, hdr.Name, MaxPath)
		}
		if strings.HasPrefix(hdr.Linkname, "/") {
			return fmt.Errorf("%w: symlink %q -> %q: absolute target", ErrUnsafe, hdr.Name, hdr.Linkname)
		}
		if !linkStaysInside(rel, hdr.Linkname) {
			return fmt.Errorf("%w: symlink %q -> %q: leaves app/", ErrUnsafe, hdr.Name, hdr.Linkname)
		}
		if err := x.root.Symlink(hdr.Linkname, rel); err != nil {
			return fmt.Errorf("extracting %s: %w", hdr.Name, err)
		}
		x.made[rel] = kindLink
		x.links[rel] = hdr.Linkname
	case tar.TypeReg:
		if err := x.file(rel, hdr, tr); err != nil {
			return err
		}
		x.made[rel] = kindFile
	}
	return nil
}

// appRel checks an entry name (without a directory's trailing slash) and
// returns its path relative to app/, "." for app/ itself.
func appRel(name string) (string, error) {
	if strings.HasPrefix(name, "/") {
		return "", errors.New("absolute path")
	}
	for _, c := range strings.Split(name, "/") {
		if c == ".." {
			return "", errors.New(`".." component`)
		}
	}
	if name == AppDir {
		return ".", nil
	}
	rel, ok := strings.CutPrefix(name, AppDir+"/")
	if !ok {
		return "", errors.New("not under app/")
	}
	if err := checkRel(rel); err != nil {
		return "", err
	}
	return rel, nil
}

// parents creates the missing parent directories of rel. Their parents are
// already known not to be links of the bundle.
func (x *extractor) parents(rel string) error {
	var missing []string
	for d := path.Dir(rel); d != "." && x.made[d] == 0; d = path.Dir(d) {
		missing = append(missing, d)
	}
	for i := len(missing) - 1; i >= 0; i-- {
		if err := x.mkdir(missing[i]); err != nil {
			return fmt.Errorf("extracting app/%s: %w", rel, err)
		}
		x.made[missing[i]] = kindImplicitDir
	}
	return nil
}

// mkdir makes a 0755 directory whatever the umask: the app's user, not
// root, reads the code.
func (x *extractor) mkdir(rel string) error {
	if err := x.root.Mkdir(rel, 0o755); err != nil {
		return err
	}
	return x.root.Chmod(rel, 0o755)
}

func (x *extractor) file(rel string, hdr *tar.Header, tr *tar.Reader) error {
	f, err := x.root.OpenFile(rel, os.O_WRONLY|os.O_CREATE|os.O_EXCL|noFollow, 0o600)
	if err != nil {
		return fmt.Errorf("extracting %s: %w", hdr.Name, err)
	}
	keep := false
	defer func() {
		if !keep {
			f.Close()
		}
	}()
	n, err := io.Copy(f, tr)
	if err != nil {
		return fmt.Errorf("extracting %s: %w", hdr.Name, err)
	}
	if n != hdr.Size {
		return fmt.Errorf("%w: %s: %d bytes instead of %d", ErrInvalid, hdr.Name, n, hdr.Size)
	}
	// Chmod, not the open mode, so the umask does not decide it. Code is
	// read-only for the app; only the executable bits matter.
	if err := f.Chmod(fs.FileMode(hdr.Mode) & 0o755); err != nil {
		return fmt.Errorf("extracting %s: %w", hdr.Name, err)
	}
	if syncEachFile {
		x.files = append(x.files, f)
		keep = true
	}
	return nil
}

// sync puts the tree on stable storage: one syncfs on Linux, file by file
// and directory by directory elsewhere.
func (x *extractor) sync() error {
	if !syncEachFile {
		d, err := x.root.Open(".")
		if err != nil {
			return fmt.Errorf("syncing the extracted bundle: %w", err)
		}
		defer d.Close()
		if err := syncFS(d); err != nil {
			return fmt.Errorf("syncing the extracted bundle: %w", err)
		}
		return nil
	}
	for _, f := range x.files {
		if err := f.Sync(); err != nil {
			return fmt.Errorf("syncing %s: %w", f.Name(), err)
		}
	}
	for rel, k := range x.made {
		if k != kindDir && k != kindImplicitDir {
			continue
		}
		d, err := x.root.Open(rel)
		if err != nil {
			return fmt.Errorf("syncing app/%s: %w", rel, err)
		}
		err = d.Sync()
		d.Close()
		if err != nil {
			return fmt.Errorf("syncing app/%s: %w", rel, err)
		}
	}
	return nil
}

// drain reads what follows the tar's end marker: zero padding is fine,
// anything else is not part of a bundle. Reading to the end also makes the
// zstd decoder check the rest of the stream.
func drain(r io.Reader) error {
	buf := make([]byte, 32<<10)
	var total int64
	for {
		n, err := r.Read(buf)
		total += int64(n)
		if bytes.IndexFunc(buf[:n], func(r rune) bool { return r != 0 }) >= 0 || total > maxTrailer {
			return fmt.Errorf("%w: data after the end of the tar archive", ErrInvalid)
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// syncDir fsyncs a directory, making the entries made in it durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	return nil
}

// capReader reads at most left bytes and then fails, remembering that it
// did (the zstd decoder does not always pass the error on as it was).
type capReader struct {
	r    io.Reader
	left int64
	over bool
	err  error // the first error of r other than io.EOF
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		// At the cap: fine if the stream ends here.
		var one [1]byte
		if n, err := c.r.Read(one[:]); n == 0 && err != nil {
			return 0, err
		}
		c.over = true
		return 0, ErrTooBig
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	if err != nil && err != io.EOF && c.err == nil {
		c.err = err
	}
	return n, err
}
