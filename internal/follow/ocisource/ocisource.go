// Package ocisource is the follower's view of a tag in an OCI registry
// (follow.Source over internal/oci): it resolves the tag, verifies the
// release record against the image's keys, and tells releases the node
// must never apply (follow.ErrRejected) from a registry it cannot reach.
package ocisource

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/renameio/v2"

	"github.com/nodeboot/nodeboot/internal/contract"
	"github.com/nodeboot/nodeboot/internal/crash"
	"github.com/nodeboot/nodeboot/internal/follow"
	"github.com/nodeboot/nodeboot/internal/oci"
	"github.com/nodeboot/nodeboot/internal/ospayload"
)

// Config sets a Source up.
type Config struct {
	Ref      string
	Insecure bool
	// Keys are the update keys the image trusts.
	Keys []ed25519.PublicKey
	// Auth is the pull credentials (nil: anonymous).
	Auth authn.Authenticator
	// CacheDir keeps downloaded blobs, so a cut download resumes; it holds
	// only the blobs of the release being applied.
	CacheDir string
}

// Source is a follow.Source.
type Source struct {
	cfg Config
	src *oci.Source
}

// New checks the reference and returns the Source; nothing is contacted.
func New(cfg Config) (*Source, error) {
	ref, err := oci.ParseRef(cfg.Ref, cfg.Insecure)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.CacheDir, 0o700); err != nil {
		return nil, fmt.Errorf("the download cache: %w", err)
	}
	o := oci.Options{Insecure: cfg.Insecure, CacheDir: cfg.CacheDir, UserAgent: "nodeboot-node"}
	if cfg.Auth != nil {
		o.Auth = cfg.Auth
	} else {
		// Never the node's own Docker config (it has none): anonymous.
		o.Auth = authn.Anonymous
	}
	return &Source{cfg: cfg, src: oci.Open(ref, o)}, nil
}

// FileAuth is the pull credentials kept in the file at path
// (contract.FollowAuthFile, written by WriteAuth), read at each request:
// credentials set or removed while the node runs count from the next
// check on. No file: anonymous.
type FileAuth string

// Authorization implements authn.Authenticator.
func (p FileAuth) Authorization() (*authn.AuthConfig, error) {
	c, err := ReadAuth(string(p))
	if err != nil {
		return nil, err
	}
	a := AuthConfig(c)
	return &a, nil
}

// AuthConfig is c as go-containerregistry takes it.
func AuthConfig(c contract.RegistryCredentials) authn.AuthConfig {
	return authn.AuthConfig{Username: c.Username, Password: c.Password, IdentityToken: c.IdentityToken, RegistryToken: c.RegistryToken}
}

// ReadAuth reads the credentials WriteAuth kept at path; none (and no
// error) when there is no file.
func ReadAuth(path string) (contract.RegistryCredentials, error) {
	var c contract.RegistryCredentials
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("the pull credentials: %w", err)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		// Never quote the file: it holds a password.
		return c, fmt.Errorf("the pull credentials in %s are damaged; set them again with `nodeboot registry login`", path)
	}
	return c, nil
}

// HasAuth says whether path holds pull credentials (for status: never
// what they are).
func HasAuth(path string) bool {
	c, err := ReadAuth(path)
	return err == nil && !c.Empty()
}

// WriteAuth keeps c at path, root's and readable by root alone, in a
// directory only root may enter, replaced atomically so that a power cut
// leaves the old credentials or the new, never half of them.
func WriteAuth(path string, c contract.RegistryCredentials) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return renameio.WriteFile(path, b, 0o400)
}

// Resolve implements follow.Source.
func (s *Source) Resolve(ctx context.Context) (string, error) {
	return s.src.Resolve(ctx)
}

// rejected are the errors that say what a digest holds is unusable,
// whatever the network does: it is not retried until the tag moves.
var rejected = []error{ospayload.ErrUntrusted, ospayload.ErrBadSignature, oci.ErrNotRelease, oci.ErrInvalid, oci.ErrDigest}

func classify(err error) error {
	for _, r := range rejected {
		if errors.Is(err, r) {
			return fmt.Errorf("%w: %w", follow.ErrRejected, err)
		}
	}
	return err
}

// Fetch implements follow.Source: the record is verified here; each blob
// is checked against it as it is fetched, when the release is applied.
func (s *Source) Fetch(ctx context.Context, digest string) (*follow.Release, error) {
	r, err := s.src.Release(ctx, digest, s.cfg.Keys)
	if err != nil {
		return nil, classify(err)
	}
	s.prune(r.Record)
	rel := &follow.Release{Version: r.Record.Created.UTC().Format("2006-01-02T15:04:05Z")}
	if r.Record.Rollout != nil {
		rel.Schedule = r.Record.Rollout
	}
	for _, a := range r.Record.Apps {
		rel.Apps = append(rel.Apps, follow.AppRelease{
			Name:   a.Name,
			Digest: a.Bundle.Digest,
			Open:   func(ctx context.Context) (io.ReadCloser, error) { return s.openApp(ctx, r, a) },
		})
	}
	if o := r.Record.OS; o != nil {
		rel.OS = &follow.OSRelease{Image: o.Image, Version: o.Version, Open: func(ctx context.Context) (io.ReadCloser, error) {
			p, err := r.FetchOS(ctx)
			if err != nil {
				return nil, classify(err)
			}
			return p.Open(0)
		}}
	}
	return rel, nil
}

// openApp downloads the app's layers first (a cut download resumes, a
// blob that does not match is refused), then streams the bundle they
// assemble into from the cache, so the stream itself only fails with the
// disk.
func (s *Source) openApp(ctx context.Context, r *oci.Release, a oci.App) (io.ReadCloser, error) {
	for _, l := range a.Layers {
		if _, err := r.Fetch(ctx, l.Blob); err != nil {
			return nil, classify(fmt.Errorf("app %s, %s layer: %w", a.Name, l.Role, err))
		}
	}
	pr, pw := io.Pipe()
	// PID 1 starts no goroutine a panic could take it down with.
	crash.Go("follow: bundle of "+a.Name, func() {
		_, err := r.WriteBundle(ctx, a.Name, pw)
		pw.CloseWithError(err)
	})
	return pr, nil
}

// prune removes cached blobs that rec does not name: the cache holds one
// release's worth, not every release the node ever saw.
func (s *Source) prune(rec *oci.Record) {
	keep := map[string]bool{}
	add := func(d string) { keep[strings.TrimPrefix(d, "sha256:")] = true }
	for _, a := range rec.Apps {
		for _, l := range a.Layers {
			add(l.Blob.Digest)
		}
	}
	if o := rec.OS; o != nil {
		for _, b := range []oci.Blob{o.Manifest, o.Signature, o.Kernel, o.RootFS} {
			add(b.Digest)
		}
	}
	// internal/oci keeps blobs as blobs/sha256/<hex>[.partial].
	dir := filepath.Join(s.cfg.CacheDir, "blobs", "sha256")
	des, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, de := range des {
		if !keep[strings.TrimSuffix(de.Name(), ".partial")] {
			os.Remove(filepath.Join(dir, de.Name()))
		}
	}
}
