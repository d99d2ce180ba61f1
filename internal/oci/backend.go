package oci

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/match"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// refNameAnnotation tags a manifest in an OCI layout's index.json.
const refNameAnnotation = "org.opencontainers.image.ref.name"

// counter counts the bytes a transport moves.
type counter struct {
	next               http.RoundTripper
	sent, recv, upload atomic.Int64
}

func (c *counter) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		up := strings.Contains(req.URL.Path, "/blobs/uploads/")
		req.Body = &countBody{ReadCloser: req.Body, n: &c.sent, up: up, c: c}
	}
	resp, err := c.next.RoundTrip(req)
	if resp != nil && resp.Body != nil {
		resp.Body = &countBody{ReadCloser: resp.Body, n: &c.recv}
	}
	return resp, err
}

type countBody struct {
	io.ReadCloser
	n  *atomic.Int64
	up bool
	c  *counter
}

func (b *countBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	if b.up {
		b.c.upload.Add(int64(n))
	}
	return n, err
}

func (o *Options) remoteOptions(ctx context.Context, t http.RoundTripper) []remote.Option {
	opts := []remote.Option{remote.WithContext(ctx), remote.WithTransport(t)}
	if o.Auth != nil {
		opts = append(opts, remote.WithAuth(o.Auth))
	} else {
		opts = append(opts, remote.WithAuthFromKeychain(o.keychain()))
	}
	if o.UserAgent != "" {
		opts = append(opts, remote.WithUserAgent(o.UserAgent))
	}
	return opts
}

func (o *Options) keychain() authn.Keychain {
	if o.Keychain != nil {
		return o.Keychain
	}
	return authn.DefaultKeychain
}

func writeRegistry(ctx context.Context, ref Ref, a *artifact, o Options, res *Pushed) error {
	img, err := partial.CompressedToImage(a)
	if err != nil {
		return err
	}
	c := &counter{next: o.transport()}
	err = remote.Write(ref.Name, img, o.remoteOptions(ctx, c)...)
	res.Sent, res.Received, res.Uploaded = c.sent.Load(), c.recv.Load(), c.upload.Load()
	if err != nil {
		return explain(err, ref, "pushing to")
	}
	return nil
}

// writeLayout adds a to the OCI layout at ref.Dir (created if missing),
// replacing what the tag named before; it returns the bytes of blobs the
// layout did not hold yet.
func writeLayout(ref Ref, a *artifact) (int64, error) {
	p, err := layout.FromPath(ref.Dir)
	if err != nil {
		if _, serr := os.Stat(filepath.Join(ref.Dir, "index.json")); !errors.Is(serr, fs.ErrNotExist) {
			return 0, fmt.Errorf("%s is not an OCI image layout: %w", ref.Dir, err)
		}
		if err := os.MkdirAll(ref.Dir, 0o755); err != nil {
			return 0, fmt.Errorf("creating %s: %w", ref.Dir, err)
		}
		if p, err = layout.Write(ref.Dir, empty.Index); err != nil {
			return 0, fmt.Errorf("creating the OCI image layout %s: %w", ref.Dir, err)
		}
	}
	var added int64
	for _, b := range a.order {
		if _, err := os.Stat(layoutBlob(ref.Dir, b.desc.Digest)); err != nil {
			added += b.desc.Size
		}
	}
	img, err := partial.CompressedToImage(a)
	if err != nil {
		return 0, err
	}
	if err := p.ReplaceImage(img, match.Annotation(refNameAnnotation, ref.Tag), layout.WithAnnotations(map[string]string{refNameAnnotation: ref.Tag})); err != nil {
		return 0, fmt.Errorf("writing the release into %s: %w", ref.Dir, err)
	}
	return added + int64(len(a.manifest)+len(a.config)), nil
}

func layoutBlob(dir, digest string) string {
	alg, hex, _ := strings.Cut(digest, ":")
	return filepath.Join(dir, "blobs", alg, hex)
}

// layoutManifest finds the manifest a layout's tag names.
func layoutManifest(ref Ref) (raw []byte, digest string, err error) {
	idx, err := os.ReadFile(filepath.Join(ref.Dir, "index.json"))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, "", fmt.Errorf("%s is not an OCI image layout (no index.json): push a release there first with nodeboot push APP_DIR oci:%s", ref.Dir, ref.Dir)
		}
		return nil, "", fmt.Errorf("reading %s: %w", ref.Dir, err)
	}
	var im v1.IndexManifest
	if err := json.Unmarshal(idx, &im); err != nil {
		return nil, "", fmt.Errorf("%s/index.json: %w", ref.Dir, err)
	}
	var found *v1.Descriptor
	var tags []string
	for i := range im.Manifests {
		d := &im.Manifests[i]
		if t := d.Annotations[refNameAnnotation]; t != "" {
			tags = append(tags, t)
			if t == ref.Tag {
				found = d
			}
		}
	}
	if found == nil {
		return nil, "", fmt.Errorf("%w: %s has no tag %q (its tags: %s)", ErrNotFound, ref.Dir, ref.Tag, orNone(strings.Join(tags, ", ")))
	}
	raw, err = readBlobFile(layoutBlob(ref.Dir, found.Digest.String()), found.Digest.String(), MaxRecordSize)
	if err != nil {
		return nil, "", err
	}
	return raw, found.Digest.String(), nil
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// ErrNotFound is wrapped when a tag, a repository or a blob is missing.
var ErrNotFound = errors.New("not found")

// ErrAuth is wrapped when the registry refuses the credentials.
var ErrAuth = errors.New("the registry refused the credentials")

// explain turns a registry client error into one that says what is wrong
// and what to do.
func explain(err error, ref Ref, doing string) error {
	var te *transport.Error
	if errors.As(err, &te) {
		reg := ref.Name.Context().RegistryStr()
		switch te.StatusCode {
		case http.StatusUnauthorized, http.StatusForbidden:
			return fmt.Errorf("%w: %s %s: %v; log in with `docker login %s` (nodeboot uses the Docker config's credentials and helpers); a node that follows it takes them from `nodeboot registry login NODE`", ErrAuth, doing, ref, err, reg)
		case http.StatusNotFound:
			return fmt.Errorf("%w: %s %s: %v; check the repository and tag (nodeboot push creates them)", ErrNotFound, doing, ref, err)
		}
		for _, d := range te.Errors {
			switch d.Code {
			case transport.UnauthorizedErrorCode, transport.DeniedErrorCode:
				return fmt.Errorf("%w: %s %s: %v; log in with `docker login %s` (a node that follows it: `nodeboot registry login NODE`)", ErrAuth, doing, ref, err, reg)
			case transport.ManifestUnknownErrorCode, transport.NameUnknownErrorCode, transport.BlobUnknownErrorCode:
				return fmt.Errorf("%w: %s %s: %v", ErrNotFound, doing, ref, err)
			}
		}
		return fmt.Errorf("%s %s: %w", doing, ref, err)
	}
	var ue *url.Error
	if errors.As(err, &ue) || strings.Contains(err.Error(), "no such host") {
		return fmt.Errorf("%s %s: cannot reach the registry: %w; check the registry's name and that it is up (and --insecure for one that speaks only plain HTTP)", doing, ref, err)
	}
	return fmt.Errorf("%s %s: %w", doing, ref, err)
}

// registryManifest gets the manifest a registry reference names.
func registryManifest(ctx context.Context, ref Ref, o *Options) ([]byte, string, error) {
	d, err := remote.Get(ref.Name, o.remoteOptions(ctx, o.transport())...)
	if err != nil {
		return nil, "", explain(err, ref, "reading")
	}
	if len(d.Manifest) > MaxRecordSize {
		return nil, "", invalid("manifest of %d bytes", len(d.Manifest))
	}
	return d.Manifest, d.Digest.String(), nil
}

// registryBlob opens blob digest of ref's repository from byte off on,
// through go-containerregistry's authenticating transport. The library
// reads blobs only whole; resuming a cut download needs a Range request.
func registryBlob(ctx context.Context, ref Ref, o *Options, digest string, off int64) (io.ReadCloser, error) {
	repo := ref.Name.Context()
	auth := o.Auth
	if auth == nil {
		var err error
		if auth, err = authn.Resolve(ctx, o.keychain(), repo); err != nil {
			return nil, fmt.Errorf("credentials for %s: %w", repo.RegistryStr(), err)
		}
	}
	rt, err := transport.NewWithContext(ctx, repo.Registry, auth, o.transport(), []string{repo.Scope(transport.PullScope)})
	if err != nil {
		return nil, explain(err, ref, "reading")
	}
	u := url.URL{Scheme: repo.Registry.Scheme(), Host: repo.RegistryStr(), Path: fmt.Sprintf("/v2/%s/blobs/%s", repo.RepositoryStr(), digest)}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	if off > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", off))
	}
	resp, err := (&http.Client{Transport: rt}).Do(req)
	if err != nil {
		return nil, explain(err, ref, "reading blob "+digest+" of")
	}
	switch {
	case resp.StatusCode == http.StatusPartialContent && off > 0:
		return resp.Body, nil
	case resp.StatusCode == http.StatusOK:
		// A registry (or a proxy) that ignores Range sends it all: skip
		// what is already here.
		if _, err := io.CopyN(io.Discard, resp.Body, off); err != nil {
			resp.Body.Close()
			return nil, fmt.Errorf("reading blob %s: %w", digest, err)
		}
		return resp.Body, nil
	}
	defer resp.Body.Close()
	return nil, explain(transport.CheckError(resp, http.StatusOK, http.StatusPartialContent), ref, "reading blob "+digest+" of")
}

// registryHead resolves a registry reference to its manifest's digest.
func registryHead(ctx context.Context, ref Ref, o *Options) (string, error) {
	d, err := remote.Head(ref.Name, o.remoteOptions(ctx, o.transport())...)
	if err != nil {
		return "", explain(err, ref, "resolving")
	}
	return d.Digest.String(), nil
}
