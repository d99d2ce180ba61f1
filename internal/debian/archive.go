package debian

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/google/renameio/v2"
	"github.com/ulikunitz/xz"
)

// Archive is one suite of a Debian archive.
type Archive struct {
	// URL is the mirror's base: the directory holding dists/ and pool/.
	URL   string
	Suite string
	// Component is the archive area packages come from; "" = main.
	Component string
	// Keyring verifies InRelease; nil skips the check (said in Log).
	Keyring openpgp.EntityList
	// KeyringPath is where Keyring was read, for messages.
	KeyringPath string
	// CacheDir holds verified indices and packages; "" = the user cache
	// dir's nodeboot/debian.
	CacheDir string
	// HTTP is the client; nil = one with a generous timeout.
	HTTP *http.Client
	// Log receives progress and warnings; nil discards them.
	Log io.Writer
	// From says where URL and Suite came from (a sources file, the
	// environment), for messages.
	From string
}

// HostArchive returns the Debian archive the host is configured for: the
// environment's NODEBOOT_DEBIAN_MIRROR (and NODEBOOT_DEBIAN_SUITE) when
// set, else the Debian entry of apt's sources. Its keyring is the source's
// Signed-By file, else the Debian archive keyring when the host has it.
//
// A host without apt (macOS) has only the environment: the mirror is
// never guessed, and without it the error names the variable.
// NODEBOOT_DEBIAN_KEYRING names the keyring there (Debian's
// debian-archive-keyring.gpg); without one InRelease is not
// signature-checked, which Log says.
func HostArchive() (*Archive, error) {
	if runtime.GOOS != "linux" {
		return archiveFor(runtime.GOOS, nil, os.Getenv(EnvMirror), os.Getenv(EnvSuite), os.Getenv(EnvKeyring))
	}
	srcs, err := HostSources()
	if err != nil {
		return nil, err
	}
	return archiveFor(runtime.GOOS, srcs, os.Getenv(EnvMirror), os.Getenv(EnvSuite), os.Getenv(EnvKeyring))
}

// archiveFor is archiveFrom on a host of goos, with the keyring of
// $NODEBOOT_DEBIAN_KEYRING (envKeyring) in place of the default.
func archiveFor(goos string, srcs []Source, envMirror, envSuite, envKeyring string) (*Archive, error) {
	if goos != "linux" && envMirror == "" {
		return nil, fmt.Errorf("no Debian mirror configured: a %s host has no apt sources to take it from; set %s to a Debian mirror's URL (the directory holding dists/ and pool/), optionally %s (default stable) and %s (the Debian archive keyring, to verify the mirror's signature)", goos, EnvMirror, EnvSuite, EnvKeyring)
	}
	a, err := archiveFrom(srcs, envMirror, envSuite)
	if err != nil || envKeyring == "" {
		return a, err
	}
	kr, err := LoadKeyring(envKeyring)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", EnvKeyring, err)
	}
	a.Keyring, a.KeyringPath = kr, envKeyring
	return a, nil
}

func archiveFrom(srcs []Source, envMirror, envSuite string) (*Archive, error) {
	a := &Archive{Component: "main"}
	src, found := pickDebian(srcs)
	switch {
	case envMirror != "":
		a.URL, a.From = envMirror, EnvMirror
		a.Suite = envSuite
		if a.Suite == "" && found {
			a.Suite = src.Suite
		}
		if a.Suite == "" {
			a.Suite = "stable"
		}
	case found:
		a.URL, a.Suite, a.From = src.URI, src.Suite, src.File
		if envSuite != "" {
			a.Suite = envSuite
		}
	default:
		return nil, fmt.Errorf("no Debian archive configured: apt's sources (/etc/apt/sources.list, sources.list.d) name none with a main component; set %s to a Debian mirror's URL (the directory holding dists/ and pool/) and optionally %s (default stable)", EnvMirror, EnvSuite)
	}
	u, err := url.Parse(a.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("Debian mirror %q (from %s) is not an http(s) URL", a.URL, a.From)
	}
	a.URL = strings.TrimSuffix(a.URL, "/")
	kp := DefaultKeyring
	if found && envMirror == "" && src.SignedBy != "" {
		kp = src.SignedBy
	}
	if _, err := os.Stat(kp); err == nil {
		kr, err := LoadKeyring(kp)
		if err != nil {
			return nil, err
		}
		a.Keyring, a.KeyringPath = kr, kp
	}
	return a, nil
}

func (a *Archive) logf(format string, args ...any) {
	if a.Log != nil {
		fmt.Fprintf(a.Log, format+"\n", args...)
	}
}

func (a *Archive) cacheDir() (string, error) {
	if a.CacheDir != "" {
		return a.CacheDir, nil
	}
	c, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no user cache dir: %w (set XDG_CACHE_HOME)", err)
	}
	return filepath.Join(c, "nodeboot", "debian"), nil
}

func (a *Archive) client() *http.Client {
	if a.HTTP != nil {
		return a.HTTP
	}
	return &http.Client{Timeout: 10 * time.Minute}
}

// get fetches base/rel into memory, at most max bytes.
func (a *Archive) get(ctx context.Context, rel string, max int64) ([]byte, error) {
	var buf bytes.Buffer
	if err := a.download(ctx, rel, &buf, max); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// ErrNotFound is a 404 from the mirror.
var ErrNotFound = errors.New("not found on the mirror")

func (a *Archive) download(ctx context.Context, rel string, w io.Writer, max int64) error {
	u := a.URL + "/" + rel
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := a.client().Do(req)
	if err != nil {
		return fmt.Errorf("fetching %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return fmt.Errorf("fetching %s: %w", u, ErrNotFound)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetching %s: %s", u, resp.Status)
	}
	n, err := io.Copy(w, io.LimitReader(resp.Body, max+1))
	if err != nil {
		return fmt.Errorf("fetching %s: %w", u, err)
	}
	if n > max {
		return fmt.Errorf("fetching %s: more than %d bytes", u, max)
	}
	return nil
}

// Release fetches and verifies the suite's InRelease. When the mirror
// cannot be reached, the last verified copy in the cache is used (and
// verified again), so builds work offline.
func (a *Archive) Release(ctx context.Context) (*Release, error) {
	cache, err := a.cacheDir()
	if err != nil {
		return nil, err
	}
	key := sha256.Sum256([]byte(a.URL + "\x00" + a.Suite))
	cached := filepath.Join(cache, "release", hex.EncodeToString(key[:8])+"-InRelease")
	data, err := a.get(ctx, "dists/"+a.Suite+"/InRelease", 16<<20)
	offline := false
	if err != nil {
		old, rerr := os.ReadFile(cached)
		if rerr != nil || errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("%w (the Debian archive from %s; set %s to another mirror)", err, a.From, EnvMirror)
		}
		a.logf("debian: %v; using the Release cached before", err)
		data, offline = old, true
	}
	r, err := ParseInRelease(data, a.Keyring)
	if err != nil {
		if errors.Is(err, ErrSignature) {
			return nil, fmt.Errorf("%s/dists/%s/InRelease: %w against %s: the mirror's files cannot be trusted; check %s or set %s", a.URL, a.Suite, err, a.KeyringPath, a.From, EnvMirror)
		}
		return nil, fmt.Errorf("%s/dists/%s/InRelease: %w", a.URL, a.Suite, err)
	}
	if a.Keyring == nil {
		a.logf("debian: warning: %s/dists/%s/InRelease not signature-checked: no keyring at %s (install debian-archive-keyring, or set %s to its debian-archive-keyring.gpg); packages are still checked against its SHA-256 sums", a.URL, a.Suite, DefaultKeyring, EnvKeyring)
	}
	if r.Origin != "Debian" {
		return nil, fmt.Errorf("%s/dists/%s is not the Debian archive (Origin %q, from %s): set %s to a Debian mirror", a.URL, a.Suite, r.Origin, a.From, EnvMirror)
	}
	if !offline {
		if err := os.MkdirAll(filepath.Dir(cached), 0o755); err == nil {
			_ = renameio.WriteFile(cached, data, 0o644)
		}
	}
	return r, nil
}

// maxIndex bounds a decompressed Packages index (arm64 main: ~45 MiB).
const maxIndex = 512 << 20

// Index fetches and verifies arch's Packages index of the suite's
// component: the first of Packages.xz, .gz and plain that the Release
// lists, checked against its size and SHA-256, cached by that hash.
func (a *Archive) Index(ctx context.Context, arch string) (*Index, error) {
	r, err := a.Release(ctx)
	if err != nil {
		return nil, err
	}
	comp := a.Component
	if comp == "" {
		comp = "main"
	}
	if len(r.Architectures) > 0 && !hasWord(strings.Join(r.Architectures, " "), arch) {
		return nil, fmt.Errorf("the Debian suite %s at %s has no %s packages (it has %s)", a.Suite, a.URL, arch, strings.Join(r.Architectures, " "))
	}
	base := comp + "/binary-" + arch + "/Packages"
	for _, ext := range []string{".xz", ".gz", ""} {
		sum, ok := r.Files[base+ext]
		if !ok {
			continue
		}
		raw, err := a.verifiedFile(ctx, "dists/"+a.Suite+"/"+base+ext, sum, "index")
		if err != nil {
			return nil, err
		}
		rd, err := decompress(ext, raw)
		if err != nil {
			return nil, fmt.Errorf("%s%s: %w", base, ext, err)
		}
		ix, err := ParsePackages(io.LimitReader(rd, maxIndex), arch)
		if err != nil {
			return nil, fmt.Errorf("%s/dists/%s/%s%s: %w", a.URL, a.Suite, base, ext, err)
		}
		ix.Release = r
		return ix, nil
	}
	return nil, fmt.Errorf("the Release of %s at %s lists no %s (Packages.xz, .gz or plain)", a.Suite, a.URL, base)
}

func decompress(ext string, b []byte) (io.Reader, error) {
	switch ext {
	case ".xz":
		return xz.NewReader(bytes.NewReader(b))
	case ".gz":
		return gzip.NewReader(bytes.NewReader(b))
	}
	return bytes.NewReader(b), nil
}

// verifiedFile returns the bytes of rel, which must have sum: from the
// cache (named by hash, checked again) or the mirror.
func (a *Archive) verifiedFile(ctx context.Context, rel string, sum FileSum, kind string) ([]byte, error) {
	cache, err := a.cacheDir()
	if err != nil {
		return nil, err
	}
	p := filepath.Join(cache, kind, sum.SHA256)
	if b, err := os.ReadFile(p); err == nil && checkSum(b, sum) == nil {
		return b, nil
	}
	b, err := a.get(ctx, rel, sum.Size)
	if err != nil {
		return nil, err
	}
	if err := checkSum(b, sum); err != nil {
		return nil, fmt.Errorf("%s/%s: %w: the mirror served a file the signed Release does not vouch for", a.URL, rel, err)
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err == nil {
		_ = renameio.WriteFile(p, b, 0o644)
	}
	return b, nil
}

func checkSum(b []byte, sum FileSum) error {
	if int64(len(b)) != sum.Size {
		return fmt.Errorf("size %d, want %d", len(b), sum.Size)
	}
	h := sha256.Sum256(b)
	if got := hex.EncodeToString(h[:]); got != sum.SHA256 {
		return fmt.Errorf("SHA-256 %s, want %s", got, sum.SHA256)
	}
	return nil
}

// maxDeb bounds one package (the largest library packages are tens of MiB).
const maxDeb = 1 << 30

// Fetch returns the path of p's .deb in the cache, downloading it first
// when needed; either way its SHA-256 is the one the index lists.
func (a *Archive) Fetch(ctx context.Context, p *Package) (string, error) {
	cache, err := a.cacheDir()
	if err != nil {
		return "", err
	}
	if p.Size > maxDeb {
		return "", fmt.Errorf("package %s is %d bytes, more than nodeboot fetches", p.Name, p.Size)
	}
	name := fmt.Sprintf("%s_%s_%s.deb", p.Name, strings.ReplaceAll(p.Version, ":", "%3a"), p.Architecture)
	if strings.ContainsAny(name, "/\x00") {
		return "", fmt.Errorf("package %s: unusable name or version %q", p.Name, p.Version)
	}
	dst := filepath.Join(cache, "pool", name)
	sum := FileSum{Size: p.Size, SHA256: p.SHA256}
	if err := checkFile(dst, sum); err == nil {
		return dst, nil
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", err
	}
	pf, err := renameio.NewPendingFile(dst, renameio.WithPermissions(0o644))
	if err != nil {
		return "", err
	}
	defer pf.Cleanup()
	h := sha256.New()
	a.logf("debian: fetching %s %s (%s)", p.Name, p.Version, p.Architecture)
	if err := a.download(ctx, p.Filename, io.MultiWriter(pf, h), p.Size); err != nil {
		return "", err
	}
	st, err := pf.Stat()
	if err != nil {
		return "", err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != p.SHA256 || st.Size() != p.Size {
		return "", fmt.Errorf("%s/%s: SHA-256 %s and size %d, want %s and %d: the mirror served a package its signed index does not vouch for", a.URL, p.Filename, got, st.Size(), p.SHA256, p.Size)
	}
	if err := pf.CloseAtomicallyReplace(); err != nil {
		return "", err
	}
	return dst, nil
}

func checkFile(p string, sum FileSum) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return err
	}
	if n != sum.Size {
		return fmt.Errorf("size %d, want %d", n, sum.Size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sum.SHA256 {
		return fmt.Errorf("SHA-256 %s, want %s", got, sum.SHA256)
	}
	return nil
}
