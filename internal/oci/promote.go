package oci

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/nodeboot/nodeboot/internal/ospayload"
)

// Promotion says what Promote changes on the way.
type Promotion struct {
	// Waves, when not nil, replace the release's waves (an empty, non-nil
	// slice removes them: every node at once).
	Waves []Wave
	// Pause or Resume the rollout (at most one).
	Pause, Resume bool
	// Key is the project's update key: it checks the source release and
	// signs a changed record.
	Key      ed25519.PrivateKey
	KeyChain []ospayload.Endorsement
}

func (p *Promotion) changes() bool { return p.Waves != nil || p.Pause || p.Resume }

// Promote points dstTag of src's repository (or layout) at the release src
// names. Promoting is retagging: the same manifest, same digest, no blob
// moved. With a rollout change (waves, pause, resume) the record is
// signed again with the change, and the new manifest points at the same
// blobs. The source release must verify against the key.
func Promote(ctx context.Context, src Ref, dstTag string, p Promotion, o Options) (*Pushed, error) {
	if p.Pause && p.Resume {
		return nil, errors.New("--pause and --resume together: choose one")
	}
	if len(p.Key) != ed25519.PrivateKeySize {
		return nil, errors.New("no update signing key: promote checks the release with .nodeboot/update.key (run it in the project that pushed the release)")
	}
	dst, err := src.WithTag(dstTag)
	if err != nil {
		return nil, err
	}
	s := Open(src, o)
	rel, err := s.Release(ctx, "", []ed25519.PublicKey{p.Key.Public().(ed25519.PublicKey)})
	if err != nil {
		return nil, err
	}
	raw, cfg, err := s.rawManifest(ctx, rel.Digest)
	if err != nil {
		return nil, err
	}
	var m v1.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, invalid("manifest: %v", err)
	}
	a := &artifact{manifest: raw, config: cfg, record: rel.Record, blobs: map[string]*blobFile{}}
	for _, l := range m.Layers {
		b := &blobFile{desc: Blob{MediaType: string(l.MediaType), Digest: l.Digest.String(), Size: l.Size}}
		if src.IsLayout() {
			b.path = layoutBlob(src.Dir, b.desc.Digest)
		}
		a.blobs[b.desc.Digest] = b
		a.order = append(a.order, b)
	}
	if p.changes() {
		rec := *rel.Record
		ro := Rollout{}
		if rec.Rollout != nil {
			ro = *rec.Rollout
		}
		if p.Waves != nil {
			ro.Waves = p.Waves
		}
		if p.Pause {
			ro.Paused = true
		}
		if p.Resume {
			ro.Paused = false
		}
		rec.Rollout = &ro
		if !ro.Paused && len(ro.Waves) == 0 {
			rec.Rollout = nil
		}
		if p.KeyChain != nil {
			rec.KeyChain = p.KeyChain
		}
		cfg, sig, err := rec.Sign(p.Key)
		if err != nil {
			return nil, err
		}
		m.Config = v1.Descriptor{MediaType: MediaTypeRecord, Digest: mustHash(digestOf(cfg)), Size: int64(len(cfg))}
		m.Annotations[SignatureAnnotation] = sig
		m.MediaType = types.OCIManifestSchema1
		if a.manifest, err = json.Marshal(m); err != nil {
			return nil, err
		}
		a.config, a.record = cfg, &rec
	}
	if !src.IsLayout() {
		// Every blob is in the repository already: the writer checks and
		// skips them, and must never need their bytes.
		for _, b := range a.order {
			b.missing = true
		}
	}
	return write(ctx, dst, a, o)
}

// rawManifest returns the manifest of digest and its config blob.
func (s *Source) rawManifest(ctx context.Context, digest string) ([]byte, []byte, error) {
	ref := s.Ref
	var raw []byte
	var err error
	if ref.IsLayout() {
		raw, _, err = layoutManifest(ref)
	} else {
		ref.Name = ref.Name.Context().Digest(digest)
		raw, _, err = registryManifest(ctx, ref, &s.o)
	}
	if err != nil {
		return nil, nil, err
	}
	if digestOf(raw) != digest {
		return nil, nil, fmt.Errorf("%s moved while being promoted; try again", s.Ref)
	}
	c, _, err := ParseManifest(raw)
	if err != nil {
		return nil, nil, err
	}
	cfg, err := s.readSmall(ctx, c)
	if err != nil {
		return nil, nil, err
	}
	return raw, cfg, nil
}

var errMissing = errors.New("the blob should be in the registry already")

func (b *blobFile) openMissing() (io.ReadCloser, error) { return nil, errMissing }
