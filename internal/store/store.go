// Package store keeps the deployed versions of each app on the node's data
// partition (docs/api.md, "Bundles"):
//
//	<root>/<app>/<hex digest>/       an extracted bundle's app dir
//	<root>/<app>/<hex digest>.json   its record (digest and Meta), written last
//	<root>/<app>/current, previous   symlinks to a <hex digest>
//	<root>/<app>/.incoming-*         work in progress, removed by Recover
//	                                 (.incoming-<r>.zst: a body spooling)
//
// A version is complete when both its directory and its record exist; the
// record is written, durably, only after the whole directory is. Links are
// switched by rename(2) of a fresh symlink, so at any instant, power cut
// included, current names one complete version or none. Recover, at boot,
// never deletes what a link names and, when current is damaged but
// previous whole, runs previous (docs/ARCHITECTURE.md lists its rules).
//
// Removing a version never crosses a mount (a persist dir still bound in
// it): such a version is refused with ErrMounted (a *MountError names the
// mounts). Garbage collection after a switch reports through SetLog (or
// apart, through SwitchAndCollect), never as a failed switch. Disk errors keep their errno and say "disk full on
// <mount>" or "I/O error on <mount>".
package store

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"

	"github.com/nodeboot/nodeboot/internal/bundle"
)

var (
	// ErrDigest: the body does not hash to the digest the client sent, or
	// that digest is malformed.
	ErrDigest = errors.New("bundle digest mismatch")
	// ErrNoPrevious: there is no previous version to roll back to.
	ErrNoPrevious = errors.New("no previous version")
	// ErrMounted: a version was not removed because a file system is
	// mounted inside it (a *MountError names the mounts). The store never
	// deletes through a mount.
	ErrMounted = errors.New("a file system is mounted inside")
)

// Version is one complete version of an app in the store.
type Version struct {
	App    string
	Digest string // "sha256:<hex>" of the bundle
	Dir    string // the app's code dir
	Meta   bundle.Meta
}

const (
	currentLink    = "current"
	previousLink   = "previous"
	incomingPrefix = ".incoming-"
	recordSuffix   = ".json"
	digestPrefix   = "sha256:"
)

// hexRE is a version's name: a lower-case hex sha256.
var hexRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// record is <hex>.json: what makes a version complete.
type record struct {
	Digest string      `json:"digest"`
	Meta   bundle.Meta `json:"meta"`
}

// Store is the version store under one root (/data/apps on the node).
// Its methods may be called from several goroutines; operations on one
// app are serialised, different apps proceed in parallel.
type Store struct {
	root string

	mu   sync.Mutex
	apps map[string]*sync.Mutex

	// logf reports what the store does on its own (garbage collection
	// after a switch); SetLog sets it.
	logf func(string, ...any)

	// hook, when set (by tests), is called after every durable step; an
	// error it returns stops the operation there as a power cut would,
	// leaving everything on disk as it is.
	hook func(step string) error
}

// errHook marks errors returned by the test hook: no cleanup runs after
// them, because a power cut does not clean up either.
var errHook = errors.New("stopped by the test hook")

// Open opens (creating if needed) the store at root.
func Open(root string) (*Store, error) {
	// Chmod: the apps' users traverse these dirs, whatever PID 1's umask.
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("opening the version store: %w", err)
	}
	if err := os.Chmod(root, 0o755); err != nil {
		return nil, fmt.Errorf("opening the version store: %w", err)
	}
	return &Store{root: root, apps: map[string]*sync.Mutex{}, logf: log.Printf}, nil
}

// SetLog sets where the store reports what no caller asked for: an old
// version that could not be garbage-collected after a switch (the switch
// itself succeeded). The default is the standard logger.
func (s *Store) SetLog(logf func(format string, args ...any)) {
	if logf != nil {
		s.logf = logf
	}
}

func (s *Store) lock(app string) func() {
	s.mu.Lock()
	m := s.apps[app]
	if m == nil {
		m = &sync.Mutex{}
		s.apps[app] = m
	}
	s.mu.Unlock()
	m.Lock()
	return m.Unlock
}

func (s *Store) step(name string) error {
	if s.hook == nil {
		return nil
	}
	if err := s.hook(name); err != nil {
		return fmt.Errorf("%s: %w", name, errors.Join(errHook, err))
	}
	return nil
}

func (s *Store) appDir(app string) (string, error) {
	if err := bundle.CheckAppName(app); err != nil {
		return "", err
	}
	return filepath.Join(s.root, app), nil
}

// parseDigest returns the hex of a "sha256:<64 lower-case hex>" digest.
func parseDigest(d string) (string, error) {
	h, ok := strings.CutPrefix(d, digestPrefix)
	if !ok || !hexRE.MatchString(h) {
		return "", fmt.Errorf("%w: %q is not a digest of the form sha256:<64 lower-case hex digits>", ErrDigest, d)
	}
	return h, nil
}

// maxTrailing bounds what may follow a bundle in a body, beyond what the
// limits allow the bundle itself.
const maxTrailing = 1 << 20

// spoolSuffix ends the name of the file a body spools into (under the
// .incoming- prefix, so Recover removes it after a power cut).
const spoolSuffix = ".zst"

// extract is bundle.Extract; tests count its calls.
var extract = bundle.Extract

// Receive reads a bundle for app from body and makes it a complete
// version, without switching to it. The body's sha256 must be wantDigest
// ("sha256:<hex>"). On a mismatch (ErrDigest) or a bad bundle
// (bundle.ErrUnsafe, ErrTooBig, ErrInvalid) nothing of it remains. A
// version already complete is reused without reading body.
//
// The body first spools, hashed as it comes, into .incoming-<random>.zst
// in the app's dir (at most lim.MaxCompressed() bytes, fsynced); only a
// body whose digest matches is unpacked, from that file, into
// .incoming-<random>, which is renamed to <hex> once everything in it is
// on stable storage. So a hostile body the client did not vouch for never
// reaches the extractor, and memory stays bounded whatever the body.
//
// A full disk or an I/O error, spooling or unpacking, says "disk full on
// <mount>: ..." or "I/O error on <mount>: ..." and keeps its errno
// (errors.Is(err, syscall.ENOSPC) or EIO), so that it is never taken for a
// bad bundle.
func (s *Store) Receive(app string, body io.Reader, wantDigest string, lim bundle.Limits) (v *Version, err error) {
	dir, err := s.appDir(app)
	if err != nil {
		return nil, err
	}
	want, err := parseDigest(wantDigest)
	if err != nil {
		return nil, err
	}
	if v, err := s.load(app, want); err == nil {
		return v, nil
	}
	defer func() {
		if err != nil {
			err = s.diskError(err)
		}
	}()
	if err := os.MkdirAll(dir, 0o755); err == nil {
		err = os.Chmod(dir, 0o755)
	}
	if err != nil {
		return nil, fmt.Errorf("receiving a version of %s: %w", app, err)
	}
	name := incomingPrefix + randomName()
	tmp := filepath.Join(dir, name)
	spool := filepath.Join(dir, name+spoolSuffix)
	defer func() {
		if err != nil && !errors.Is(err, errHook) {
			rerr := removeTree(tmp)
			if e := os.Remove(spool); e != nil && !errors.Is(e, fs.ErrNotExist) {
				rerr = errors.Join(rerr, e)
			}
			if rerr != nil {
				err = errors.Join(err, fmt.Errorf("removing the partial version (the next boot removes it): %w", rerr))
			}
		}
	}()
	f, err := s.spool(spool, body, want, lim)
	if err != nil {
		return nil, fmt.Errorf("receiving a version of %s: %w", app, err)
	}
	meta, err := extract(bufio.NewReaderSize(f, 64<<10), tmp, lim)
	f.Close()
	if rerr := os.Remove(spool); err == nil && rerr != nil {
		err = rerr
	}
	if err != nil {
		return nil, fmt.Errorf("receiving a version of %s: %w", app, err)
	}
	if meta.App != app {
		return nil, fmt.Errorf("%w: the bundle is for app %q, not %q", bundle.ErrInvalid, meta.App, app)
	}
	if err := s.step("receive:extracted"); err != nil {
		return nil, err
	}

	unlock := s.lock(app)
	defer unlock()
	// The same version may have been completed meanwhile.
	if v, err := s.load(app, want); err == nil {
		removeTree(tmp)
		return v, nil
	}
	final := filepath.Join(dir, want)
	// An incomplete leftover of an earlier attempt is in the way.
	if err := removeVersion(dir, want); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, final); err != nil {
		return nil, fmt.Errorf("receiving a version of %s: %w", app, err)
	}
	if err := syncDir(dir); err != nil {
		return nil, err
	}
	if err := s.step("receive:renamed"); err != nil {
		return nil, err
	}
	rec, err := json.Marshal(record{Digest: digestPrefix + want, Meta: meta})
	if err != nil {
		return nil, err
	}
	if err := s.writeAtomic(dir, want+recordSuffix, rec); err != nil {
		// The directory without a record is incomplete; take it away too.
		if !errors.Is(err, errHook) {
			removeVersion(dir, want)
		}
		return nil, fmt.Errorf("receiving a version of %s: %w", app, err)
	}
	return &Version{App: app, Digest: digestPrefix + want, Dir: final, Meta: meta}, nil
}

// spool copies body into a new file at p, hashing it, fsyncs it, checks
// its sha256 against want and returns it open at its start. The caller
// removes p.
func (s *Store) spool(p string, body io.Reader, want string, lim bundle.Limits) (*os.File, error) {
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("spooling the upload: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
		}
	}()
	max := lim.MaxCompressed() + maxTrailing
	h := sha256.New()
	buf := make([]byte, 64<<10)
	var n int64
	for {
		k, rerr := body.Read(buf)
		if k > 0 {
			if n += int64(k); n > max {
				return nil, fmt.Errorf("%w: the upload is longer than %d bytes, more than any bundle within the limits", bundle.ErrTooBig, max)
			}
			h.Write(buf[:k])
			if _, err := f.Write(buf[:k]); err != nil {
				return nil, fmt.Errorf("spooling the upload: %w", err)
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return nil, fmt.Errorf("reading the upload: %w", rerr)
		}
	}
	if err := f.Sync(); err != nil {
		return nil, fmt.Errorf("spooling the upload: %w", err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return nil, fmt.Errorf("%w: the body's sha256 is %s, but the request said %s: the upload was damaged or the digest is wrong; deploy again", ErrDigest, got, want)
	}
	if err := s.step("receive:spooled"); err != nil {
		return nil, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("spooling the upload: %w", err)
	}
	ok = true
	return f, nil
}

// diskError says "disk full" or "I/O error", naming the file system, for
// an error that is one (the errno stays wrapped, for the API's 507/500).
func (s *Store) diskError(err error) error {
	switch {
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return fmt.Errorf("disk full on %s: %w", mountPointOf(s.root), err)
	case errors.Is(err, syscall.EIO):
		return fmt.Errorf("I/O error on %s: %w", mountPointOf(s.root), err)
	}
	return err
}

// writeAtomic writes dir/name by writing a temporary file, fsyncing it and
// renaming it over name, then fsyncing dir. The temporary name starts with
// .incoming- so that Recover removes it after a power cut; that one rule
// is why this is not renameio, whose temporary names differ.
func (s *Store) writeAtomic(dir, name string, data []byte) error {
	tmp := filepath.Join(dir, incomingPrefix+randomName()+recordSuffix)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = s.step("record:written")
		if errors.Is(err, errHook) {
			return err
		}
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, name))
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if err := syncDir(dir); err != nil {
		return err
	}
	return s.step("record:renamed")
}

// load returns the complete version app/hex, or an error saying why it is
// not one.
func (s *Store) load(app, h string) (*Version, error) {
	dir := filepath.Join(s.root, app)
	if !hexRE.MatchString(h) {
		return nil, fmt.Errorf("%q is not a version name", h)
	}
	st, err := os.Lstat(filepath.Join(dir, h))
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("version %s of %s is not a directory", h, app)
	}
	data, err := os.ReadFile(filepath.Join(dir, h+recordSuffix))
	if err != nil {
		return nil, fmt.Errorf("version %s of %s is incomplete: %w", h, app, err)
	}
	var rec record
	if err := json.Unmarshal(data, &rec); err != nil {
		return nil, fmt.Errorf("version %s of %s: bad record: %w", h, app, err)
	}
	if rec.Digest != digestPrefix+h || rec.Meta.App != app {
		return nil, fmt.Errorf("version %s of %s: its record is for %s of %s", h, app, rec.Digest, rec.Meta.App)
	}
	if err := rec.Meta.Validate(); err != nil {
		return nil, fmt.Errorf("version %s of %s: bad record: %w", h, app, err)
	}
	return &Version{App: app, Digest: rec.Digest, Dir: filepath.Join(dir, h), Meta: rec.Meta}, nil
}

// target returns the version a link of app names, "" when the link is
// missing or does not name a version. Other errors are returned.
func (s *Store) target(app, link string) (string, error) {
	h, _, err := s.readLink(app, link)
	return h, err
}

// readLink reads a link of app: the version it names ("" for none) and
// whether the link exists at all. The store writes bare hex names, but a
// link that names a version of this app otherwise ("./<hex>", an absolute
// path) names it too: a kernel following the link reaches that version,
// so it counts as named, and Recover never deletes it (issue 12, item 3).
func (s *Store) readLink(app, link string) (h string, present bool, err error) {
	p := filepath.Join(s.root, app, link)
	t, err := os.Readlink(p)
	// EINVAL: not a symlink at all.
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.EINVAL) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("reading %s of %s: %w", link, app, err)
	}
	return s.versionNamed(app, p, t), true, nil
}

// versionHolding returns the hex of the version a link of app leads to
// or into, lexically or as the kernel resolves it; "" for none.
func (s *Store) versionHolding(app, link string) string {
	dir := filepath.Join(s.root, app)
	p := filepath.Join(dir, link)
	under := func(base, q string) string {
		rel, ok := strings.CutPrefix(q, base+string(filepath.Separator))
		if !ok {
			return ""
		}
		first, _, _ := strings.Cut(rel, string(filepath.Separator))
		if hexRE.MatchString(first) {
			return first
		}
		return ""
	}
	if t, err := os.Readlink(p); err == nil && strings.IndexByte(t, 0) < 0 {
		if !filepath.IsAbs(t) {
			t = filepath.Join(dir, t)
		}
		if h := under(dir, filepath.Clean(t)); h != "" {
			return h
		}
	}
	real, err1 := filepath.EvalSymlinks(p)
	realDir, err2 := filepath.EvalSymlinks(dir)
	if err1 == nil && err2 == nil {
		return under(realDir, real)
	}
	return ""
}

// versionNamed returns the hex of the version of app that the link at p
// with target t leads to, lexically or as the kernel resolves it; "" when
// it leads to none.
func (s *Store) versionNamed(app, p, t string) string {
	if hexRE.MatchString(t) {
		return t
	}
	dir := filepath.Join(s.root, app)
	inDir := func(q string) string {
		if filepath.Dir(q) == dir && hexRE.MatchString(filepath.Base(q)) {
			return filepath.Base(q)
		}
		return ""
	}
	if strings.IndexByte(t, 0) >= 0 || t == "" {
		return ""
	}
	lex := t
	if !filepath.IsAbs(lex) {
		lex = filepath.Join(dir, lex)
	}
	if h := inDir(filepath.Clean(lex)); h != "" {
		return h
	}
	// Through other links or another spelling of the root.
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return ""
	}
	realDir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return ""
	}
	if filepath.Dir(real) == realDir && hexRE.MatchString(filepath.Base(real)) {
		return filepath.Base(real)
	}
	return ""
}

// linked returns the complete version a link names, or nil.
func (s *Store) linked(app, link string) (*Version, string, error) {
	if _, err := s.appDir(app); err != nil {
		return nil, "", err
	}
	t, err := s.target(app, link)
	if err != nil || t == "" {
		return nil, "", err
	}
	v, err := s.load(app, t)
	if err != nil {
		return nil, "", nil // incomplete or missing: as if there were none
	}
	return v, t, nil
}

// Current returns the version app runs, nil when there is none (the image's
// own runs): no link, or one to a missing or incomplete version.
func (s *Store) Current(app string) (*Version, error) {
	v, _, err := s.linked(app, currentLink)
	return v, err
}

// Previous returns the version a rollback goes back to, nil when there is
// none. A previous that equals current counts as none (what a power cut in
// the middle of Switch leaves).
func (s *Store) Previous(app string) (*Version, error) {
	p, pt, err := s.linked(app, previousLink)
	if err != nil || p == nil {
		return nil, err
	}
	if ct, err := s.target(app, currentLink); err != nil || ct == pt {
		return nil, err
	}
	return p, nil
}

// Switch makes v the current version of app and the current one previous.
// From no current version (the image's), previous becomes none too: going
// back from v means going back to the image.
//
// Order: previous is set first, then current. A power cut between the two
// leaves current as it was (and previous equal to it, which reads as none);
// after the second, the switch is complete. current never names anything
// but a complete version.
func (s *Store) Switch(app string, v *Version) error {
	gcErr, err := s.SwitchAndCollect(app, v)
	if gcErr != nil {
		s.logf("version store: %v", gcErr)
	}
	return err
}

// SwitchAndCollect is Switch for a caller that reports what happened after
// the switch itself: err is the switch's (nil: current names v), gcErr
// that of dropping the version that fell off (it stays until the next
// boot's Recover; errors.Is(gcErr, ErrMounted) when a mount is still in
// it). gcErr is never set unless the switch succeeded.
func (s *Store) SwitchAndCollect(app string, v *Version) (gcErr, err error) {
	dir, err := s.appDir(app)
	if err != nil {
		return nil, err
	}
	if v == nil || v.App != app {
		return nil, fmt.Errorf("switching %s: not a version of this app", app)
	}
	h, err := parseDigest(v.Digest)
	if err != nil {
		return nil, err
	}
	unlock := s.lock(app)
	defer unlock()
	if _, err := s.load(app, h); err != nil {
		return nil, fmt.Errorf("switching %s to %s: %w; deploy it again", app, v.Digest, err)
	}
	cur, _, err := s.linked(app, currentLink)
	if err != nil {
		return nil, err
	}
	oldPrev, err := s.target(app, previousLink)
	if err != nil {
		return nil, err
	}
	var curHex string
	if cur != nil {
		curHex = strings.TrimPrefix(cur.Digest, digestPrefix)
	}
	if curHex == h {
		return nil, nil
	}
	if curHex != "" {
		if err := s.setLink(dir, previousLink, curHex, "switch:previous"); err != nil {
			return nil, fmt.Errorf("switching %s: %w", app, err)
		}
	} else if err := s.removeLink(dir, previousLink, "switch:previous"); err != nil {
		return nil, fmt.Errorf("switching %s: %w", app, err)
	}
	if err := s.setLink(dir, currentLink, h, "switch:current"); err != nil {
		return nil, fmt.Errorf("switching %s: %w", app, err)
	}
	// The version that fell off the end is garbage now; Recover would
	// remove it at the next boot, but /data should not fill up until then.
	// current has switched: a failure here is not the switch's (issue 12,
	// item 1: a persist mount left in the old version answered 500 to a
	// deploy that had succeeded), so it is logged, and Recover retries.
	if oldPrev != "" && oldPrev != curHex && oldPrev != h {
		if err := removeVersion(dir, oldPrev); err != nil {
			return fmt.Errorf("switched %s to %s, but the old version %s stays until the next boot: %w", app, h[:12], oldPrev[:12], err), nil
		}
	}
	return nil, nil
}

// Rollback makes previous current and current previous, and returns the new
// current. ErrNoPrevious when there is no previous version. When current is
// none (the image's), previous becomes current and previous none.
func (s *Store) Rollback(app string) (*Version, error) {
	dir, err := s.appDir(app)
	if err != nil {
		return nil, err
	}
	unlock := s.lock(app)
	defer unlock()
	prev, err := s.Previous(app)
	if err != nil {
		return nil, err
	}
	if prev == nil {
		return nil, fmt.Errorf("rolling back %s: %w", app, ErrNoPrevious)
	}
	ph := strings.TrimPrefix(prev.Digest, digestPrefix)
	cur, _, err := s.linked(app, currentLink)
	if err != nil {
		return nil, err
	}
	if cur == nil {
		if err := s.setLink(dir, currentLink, ph, "rollback:current"); err != nil {
			return nil, fmt.Errorf("rolling back %s: %w", app, err)
		}
		if err := s.removeLink(dir, previousLink, "rollback:previous"); err != nil {
			return nil, fmt.Errorf("rolling back %s: %w", app, err)
		}
		return prev, nil
	}
	// One atomic exchange where the kernel and file system offer it.
	err = exchangeNames(filepath.Join(dir, currentLink), filepath.Join(dir, previousLink))
	if err == nil {
		err = syncDir(dir)
		if err == nil {
			err = s.step("rollback:exchanged")
		}
		if err != nil {
			return nil, fmt.Errorf("rolling back %s: %w", app, err)
		}
		return prev, nil
	}
	if !errors.Is(err, errNoExchange) {
		return nil, fmt.Errorf("rolling back %s: %w", app, err)
	}
	// Two renames: current first, so a power cut between them leaves the
	// rollback done (with previous equal to current, read as none).
	if err := s.setLink(dir, currentLink, ph, "rollback:current"); err != nil {
		return nil, fmt.Errorf("rolling back %s: %w", app, err)
	}
	if err := s.setLink(dir, previousLink, strings.TrimPrefix(cur.Digest, digestPrefix), "rollback:previous"); err != nil {
		return nil, fmt.Errorf("rolling back %s: %w", app, err)
	}
	return prev, nil
}

// Reset goes back to the image's own version: current becomes none and
// the current version previous, so a Rollback returns to it.
func (s *Store) Reset(app string) error {
	dir, err := s.appDir(app)
	if err != nil {
		return err
	}
	unlock := s.lock(app)
	defer unlock()
	cur, _, err := s.linked(app, currentLink)
	if err != nil || cur == nil {
		return err
	}
	if err := s.setLink(dir, previousLink, strings.TrimPrefix(cur.Digest, digestPrefix), "reset:previous"); err != nil {
		return fmt.Errorf("resetting %s: %w", app, err)
	}
	if err := s.removeLink(dir, currentLink, "reset:current"); err != nil {
		return fmt.Errorf("resetting %s: %w", app, err)
	}
	return nil
}

// setLink points dir/name at target: a new symlink under a temporary name,
// renamed over the old one (rename(2) replaces it atomically), then dir
// fsynced.
func (s *Store) setLink(dir, name, target, step string) error {
	tmp := filepath.Join(dir, incomingPrefix+randomName())
	if err := os.Symlink(target, tmp); err != nil {
		return err
	}
	if err := s.step(step + ":symlink"); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := syncDir(dir); err != nil {
		return err
	}
	return s.step(step + ":renamed")
}

func (s *Store) removeLink(dir, name, step string) error {
	if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := syncDir(dir); err != nil {
		return err
	}
	return s.step(step + ":removed")
}

// Recover runs at boot, before anything else uses the store: it removes
// what an interrupted operation left (.incoming-*) and every version that
// is neither current nor previous, so that exactly those two stay.
func (s *Store) Recover(logf func(string, ...any)) {
	apps, err := os.ReadDir(s.root)
	if err != nil {
		logf("version store: %v", err)
		return
	}
	for _, a := range apps {
		if !a.IsDir() || bundle.CheckAppName(a.Name()) != nil {
			continue
		}
		s.recoverApp(a.Name(), logf)
	}
}

func (s *Store) recoverApp(app string, logf func(string, ...any)) {
	unlock := s.lock(app)
	defer unlock()
	dir := filepath.Join(s.root, app)
	ents, err := os.ReadDir(dir)
	if err != nil {
		logf("version store: %s: %v", app, err)
		return
	}
	// Never delete what a link names, whatever its spelling.
	keep := map[string]bool{}
	holding := map[string]string{}
	named := map[string]string{}
	present := map[string]bool{}
	for _, l := range []string{currentLink, previousLink} {
		t, ok, err := s.readLink(app, l)
		if err != nil {
			logf("version store: %v", err)
			// Unreadable: keep everything rather than guess.
			return
		}
		present[l] = ok
		// A link into a version (current -> <hex>/server.js) names no
		// version, but deleting what it leads to is still not Recover's
		// to do.
		if h := s.versionHolding(app, l); h != "" {
			keep[h] = true
			holding[l] = h
		}
		if t == "" {
			if ok {
				logf("version store: %s of %s names no version", l, app)
			}
			continue
		}
		keep[t] = true
		named[l] = t
	}
	s.recoverCurrent(app, dir, named, holding[currentLink], present, logf)
	removed := map[string]bool{}
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, incomingPrefix) {
			if err := removeTree(filepath.Join(dir, name)); err != nil {
				logf("version store: %s: removing %s: %v", app, name, err)
			} else {
				logf("version store: %s: removed the interrupted %s", app, name)
			}
			continue
		}
		h := strings.TrimSuffix(name, recordSuffix)
		if !hexRE.MatchString(h) || keep[h] || removed[h] {
			continue
		}
		removed[h] = true
		if err := removeVersion(dir, h); err != nil {
			logf("version store: %s: %v", app, err)
		} else {
			logf("version store: %s: removed version %s (neither current nor previous)", app, h[:12])
		}
	}
	if err := syncDir(dir); err != nil {
		logf("version store: %v", err)
	}
}

// recoverCurrent falls back to previous when current exists but does not
// name a complete version (a damaged record, a missing directory) and
// previous does: the app ran a version of its own before, so it should
// not silently run the image's (issue 12, item 3). The damaged version
// becomes previous, as in a rollback, so it stays on disk and a deploy
// drops it. With no link at all, current is the image's on purpose (Reset)
// and stays so; with no complete previous, the image's version runs.
func (s *Store) recoverCurrent(app, dir string, named map[string]string, held string, present map[string]bool, logf func(string, ...any)) {
	if !present[currentLink] {
		return
	}
	cur := named[currentLink]
	why := errors.New("the link names no version")
	if cur != "" {
		_, why = s.load(app, cur)
		if why == nil {
			return
		}
	}
	prev := named[previousLink]
	if prev == "" || prev == cur {
		logf("version store: current of %s is unusable (%v) and there is no previous version: the image's version runs; deploy again", app, why)
		return
	}
	if _, err := s.load(app, prev); err != nil {
		logf("version store: current of %s is unusable (%v), and so is previous (%v): the image's version runs; deploy again", app, why, err)
		return
	}
	// current first: a power cut after it leaves previous equal to
	// current, which reads as none.
	if err := s.setLink(dir, currentLink, prev, "recover:current"); err != nil {
		logf("version store: %s: making the previous version current: %v", app, err)
		return
	}
	// What current led into stays linked, so it stays on disk.
	if cur == "" && held != prev {
		cur = held
	}
	var err error
	if cur != "" {
		err = s.setLink(dir, previousLink, cur, "recover:previous")
	} else {
		err = s.removeLink(dir, previousLink, "recover:previous")
	}
	if err != nil {
		logf("version store: %s: %v", app, err)
	}
	logf("version store: current of %s is unusable (%v): back to the previous version %s", app, why, prev[:12])
}

// removeVersion removes dir/<h>.json, then dir/<h>: the record first, so a
// power cut in the middle leaves an incomplete version, never a complete-
// looking half one.
//
// A version with a file system mounted inside (a persist dir still bound)
// is refused whole, before its record goes: it stays complete and
// unlinked, and Recover removes it at a boot without the mount.
func removeVersion(dir, h string) error {
	if ms, err := mountsUnder(filepath.Join(dir, h)); err != nil {
		return fmt.Errorf("removing version %s: %w", h, err)
	} else if len(ms) > 0 {
		return fmt.Errorf("removing version %s: %w", h, &MountError{Path: filepath.Join(dir, h), Mounts: ms})
	}
	if err := os.Remove(filepath.Join(dir, h+recordSuffix)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing version %s: %w", h, err)
	}
	if err := syncDir(dir); err != nil {
		return err
	}
	if err := removeTree(filepath.Join(dir, h)); err != nil {
		return fmt.Errorf("removing version %s: %w", h, err)
	}
	return nil
}

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

func randomName() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
