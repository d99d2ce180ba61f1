package oci

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
)

// LayoutPrefix starts a reference to an OCI image layout on disk.
const LayoutPrefix = "oci:"

// DefaultTag is the tag of a reference that names none.
const DefaultTag = "latest"

// Ref is where a release lives: a registry repository and a tag or digest,
// or an OCI image layout directory and a tag.
type Ref struct {
	// Registry reference; nil for a layout.
	Name name.Reference
	// Dir of an OCI image layout ("" for a registry), and its Tag.
	Dir string
	Tag string
}

// IsLayout says whether r names an OCI image layout on disk.
func (r Ref) IsLayout() bool { return r.Name == nil }

func (r Ref) String() string {
	if r.IsLayout() {
		return LayoutPrefix + r.Dir + ":" + r.Tag
	}
	return r.Name.String()
}

// ErrBadRef is wrapped by every ParseRef error.
var ErrBadRef = errors.New("bad reference")

var tagRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$`)

// ParseRef parses REF: registry/repo:tag, registry/repo@sha256:…, or
// oci:DIR[:TAG] (an OCI image layout; TAG defaults to latest). A registry
// reference must name its registry host (no Docker Hub default: a fleet
// should not publish somewhere by accident); insecure allows plain HTTP to
// it, which loopback hosts get anyway.
func ParseRef(s string, insecure bool) (Ref, error) {
	if rest, ok := strings.CutPrefix(s, LayoutPrefix); ok {
		dir, tag := rest, DefaultTag
		if i := strings.LastIndexByte(rest, ':'); i >= 0 && !strings.ContainsRune(rest[i+1:], '/') {
			dir, tag = rest[:i], rest[i+1:]
		}
		if dir == "" {
			return Ref{}, fmt.Errorf("%w %q: oci: needs a directory, as in oci:/media/usb/fleet or oci:./out/fleet:stable", ErrBadRef, s)
		}
		if !tagRE.MatchString(tag) {
			return Ref{}, fmt.Errorf("%w %q: tag %q: a tag is 1 to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'", ErrBadRef, s, tag)
		}
		return Ref{Dir: filepath.Clean(dir), Tag: tag}, nil
	}
	first, _, hasSlash := strings.Cut(s, "/")
	if !hasSlash || !(strings.ContainsAny(first, ".:") || first == "localhost") {
		return Ref{}, fmt.Errorf("%w %q: name the registry, as in registry.example.com/team/app:stable or localhost:5000/app:canary (or oci:DIR for a directory)", ErrBadRef, s)
	}
	opts := []name.Option{name.StrictValidation}
	if insecure {
		opts = append(opts, name.Insecure)
	}
	n, err := name.ParseReference(s, opts...)
	if err != nil {
		return Ref{}, fmt.Errorf("%w %q: %v; write it as registry/repository:tag", ErrBadRef, s, err)
	}
	if tg, ok := n.(name.Tag); ok && !tagRE.MatchString(tg.TagStr()) {
		return Ref{}, fmt.Errorf("%w %q: tag %q: a tag is 1 to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'", ErrBadRef, s, tg.TagStr())
	}
	return Ref{Name: n}, nil
}

// WithTag returns r with another tag (a registry reference loses its
// digest).
func (r Ref) WithTag(tag string) (Ref, error) {
	if !tagRE.MatchString(tag) {
		return Ref{}, fmt.Errorf("%w: tag %q: a tag is 1 to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'", ErrBadRef, tag)
	}
	if r.IsLayout() {
		r.Tag = tag
		return r, nil
	}
	r.Name = r.Name.Context().Tag(tag)
	return r, nil
}

// Options say how to reach a registry.
type Options struct {
	// Insecure allows plain HTTP to a registry that is not on loopback
	// (loopback may always use it, as docker does).
	Insecure bool
	// Auth, when set, is the only credential used (a node's pull
	// credentials); otherwise Keychain, else authn.DefaultKeychain (the
	// Docker config and its credential helpers, as `docker push` uses).
	Auth     authn.Authenticator
	Keychain authn.Keychain
	// Transport under authentication (tests count or cut bytes here);
	// http.DefaultTransport if nil.
	Transport http.RoundTripper
	// UserAgent for registry requests.
	UserAgent string
	// CacheDir keeps downloaded blobs (and partial ones, so a cut download
	// resumes); required to pull from a registry.
	CacheDir string
	// Attempts bounds how often one blob download is tried; each attempt
	// that moved bytes starts a new count. Default 5.
	Attempts int
}

func (o *Options) attempts() int {
	if o.Attempts > 0 {
		return o.Attempts
	}
	return 5
}

// loopback says whether host (host[:port]) is on this machine.
func loopback(host string) bool {
	h, _, err := net.SplitHostPort(host)
	if err != nil {
		h = host
	}
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(h, "[]"))
	return ip != nil && ip.IsLoopback()
}

// httpsOnly refuses plain-HTTP requests to hosts that were not allowed
// them. go-containerregistry itself falls back to HTTP for private
// addresses (10.x, 192.168.x); a node pulling its OS must not, unless its
// owner said so.
type httpsOnly struct {
	next     http.RoundTripper
	insecure bool
}

func (t *httpsOnly) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "http" && !t.insecure && !loopback(req.URL.Host) {
		return nil, fmt.Errorf("registry %s does not answer HTTPS; nodeboot uses plain HTTP only with --insecure (\"insecure\": true in nodeboot.json's follow) or for a registry on this machine", req.URL.Host)
	}
	return t.next.RoundTrip(req)
}

func (o *Options) transport() http.RoundTripper {
	next := o.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	return &httpsOnly{next: next, insecure: o.Insecure}
}
