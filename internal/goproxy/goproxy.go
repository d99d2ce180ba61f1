// Package goproxy fetches a Go module over the module proxy protocol
// (GOPROXY, honouring GONOPROXY/GOPRIVATE) without the go command, and
// verifies it against the h1: hash nodeboot was built with (its go.sum), so a
// user needs no Go toolchain for the default kernel. The zip format, its
// checks and the hash are golang.org/x/mod's, the same code the go command
// uses.
package goproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/dirhash"
	modzip "golang.org/x/mod/zip"
)

// DefaultProxy is the GOPROXY used when the environment sets none. The
// Makefile stamps the build host's (`go env GOPROXY`), so a CLI installed
// from npm reaches the same proxy its builder did.
var DefaultProxy string

// ErrDirect means the module may not come from a proxy (GOPROXY=direct, or
// GONOPROXY/GOPRIVATE match it): only the go command can fetch it then.
var ErrDirect = errors.New("the module must be fetched directly from its origin, which needs the go command")

// ErrChecksum means a proxy served a module whose content is not what
// nodeboot was built with. It is never retried on another proxy, as the go
// command does not either: it is a security error, not a miss.
var ErrChecksum = errors.New("checksum mismatch")

// Pinned reads mod's version from go.mod and the h1: hash of its content
// from go.sum.
func Pinned(gomod, gosum []byte, mod string) (module.Version, string, error) {
	f, err := modfile.Parse("go.mod", gomod, nil)
	if err != nil {
		return module.Version{}, "", fmt.Errorf("reading nodeboot's go.mod: %w", err)
	}
	v := module.Version{Path: mod}
	for _, r := range f.Require {
		if r.Mod.Path == mod {
			v.Version = r.Mod.Version
		}
	}
	for _, r := range f.Replace {
		if r.Old.Path == mod && (r.Old.Version == "" || r.Old.Version == v.Version) {
			if r.New.Version == "" {
				return module.Version{}, "", fmt.Errorf("nodeboot's go.mod replaces %s with the directory %s: pass --kernel PATH", mod, r.New.Path)
			}
			v = r.New
		}
	}
	if v.Version == "" {
		return module.Version{}, "", fmt.Errorf("nodeboot's go.mod does not require %s", mod)
	}
	for _, line := range strings.Split(string(gosum), "\n") {
		fs := strings.Fields(line)
		if len(fs) == 3 && fs[0] == v.Path && fs[1] == v.Version && strings.HasPrefix(fs[2], "h1:") {
			return v, fs[2], nil
		}
	}
	return module.Version{}, "", fmt.Errorf("nodeboot's go.sum has no h1: hash for %s@%s", v.Path, v.Version)
}

// Fetcher downloads verified modules into a cache directory.
type Fetcher struct {
	// Proxy is a GOPROXY list; "" means the environment's GOPROXY, then
	// DefaultProxy, then `go env GOPROXY`.
	Proxy string
	// NoProxy is a GONOPROXY pattern list; "" means the environment's
	// GONOPROXY, else GOPRIVATE.
	NoProxy string
	// Dir holds one extracted directory per module version.
	Dir    string
	Client *http.Client
	Log    func(format string, args ...any)
}

func (f *Fetcher) logf(format string, args ...any) {
	if f.Log != nil {
		f.Log(format, args...)
	}
}

// ModuleDir returns where m lives (or will live) in the cache.
func (f *Fetcher) ModuleDir(m module.Version) (string, error) {
	p, err := module.EscapePath(m.Path)
	if err != nil {
		return "", err
	}
	v, err := module.EscapeVersion(m.Version)
	if err != nil {
		return "", err
	}
	return filepath.Join(f.Dir, filepath.FromSlash(p)+"@"+v), nil
}

// Get returns the directory of m, whose content hashes to h1. A cached copy
// is hashed again on every call, so a damaged one (a truncated file, an
// edit) is fetched again rather than used.
func (f *Fetcher) Get(ctx context.Context, m module.Version, h1 string) (string, error) {
	dir, err := f.ModuleDir(m)
	if err != nil {
		return "", fmt.Errorf("module %s@%s: %w", m.Path, m.Version, err)
	}
	if _, err := os.Stat(dir); err == nil {
		if got, err := dirhash.HashDir(dir, m.Path+"@"+m.Version, dirhash.Hash1); err == nil && got == h1 {
			return dir, nil
		}
		f.logf("the cached %s@%s in %s does not match go.sum's hash: fetching it again", m.Path, m.Version, dir)
		if err := removeAll(dir); err != nil {
			return "", fmt.Errorf("removing the damaged %s: %w", dir, err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", fmt.Errorf("module cache: %w", err)
	}
	zipPath, err := f.download(ctx, m)
	if err != nil {
		return "", err
	}
	defer os.Remove(zipPath)
	got, err := dirhash.HashZip(zipPath, dirhash.Hash1)
	if err != nil {
		return "", fmt.Errorf("reading the downloaded zip of %s@%s: %w", m.Path, m.Version, err)
	}
	if got != h1 {
		return "", fmt.Errorf("%s@%s: %w: the proxy served content hashing to %s, nodeboot was built with %s; refusing it (check GOPROXY, or pass --kernel PATH)", m.Path, m.Version, ErrChecksum, got, h1)
	}
	// Extract beside the final directory and rename, so a crash never leaves
	// a half-extracted module where the next run would look.
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".tmp-")
	if err != nil {
		return "", fmt.Errorf("module cache: %w", err)
	}
	defer removeAll(tmp)
	if err := modzip.Unzip(filepath.Join(tmp, "m"), m, zipPath); err != nil {
		return "", fmt.Errorf("extracting %s@%s: %w", m.Path, m.Version, err)
	}
	if err := os.Rename(filepath.Join(tmp, "m"), dir); err != nil {
		// Another nodeboot may have put it there meanwhile.
		if got, herr := dirhash.HashDir(dir, m.Path+"@"+m.Version, dirhash.Hash1); herr == nil && got == h1 {
			return dir, nil
		}
		return "", fmt.Errorf("module cache: %w", err)
	}
	return dir, nil
}

// download fetches m's zip from the first proxy that has it, following the
// go command's rules: after a proxy in a comma-separated list, only a "not
// found" (404, 410) moves on to the next; after a pipe, any failure does.
func (f *Fetcher) download(ctx context.Context, m module.Version) (string, error) {
	if f.noProxy(m.Path) {
		return "", fmt.Errorf("%s matches GONOPROXY/GOPRIVATE: %w", m.Path, ErrDirect)
	}
	list, err := f.proxyList()
	if err != nil {
		return "", err
	}
	var errs []string
	for _, p := range list {
		switch p.url {
		case "off":
			return "", fmt.Errorf("fetching %s@%s: GOPROXY=off forbids downloads: set GOPROXY to a module proxy, or pass --kernel PATH", m.Path, m.Version)
		case "direct":
			return "", fmt.Errorf("fetching %s@%s (GOPROXY reached \"direct\"%s): %w", m.Path, m.Version, tried(errs), ErrDirect)
		}
		path, err := f.get(ctx, p.url, m)
		if err == nil {
			return path, nil
		}
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		errs = append(errs, err.Error())
		var nf notFound
		if !p.fallThrough && !errors.As(err, &nf) {
			break
		}
	}
	return "", fmt.Errorf("fetching %s@%s from the module proxy: %s; check GOPROXY and the network, or pass --kernel PATH", m.Path, m.Version, strings.Join(errs, "; "))
}

func tried(errs []string) string {
	if len(errs) == 0 {
		return ""
	}
	return " after: " + strings.Join(errs, "; ")
}

type notFound struct{ msg string }

func (e notFound) Error() string { return e.msg }

func (f *Fetcher) get(ctx context.Context, proxy string, m module.Version) (string, error) {
	p, _ := module.EscapePath(m.Path)
	v, _ := module.EscapeVersion(m.Version)
	u := strings.TrimSuffix(proxy, "/") + "/" + p + "/@v/" + v + ".zip"
	f.logf("fetching %s@%s from %s", m.Path, m.Version, redact(proxy))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", fmt.Errorf("%s: %w", redact(proxy), err)
	}
	c := f.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", fmt.Errorf("%s: %w", redact(proxy), err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone:
		return "", notFound{fmt.Sprintf("%s: %s", redact(proxy), resp.Status)}
	case resp.StatusCode != http.StatusOK:
		return "", fmt.Errorf("%s: %s", redact(proxy), resp.Status)
	}
	tmp, err := os.CreateTemp(f.Dir, ".tmp-*.zip")
	if err != nil {
		return "", fmt.Errorf("module cache: %w", err)
	}
	// x/mod refuses module zips over 500 MB; read no more than that.
	_, err = io.Copy(tmp, io.LimitReader(resp.Body, modzip.MaxZipFile+1))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp.Name())
		return "", fmt.Errorf("%s: downloading: %w", redact(proxy), err)
	}
	return tmp.Name(), nil
}

type proxyEntry struct {
	url         string
	fallThrough bool // a pipe followed it: any error moves on
}

// proxyList parses GOPROXY as the go command does.
func (f *Fetcher) proxyList() ([]proxyEntry, error) {
	v := f.Proxy
	if v == "" {
		v = os.Getenv("GOPROXY")
	}
	if v == "" {
		v = DefaultProxy
	}
	if v == "" {
		if goBin, err := exec.LookPath("go"); err == nil {
			if out, err := exec.Command(goBin, "env", "GOPROXY").Output(); err == nil {
				v = strings.TrimSpace(string(out))
			}
		}
	}
	if v == "" {
		return nil, errors.New("no Go module proxy is configured to fetch the kernel from: set GOPROXY (the value `go env GOPROXY` prints on a machine with Go), or pass --kernel PATH")
	}
	var list []proxyEntry
	for v != "" {
		i := strings.IndexAny(v, ",|")
		item, sep := v, byte(0)
		if i >= 0 {
			item, sep, v = v[:i], v[i], v[i+1:]
		} else {
			v = ""
		}
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if item != "off" && item != "direct" {
			u, err := url.Parse(item)
			if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				return nil, fmt.Errorf("GOPROXY entry %q is not an http(s) URL, \"direct\" or \"off\"", item)
			}
		}
		list = append(list, proxyEntry{url: item, fallThrough: sep == '|'})
	}
	return list, nil
}

func (f *Fetcher) noProxy(mod string) bool {
	v := f.NoProxy
	if v == "" {
		v = os.Getenv("GONOPROXY")
	}
	if v == "" {
		v = os.Getenv("GOPRIVATE")
	}
	return v != "" && module.MatchPrefixPatterns(v, mod)
}

// redact drops credentials a GOPROXY URL may carry from messages.
func redact(proxy string) string {
	u, err := url.Parse(proxy)
	if err != nil || u.User == nil {
		return proxy
	}
	u.User = nil
	return u.String()
}

// removeAll removes a tree whose files x/mod extracted read-only.
func removeAll(dir string) error {
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o755)
		}
		return nil
	})
	return os.RemoveAll(dir)
}

// ProxyURLs lists the proxies the fetcher would ask, in order ("direct"
// and "off" left out), for `nodeboot doctor`.
func (f *Fetcher) ProxyURLs() ([]string, error) {
	list, err := f.proxyList()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, p := range list {
		if p.url != "direct" && p.url != "off" {
			out = append(out, redact(p.url))
		}
	}
	return out, nil
}
