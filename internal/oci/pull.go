package oci

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nodeboot/nodeboot/internal/bundle"
	"github.com/nodeboot/nodeboot/internal/ospayload"
)

// ErrNotRelease is wrapped when a tag holds something other than a
// nodeboot release (a container image, another tool's artifact).
var ErrNotRelease = errors.New("not a nodeboot release")

// ErrDigest is wrapped when a blob's bytes do not match its digest.
var ErrDigest = errors.New("blob does not match its digest")

// Source reads releases from one reference.
type Source struct {
	Ref Ref
	o   Options
}

// Open returns a Source for ref. Nothing is contacted yet.
func Open(ref Ref, o Options) *Source { return &Source{Ref: ref, o: o} }

// Resolve returns the digest of the manifest ref names now (a HEAD request
// for a registry): what a follower polls, since it moves when the tag
// moves and costs no download.
func (s *Source) Resolve(ctx context.Context) (string, error) {
	if s.Ref.IsLayout() {
		_, d, err := layoutManifest(s.Ref)
		return d, err
	}
	return registryHead(ctx, s.Ref, &s.o)
}

// Release is a release whose record was verified against the caller's
// keys. Its blobs are fetched on demand, each checked against the digest
// the record names.
type Release struct {
	// Digest of the OCI manifest (what the tag resolved to).
	Digest string
	Record *Record
	Signer ed25519.PublicKey
	src    *Source
}

// manifest is the part of an OCI manifest nodeboot reads.
type manifest struct {
	SchemaVersion int               `json:"schemaVersion"`
	MediaType     string            `json:"mediaType"`
	ArtifactType  string            `json:"artifactType"`
	Config        descriptor        `json:"config"`
	Layers        []descriptor      `json:"layers"`
	Manifests     []descriptor      `json:"manifests"`
	Annotations   map[string]string `json:"annotations"`
}

type descriptor struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
}

// Media types of what a tag may hold instead of a release.
const (
	mtOCIManifest    = "application/vnd.oci.image.manifest.v1+json"
	mtOCIIndex       = "application/vnd.oci.image.index.v1+json"
	mtDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	mtDockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
)

// ParseManifest reads an OCI manifest from untrusted bytes and returns the
// config blob (the record) it points at and the signature annotation. A
// container image, an index or another artifact is refused with
// ErrNotRelease, saying what it is.
func ParseManifest(b []byte) (config Blob, sig string, err error) {
	if len(b) > MaxRecordSize {
		return Blob{}, "", invalid("manifest of %d bytes", len(b))
	}
	var m manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return Blob{}, "", invalid("manifest: %v", err)
	}
	switch {
	case m.MediaType == mtOCIIndex || m.MediaType == mtDockerList || (m.MediaType == "" && len(m.Manifests) > 0):
		return Blob{}, "", fmt.Errorf("%w: it is an image index (a multi-platform container image), not a nodeboot release; publish one with nodeboot push", ErrNotRelease)
	case m.MediaType == mtDockerManifest || (m.ArtifactType == "" && strings.HasPrefix(m.Config.MediaType, "application/vnd.docker.container.image") || m.Config.MediaType == "application/vnd.oci.image.config.v1+json"):
		return Blob{}, "", fmt.Errorf("%w: it is a container image (config %s), not a nodeboot release; publish one with nodeboot push", ErrNotRelease, m.Config.MediaType)
	case m.SchemaVersion != 2 || (m.MediaType != "" && m.MediaType != mtOCIManifest):
		return Blob{}, "", fmt.Errorf("%w: manifest schema %d, media type %q", ErrNotRelease, m.SchemaVersion, m.MediaType)
	case m.ArtifactType != ArtifactType && m.Config.MediaType != MediaTypeRecord:
		return Blob{}, "", fmt.Errorf("%w: an artifact of type %q, not %s", ErrNotRelease, orNone(m.ArtifactType+m.Config.MediaType), ArtifactType)
	}
	c := Blob{MediaType: m.Config.MediaType, Digest: m.Config.Digest, Size: m.Config.Size}
	if err := c.check("release record", MediaTypeRecord, MaxRecordSize); err != nil {
		return Blob{}, "", err
	}
	sig = m.Annotations[SignatureAnnotation]
	if sig == "" {
		return Blob{}, "", fmt.Errorf("%w: the release carries no signature (annotation %s); push it again with nodeboot push", ospayload.ErrBadSignature, SignatureAnnotation)
	}
	return c, sig, nil
}

// Release reads the release ref names now (or the manifest of digest, if
// not empty, as a follower does after Resolve), and verifies its record
// against trusted. Nothing but the manifest and the record is downloaded.
func (s *Source) Release(ctx context.Context, digest string, trusted []ed25519.PublicKey) (*Release, error) {
	ref := s.Ref
	if digest != "" && !ref.IsLayout() {
		ref.Name = ref.Name.Context().Digest(digest)
	}
	var raw []byte
	var got string
	var err error
	if ref.IsLayout() {
		raw, got, err = layoutManifest(ref)
	} else {
		raw, got, err = registryManifest(ctx, ref, &s.o)
	}
	if err != nil {
		return nil, err
	}
	if digest != "" && got != digest {
		return nil, fmt.Errorf("%s now names %s, not %s: it moved meanwhile; try again", s.Ref, got, digest)
	}
	cfg, sig, err := ParseManifest(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.Ref, err)
	}
	rec, err := s.readSmall(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: the release record: %w", s.Ref, err)
	}
	r, signer, err := VerifyRecord(rec, sig, trusted)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.Ref, err)
	}
	return &Release{Digest: got, Record: r, Signer: signer, src: s}, nil
}

// readSmall reads a small blob whole into memory and checks its digest.
func (s *Source) readSmall(ctx context.Context, b Blob) ([]byte, error) {
	if s.Ref.IsLayout() {
		return readBlobFile(layoutBlob(s.Ref.Dir, b.Digest), b.Digest, b.Size)
	}
	rc, err := registryBlob(ctx, s.Ref, &s.o, b.Digest, 0)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, b.Size+1))
	if err != nil {
		return nil, fmt.Errorf("reading blob %s: %w", b.Digest, err)
	}
	if int64(len(data)) != b.Size || digestOf(data) != b.Digest {
		return nil, fmt.Errorf("%w: %s", ErrDigest, b.Digest)
	}
	return data, nil
}

func readBlobFile(path, digest string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", digest, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", digest, err)
	}
	if int64(len(data)) > max || digestOf(data) != digest {
		return nil, fmt.Errorf("%w: %s (%s)", ErrDigest, digest, path)
	}
	return data, nil
}

// Fetch makes sure the blob is on disk, whole and verified, and returns
// its path. A layout's blobs are read where they are; a registry's are
// downloaded into Options.CacheDir, resuming a partial file after a cut
// (a Range request from its end) up to Options.Attempts times in a row
// without progress, and checked against the digest once complete.
func (r *Release) Fetch(ctx context.Context, b Blob) (string, error) {
	s := r.src
	if s.Ref.IsLayout() {
		p := layoutBlob(s.Ref.Dir, b.Digest)
		if err := verifyFile(p, b); err != nil {
			return "", err
		}
		return p, nil
	}
	if s.o.CacheDir == "" {
		return "", errors.New("no cache directory for downloads (oci.Options.CacheDir)")
	}
	dir := filepath.Join(s.o.CacheDir, "blobs", "sha256")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("creating %s: %w", dir, err)
	}
	hexd := strings.TrimPrefix(b.Digest, "sha256:")
	final := filepath.Join(dir, hexd)
	// A blob kept from before is hashed again: a damaged cache must cost
	// a download, never a release refused as if the registry had lied.
	if _, err := os.Stat(final); err == nil {
		if verifyFile(final, b) == nil {
			return final, nil
		}
		os.Remove(final)
	}
	part := final + ".partial"
	f, err := os.OpenFile(part, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return "", fmt.Errorf("opening %s: %w", part, err)
	}
	defer f.Close()
	h := sha256.New()
	have, err := io.Copy(h, f) // what an earlier, cut download left
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", part, err)
	}
	if have > b.Size {
		if err := f.Truncate(0); err != nil {
			return "", err
		}
		have, h = 0, sha256.New()
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return "", err
		}
	}
	var lastErr error
	for fails := 0; have < b.Size; {
		if fails >= s.o.attempts() {
			return "", fmt.Errorf("downloading blob %s of %s: %d attempts in a row moved nothing (%d of %d bytes are kept in %s for the next try): %w", b.Digest, s.Ref, fails, have, b.Size, part, lastErr)
		}
		n, err := r.download(ctx, b, have, f, h)
		have += n
		if err == nil && have < b.Size {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			if ctx.Err() != nil {
				return "", ctx.Err()
			}
			if errors.Is(err, ErrAuth) || errors.Is(err, ErrNotFound) {
				return "", err
			}
			lastErr = err
			if n > 0 {
				fails = 0
			} else {
				fails++
			}
			select {
			case <-ctx.Done():
				return "", ctx.Err()
			case <-time.After(time.Duration(fails) * 200 * time.Millisecond):
			}
		}
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != b.Digest {
		f.Close()
		os.Remove(part)
		return "", fmt.Errorf("%w: blob %s of %s downloaded as %s; the registry holds damaged data, push the release again", ErrDigest, b.Digest, s.Ref, got)
	}
	if err := f.Sync(); err != nil {
		return "", fmt.Errorf("syncing %s: %w", part, err)
	}
	if err := os.Rename(part, final); err != nil {
		return "", fmt.Errorf("keeping blob %s: %w", b.Digest, err)
	}
	return final, nil
}

// download appends the blob from byte off to f, hashing it; it returns
// the bytes it appended, which are kept even when it fails midway.
func (r *Release) download(ctx context.Context, b Blob, off int64, f *os.File, h hash.Hash) (int64, error) {
	rc, err := registryBlob(ctx, r.src.Ref, &r.src.o, b.Digest, off)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return 0, err
	}
	return io.Copy(io.MultiWriter(f, h), io.LimitReader(rc, b.Size-off))
}

func verifyFile(path string, b Blob) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("blob %s: %w", b.Digest, err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return fmt.Errorf("blob %s: %w", b.Digest, err)
	}
	if n != b.Size || "sha256:"+hex.EncodeToString(h.Sum(nil)) != b.Digest {
		return fmt.Errorf("%w: %s (%s): the copy is damaged; copy the directory again", ErrDigest, b.Digest, path)
	}
	return nil
}

// WriteBundle fetches app's layers and writes the bundle they assemble
// into to w, the stream `nodeboot deploy` would send; the bytes are
// checked against the digest the signed record names (an error after w
// received them all means they must not be used). It returns the digest.
func (r *Release) WriteBundle(ctx context.Context, app string, w io.Writer) (string, error) {
	a := r.Record.App(app)
	if a == nil {
		return "", fmt.Errorf("release %s holds no app %q (it holds %s)", r.src.Ref, app, orNone(strings.Join(r.AppNames(), ", ")))
	}
	var readers []io.Reader
	for _, l := range a.Layers {
		p, err := r.Fetch(ctx, l.Blob)
		if err != nil {
			return "", fmt.Errorf("app %s, %s layer: %w", app, l.Role, err)
		}
		f, err := os.Open(p)
		if err != nil {
			return "", err
		}
		defer f.Close()
		readers = append(readers, f)
	}
	h := sha256.New()
	cw := &countWriter{w: io.MultiWriter(w, h)}
	if err := bundle.Assemble(cw, a.Meta, time.Unix(a.Mtime, 0), readers); err != nil {
		return "", fmt.Errorf("app %s: %w", app, err)
	}
	got := "sha256:" + hex.EncodeToString(h.Sum(nil))
	if got != a.Bundle.Digest || cw.n != a.Bundle.Size {
		return "", fmt.Errorf("%w: app %s assembles into %s, the release names %s", ErrDigest, app, got, a.Bundle.Digest)
	}
	return got, nil
}

// AppNames lists the release's apps.
func (r *Release) AppNames() []string {
	var n []string
	for _, a := range r.Record.Apps {
		n = append(n, a.Name)
	}
	return n
}

// OSPayload is a release's OS update, fetched and ready to stream as
// `nodeboot update` streams it (internal/ospayload's format).
type OSPayload struct {
	Header         *ospayload.Header
	kernel, rootfs string
}

// FetchOS fetches the release's OS update (resuming as Fetch does) and
// parses its manifest. The payload's own signature is checked by the node
// that installs it, as for any OS update; the record already vouches for
// every byte.
func (r *Release) FetchOS(ctx context.Context) (*OSPayload, error) {
	o := r.Record.OS
	if o == nil {
		return nil, fmt.Errorf("release %s holds no OS update: publish one with `nodeboot push --os` (the apps of a release go with `nodeboot deploy`)", r.src.Ref)
	}
	man, err := r.Fetch(ctx, o.Manifest)
	if err != nil {
		return nil, fmt.Errorf("the OS update's manifest: %w", err)
	}
	sig, err := r.Fetch(ctx, o.Signature)
	if err != nil {
		return nil, fmt.Errorf("the OS update's signature: %w", err)
	}
	raw, err := os.ReadFile(man)
	if err != nil {
		return nil, err
	}
	s, err := os.ReadFile(sig)
	if err != nil {
		return nil, err
	}
	m, err := ospayload.ParseManifest(raw)
	if err != nil {
		return nil, err
	}
	if m.Kernel.Size != o.Kernel.Size || m.RootFS.Size != o.RootFS.Size {
		return nil, invalid("the OS manifest's sizes (kernel %d, root %d) differ from the record's (%d, %d)", m.Kernel.Size, m.RootFS.Size, o.Kernel.Size, o.RootFS.Size)
	}
	p := &OSPayload{Header: &ospayload.Header{Manifest: m, Raw: raw, Sig: s}}
	if p.kernel, err = r.Fetch(ctx, o.Kernel); err != nil {
		return nil, fmt.Errorf("the OS update's kernel: %w", err)
	}
	if p.rootfs, err = r.Fetch(ctx, o.RootFS); err != nil {
		return nil, fmt.Errorf("the OS update's root file system: %w", err)
	}
	return p, nil
}

// Size is the whole stream's length.
func (p *OSPayload) Size() int64 { return p.Header.Size() + p.Header.Manifest.BodySize() }

// Open returns the stream: the header, then the body from body offset
// from (a node's resume offset), as ospayload.Payload.Open does.
func (p *OSPayload) Open(from int64) (io.ReadCloser, error) {
	m := p.Header.Manifest
	if from < 0 || from > m.BodySize() {
		return nil, fmt.Errorf("resume offset %d is outside the body (0 to %d bytes)", from, m.BodySize())
	}
	k, err := os.Open(p.kernel)
	if err != nil {
		return nil, err
	}
	rf, err := os.Open(p.rootfs)
	if err != nil {
		k.Close()
		return nil, err
	}
	var hdr bytes.Buffer
	p.Header.WriteTo(&hdr)
	body := io.MultiReader(k, rf)
	if _, err := io.CopyN(io.Discard, body, from); err != nil {
		k.Close()
		rf.Close()
		return nil, err
	}
	return &multiCloser{Reader: io.MultiReader(&hdr, body), c: []io.Closer{k, rf}}, nil
}

type multiCloser struct {
	io.Reader
	c []io.Closer
}

func (m *multiCloser) Close() error {
	var errs []error
	for _, c := range m.c {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}
