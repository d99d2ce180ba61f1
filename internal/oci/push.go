package oci

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/nodeboot/nodeboot/internal/bundle"
	"github.com/nodeboot/nodeboot/internal/ospayload"
)

// AppInput is an app to publish: the bundle's metadata and its files, as
// `nodeboot deploy` would bundle them (bundle.FromSpec).
type AppInput struct {
	Meta  bundle.Meta
	Files []bundle.File
}

// Publication is what Push publishes under one tag.
type Publication struct {
	Apps []AppInput
	// OS is an OS update payload (ospayload.FromImage), optional.
	OS      *ospayload.Payload
	Rollout *Rollout
	// Key is the project's update key (.nodeboot/update.key); KeyChain
	// endorses it for nodes that trust an older key.
	Key      ed25519.PrivateKey
	KeyChain []ospayload.Endorsement
	// Created is recorded in the release (now if zero).
	Created time.Time
	// StageDir is where layers are written before the upload (a temporary
	// directory of the user cache if empty).
	StageDir string
}

// Pushed says what Push did.
type Pushed struct {
	Ref    Ref
	Digest string // the OCI manifest's digest
	Record *Record
	// Sent and Received count the bytes on the wire to and from a
	// registry (0 for a layout); Uploaded the blobs' bytes that were new
	// there (blobs the registry had are not sent again).
	Sent, Received, Uploaded int64
}

// blobFile is a blob staged on disk (or held in memory when small).
type blobFile struct {
	desc Blob
	path string
	data []byte
	// missing: a blob the target holds already (a promotion's).
	missing bool
}

func (b *blobFile) hash() v1.Hash {
	h, _ := v1.NewHash(b.desc.Digest)
	return h
}

func (b *blobFile) open() (io.ReadCloser, error) {
	if b.missing {
		return b.openMissing()
	}
	if b.path == "" {
		return io.NopCloser(bytes.NewReader(b.data)), nil
	}
	return os.Open(b.path)
}

// artifact is a release ready to write: the OCI manifest, the record, and
// its blobs. It is a go-containerregistry image (partial.CompressedImageCore)
// so the library's writers upload it.
type artifact struct {
	manifest []byte
	config   []byte
	record   *Record
	blobs    map[string]*blobFile // by digest
	order    []*blobFile          // the manifest's layers
}

func (a *artifact) RawConfigFile() ([]byte, error)      { return a.config, nil }
func (a *artifact) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }
func (a *artifact) RawManifest() ([]byte, error)        { return a.manifest, nil }
func (a *artifact) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	if b, ok := a.blobs[h.String()]; ok {
		return &compressedBlob{b}, nil
	}
	if h.String() == digestOf(a.config) {
		return &compressedBlob{&blobFile{desc: Blob{MediaType: MediaTypeRecord, Digest: h.String(), Size: int64(len(a.config))}, data: a.config}}, nil
	}
	return nil, fmt.Errorf("blob %s is not part of the release", h)
}

type compressedBlob struct{ b *blobFile }

func (c *compressedBlob) Digest() (v1.Hash, error)           { return c.b.hash(), nil }
func (c *compressedBlob) Compressed() (io.ReadCloser, error) { return c.b.open() }
func (c *compressedBlob) Size() (int64, error)               { return c.b.desc.Size, nil }
func (c *compressedBlob) MediaType() (types.MediaType, error) {
	return types.MediaType(c.b.desc.MediaType), nil
}

func digestOf(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// stager writes blobs into a directory, hashing them as they are written.
type stager struct{ dir string }

func (s *stager) write(mediaType string, fill func(io.Writer) error) (*blobFile, error) {
	f, err := os.CreateTemp(s.dir, "blob-*")
	if err != nil {
		return nil, fmt.Errorf("staging a blob: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	cw := &countWriter{w: io.MultiWriter(f, h)}
	if err := fill(cw); err != nil {
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("staging a blob: %w", err)
	}
	return &blobFile{path: f.Name(), desc: Blob{MediaType: mediaType, Digest: "sha256:" + hex.EncodeToString(h.Sum(nil)), Size: cw.n}}, nil
}

func memBlob(mediaType string, b []byte) *blobFile {
	return &blobFile{data: b, desc: Blob{MediaType: mediaType, Digest: digestOf(b), Size: int64(len(b))}}
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// splitLayers splits an app's files by how often they change: its
// dependencies (node_modules/) and its own code. Only non-empty layers are
// returned, dependencies first.
func splitLayers(files []bundle.File) (roles []string, parts [][]bundle.File) {
	var deps, code []bundle.File
	for _, f := range files {
		if f.Rel == "node_modules" || strings.HasPrefix(f.Rel, "node_modules/") {
			deps = append(deps, f)
		} else {
			code = append(code, f)
		}
	}
	if len(deps) > 0 {
		roles, parts = append(roles, RoleDeps), append(parts, deps)
	}
	if len(code) > 0 {
		roles, parts = append(roles, RoleCode), append(parts, code)
	}
	return roles, parts
}

// build stages every blob of p and signs its record.
func build(p *Publication, st *stager) (*artifact, error) {
	if len(p.Key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("no update signing key: run nodeboot build once to create .nodeboot/update.key")
	}
	if len(p.Apps) == 0 && p.OS == nil {
		return nil, fmt.Errorf("nothing to publish: no app and no OS update")
	}
	created := p.Created
	if created.IsZero() {
		created = time.Now().UTC().Truncate(time.Second)
	}
	a := &artifact{blobs: map[string]*blobFile{}}
	add := func(b *blobFile) {
		if _, ok := a.blobs[b.desc.Digest]; !ok {
			a.blobs[b.desc.Digest] = b
			a.order = append(a.order, b)
		}
	}
	rec := &Record{Created: created, Rollout: p.Rollout, KeyChain: p.KeyChain}
	if rec.Rollout != nil && !rec.Rollout.Paused && len(rec.Rollout.Waves) == 0 {
		rec.Rollout = nil
	}
	mt := bundle.ModTime()
	for _, in := range p.Apps {
		meta := in.Meta
		if meta.Format == 0 {
			meta.Format = bundle.Format
		}
		if meta.NodeArgs == nil {
			meta.NodeArgs = []string{}
		}
		if meta.Libraries == nil {
			meta.Libraries = []string{}
		}
		app := App{Name: meta.App, Meta: meta, Mtime: mt.Unix()}
		roles, parts := splitLayers(in.Files)
		var readers []io.Reader
		var closers []io.Closer
		for i, part := range parts {
			b, err := st.write(MediaTypeAppLayer, func(w io.Writer) error { return bundle.WriteLayer(w, part) })
			if err != nil {
				return nil, fmt.Errorf("app %s, %s layer: %w", meta.App, roles[i], err)
			}
			add(b)
			app.Layers = append(app.Layers, Layer{Blob: b.desc, Role: roles[i]})
			r, err := b.open()
			if err != nil {
				return nil, err
			}
			readers, closers = append(readers, r), append(closers, r)
		}
		// The bundle's digest, from the layers as a node will assemble
		// them: what the node's store will call this version.
		h := sha256.New()
		cw := &countWriter{w: h}
		err := bundle.Assemble(cw, meta, time.Unix(app.Mtime, 0), readers)
		for _, c := range closers {
			c.Close()
		}
		if err != nil {
			return nil, fmt.Errorf("app %s: %w", meta.App, err)
		}
		app.Bundle = Blob{MediaType: MediaTypeBundle, Digest: "sha256:" + hex.EncodeToString(h.Sum(nil)), Size: cw.n}
		rec.Apps = append(rec.Apps, app)
	}
	if p.OS != nil {
		o, err := stageOS(p.OS, st, add)
		if err != nil {
			return nil, err
		}
		rec.OS = o
	}
	raw, sig, err := rec.Sign(p.Key)
	if err != nil {
		return nil, err
	}
	a.config, a.record = raw, rec
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		ArtifactType:  ArtifactType,
		Config:        v1.Descriptor{MediaType: MediaTypeRecord, Digest: mustHash(digestOf(raw)), Size: int64(len(raw))},
		Annotations: map[string]string{
			SignatureAnnotation:                sig,
			"org.opencontainers.image.created": created.Format(time.RFC3339),
		},
	}
	// No annotations on the layers: the record says which app and role
	// each is, and every node following the tag downloads the manifest
	// with each release (about 75 bytes a layer).
	for _, b := range a.order {
		m.Layers = append(m.Layers, v1.Descriptor{MediaType: types.MediaType(b.desc.MediaType), Digest: b.hash(), Size: b.desc.Size})
	}
	if a.manifest, err = json.Marshal(m); err != nil {
		return nil, err
	}
	return a, nil
}

func mustHash(s string) v1.Hash {
	h, err := v1.NewHash(s)
	if err != nil {
		panic(err)
	}
	return h
}

// stageOS splits an OS payload's stream into its four parts.
func stageOS(p *ospayload.Payload, st *stager, add func(*blobFile)) (*OS, error) {
	m := p.Header.Manifest
	r, err := p.Open(0)
	if err != nil {
		return nil, fmt.Errorf("reading the OS update: %w", err)
	}
	defer r.Close()
	if _, err := io.CopyN(io.Discard, r, p.Header.Size()); err != nil {
		return nil, fmt.Errorf("reading the OS update: %w", err)
	}
	kernel, err := st.write(ospayload.MediaTypeKernel, func(w io.Writer) error { _, err := io.CopyN(w, r, m.Kernel.Size); return err })
	if err != nil {
		return nil, fmt.Errorf("staging the OS update's kernel: %w", err)
	}
	rootfs, err := st.write(ospayload.MediaTypeRootFS, func(w io.Writer) error { _, err := io.CopyN(w, r, m.RootFS.Size); return err })
	if err != nil {
		return nil, fmt.Errorf("staging the OS update's root file system: %w", err)
	}
	man := memBlob(ospayload.MediaTypeManifest, p.Header.Raw)
	sig := memBlob(ospayload.MediaTypeSignature, p.Header.Sig)
	for _, b := range []*blobFile{man, sig, kernel, rootfs} {
		add(b)
	}
	return &OS{Image: m.Image, Version: m.Version, Arch: m.Arch, Target: m.Target,
		Manifest: man.desc, Signature: sig.desc, Kernel: kernel.desc, RootFS: rootfs.desc}, nil
}

// stageDir makes the directory layers are written to before the upload.
func stageDir(dir string) (string, func(), error) {
	base := dir
	if base == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			cache = os.TempDir()
		}
		base = filepath.Join(cache, "nodeboot", "oci")
	}
	if err := os.MkdirAll(base, 0o700); err != nil {
		return "", nil, fmt.Errorf("creating %s for the release's layers: %w", base, err)
	}
	d, err := os.MkdirTemp(base, "stage-*")
	if err != nil {
		return "", nil, fmt.Errorf("creating a staging directory in %s: %w", base, err)
	}
	return d, func() { os.RemoveAll(d) }, nil
}

// Push publishes p at ref: a registry tag or an OCI layout's tag. Blobs the
// target has already are not sent again, so a one-file change to an app
// uploads its code layer, the record and the manifest.
func Push(ctx context.Context, ref Ref, p Publication, o Options) (*Pushed, error) {
	dir, cleanup, err := stageDir(p.StageDir)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	a, err := build(&p, &stager{dir: dir})
	if err != nil {
		return nil, err
	}
	return write(ctx, ref, a, o)
}

func write(ctx context.Context, ref Ref, a *artifact, o Options) (*Pushed, error) {
	res := &Pushed{Ref: ref, Digest: digestOf(a.manifest), Record: a.record}
	var err error
	if ref.IsLayout() {
		res.Uploaded, err = writeLayout(ref, a)
	} else {
		err = writeRegistry(ctx, ref, a, o, res)
	}
	if err != nil {
		return nil, err
	}
	return res, nil
}
