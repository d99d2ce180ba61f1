// Package oci holds nodeboot's OCI artifact format (docs/oci.md) and moves
// it through OCI registries and OCI image layouts on disk: Push publishes
// apps and an OS update as one signed release under a tag, Promote retags
// one (with a new rollout), Open and (*Source).Release resolve a tag and
// verify what it holds, and a Release hands out an app's bundle or the OS
// update stream, downloading only the blobs it needs and resuming a cut
// download.
//
// Trust comes from nodeboot's own signature, not from the registry: the
// release record (the artifact's config blob) is signed with the project's
// update key and names every blob by digest and size; the registry, its
// TLS and its tags only carry bytes.
package oci

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strings"
	"time"

	"github.com/nodeboot/nodeboot/internal/bundle"
	"github.com/nodeboot/nodeboot/internal/ospayload"
)

// Media types of nodeboot's artifact (OCI image-spec 1.1). The OS update's
// parts keep the media types of internal/ospayload.
const (
	// ArtifactType is the OCI manifest's artifactType.
	ArtifactType = "application/vnd.nodeboot.release.v1"
	// MediaTypeRecord is the config blob: the signed release record.
	MediaTypeRecord = "application/vnd.nodeboot.release.v1+json"
	// MediaTypeAppLayer is one layer of an app: a zstd tar of app/ entries
	// (internal/bundle, WriteLayer).
	MediaTypeAppLayer = "application/vnd.nodeboot.app.layer.v1.tar+zstd"
	// MediaTypeBundle is the bundle Assemble makes of an app's layers, as
	// `nodeboot deploy` sends it; it is never stored as a blob, but the
	// record names its digest.
	MediaTypeBundle = "application/vnd.nodeboot.bundle.v1.tar+zstd"

	// SignatureAnnotation, on the OCI manifest, holds the base64 ed25519
	// signature over SignedPrefix + the config blob's bytes. The manifest
	// itself is not signed: it only points at the record, which names
	// everything else by digest.
	SignatureAnnotation = "vnd.nodeboot.release.signature"
	// SignedPrefix separates a release signature from anything else the
	// update key signs.
	SignedPrefix = "nodeboot release v1\n"

	// MaxRecordSize bounds the config blob a node reads.
	MaxRecordSize = 4 << 20
	// MaxApps and MaxLayers bound the record's lists.
	MaxApps   = 64
	MaxLayers = 16
	// MaxWaves bounds a rollout.
	MaxWaves = 32
)

// Layer roles: an app's files split by how often they change.
const (
	RoleDeps = "deps" // node_modules/
	RoleCode = "code" // everything else
)

// Blob names one blob: what a node fetches and checks.
type Blob struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"` // sha256:<64 hex>
	Size      int64  `json:"size"`
}

// Layer is one of an app's layers.
type Layer struct {
	Blob
	Role string `json:"role"`
}

// App is one app of a release.
type App struct {
	Name string      `json:"name"`
	Meta bundle.Meta `json:"meta"`
	// Mtime (Unix seconds) of the entries Assemble adds.
	Mtime int64 `json:"mtime"`
	// Bundle is the bundle the layers assemble into; its digest is the
	// version's digest on the node (the same as `nodeboot deploy` gives).
	Bundle Blob    `json:"bundle"`
	Layers []Layer `json:"layers"`
}

// OS is the OS update of a release: the four parts of the
// internal/ospayload stream.
type OS struct {
	Image     string `json:"image"`
	Version   uint64 `json:"version"`
	Arch      string `json:"arch"`
	Target    string `json:"target"`
	Manifest  Blob   `json:"manifest"`
	Signature Blob   `json:"signature"`
	Kernel    Blob   `json:"kernel"`
	RootFS    Blob   `json:"rootfs"`
}

// Wave is one step of a phased rollout: from NotBefore on, nodes whose
// seed (a stable random number in [0, 1) each node draws once) is below
// Share may apply the release. Shares are cumulative.
type Wave struct {
	Share     float64   `json:"share"`
	NotBefore time.Time `json:"notBefore"`
}

// Rollout says when nodes following the tag may apply the release. No
// waves: every node at once. Paused: no node that has not applied it yet.
type Rollout struct {
	Paused bool   `json:"paused,omitempty"`
	Waves  []Wave `json:"waves,omitempty"`
}

// ApplyAt says when a node with this seed may apply the release: ok is
// false while the rollout is paused; otherwise at (zero for at once) is the
// NotBefore of the first wave that includes the seed. A seed outside
// [0, 1) is taken as 0.999….
func (r *Rollout) ApplyAt(seed float64) (at time.Time, ok bool) {
	if r == nil {
		return time.Time{}, true
	}
	if r.Paused {
		return time.Time{}, false
	}
	if len(r.Waves) == 0 {
		return time.Time{}, true
	}
	if !(seed >= 0 && seed < 1) {
		seed = math.Nextafter(1, 0)
	}
	for _, w := range r.Waves {
		if seed < w.Share {
			return w.NotBefore, true
		}
	}
	// The last wave's share is 1 (checked), so every seed is in one.
	return r.Waves[len(r.Waves)-1].NotBefore, true
}

// Allows says whether a node with this seed may apply the release at now.
func (r *Rollout) Allows(seed float64, now time.Time) bool {
	at, ok := r.ApplyAt(seed)
	return ok && !now.Before(at)
}

// Check validates a rollout: at most MaxWaves waves, shares growing
// within (0, 1] and ending at 1, times not going back.
func (r *Rollout) Check() error {
	if r == nil {
		return nil
	}
	if len(r.Waves) > MaxWaves {
		return fmt.Errorf("%d waves, at most %d", len(r.Waves), MaxWaves)
	}
	for i, w := range r.Waves {
		switch {
		case !(w.Share > 0 && w.Share <= 1):
			return fmt.Errorf("wave %d: share %v is not within (0, 1]", i+1, w.Share)
		case i > 0 && w.Share <= r.Waves[i-1].Share:
			return fmt.Errorf("wave %d: share %v does not grow (the shares are cumulative: 0.1, 0.5, 1)", i+1, w.Share)
		case i > 0 && w.NotBefore.Before(r.Waves[i-1].NotBefore):
			return fmt.Errorf("wave %d: starts before wave %d", i+1, i)
		case w.NotBefore.IsZero():
			return fmt.Errorf("wave %d: no start time", i+1)
		}
	}
	if n := len(r.Waves); n > 0 && r.Waves[n-1].Share != 1 {
		return fmt.Errorf("the last wave's share is %v: it must be 1 (100%%), or some nodes would never apply the release", r.Waves[n-1].Share)
	}
	return nil
}

// Record is the signed release record, the artifact's config blob.
type Record struct {
	MediaType  string                  `json:"mediaType"`
	Created    time.Time               `json:"created"`
	Apps       []App                   `json:"apps,omitempty"`
	OS         *OS                     `json:"os,omitempty"`
	Rollout    *Rollout                `json:"rollout,omitempty"`
	SigningKey string                  `json:"signingKey"`
	KeyChain   []ospayload.Endorsement `json:"keyChain,omitempty"`
}

// App returns the record's app of that name, or nil.
func (r *Record) App(name string) *App {
	for i := range r.Apps {
		if r.Apps[i].Name == name {
			return &r.Apps[i]
		}
	}
	return nil
}

// ErrInvalid is wrapped by every error about malformed registry bytes: a
// manifest or record nodeboot did not make.
var ErrInvalid = errors.New("invalid nodeboot release")

func invalid(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, a...))
}

// ParseRecord parses and checks a release record from untrusted bytes:
// strict JSON (unknown fields and trailing data refused), every digest
// well-formed, sizes in range, the rollout valid. It does not check the
// signature.
func ParseRecord(b []byte) (*Record, error) {
	if len(b) > MaxRecordSize {
		return nil, invalid("record of %d bytes, more than %d", len(b), MaxRecordSize)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var r Record
	if err := dec.Decode(&r); err != nil {
		return nil, invalid("record: %v", err)
	}
	if dec.More() {
		return nil, invalid("data after the record's JSON object")
	}
	if err := r.check(); err != nil {
		return nil, err
	}
	return &r, nil
}

var digestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

func (b *Blob) check(what, mediaType string, max int64) error {
	switch {
	case b.MediaType != mediaType:
		return invalid("%s: media type %q, want %q", what, b.MediaType, mediaType)
	case !digestRE.MatchString(b.Digest):
		return invalid("%s: digest %q is not sha256:<64 lower-case hex digits>", what, b.Digest)
	case b.Size < 0 || b.Size > max:
		return invalid("%s: size %d is outside 0..%d", what, b.Size, max)
	}
	return nil
}

func (r *Record) check() error {
	if r.MediaType != MediaTypeRecord {
		return invalid("record media type %q, want %q", r.MediaType, MediaTypeRecord)
	}
	if len(r.Apps) == 0 && r.OS == nil {
		return invalid("the release holds neither an app nor an OS update")
	}
	if len(r.Apps) > MaxApps {
		return invalid("%d apps, at most %d", len(r.Apps), MaxApps)
	}
	if len(r.KeyChain) > ospayload.MaxKeyChain {
		return invalid("%d key endorsements, at most %d", len(r.KeyChain), ospayload.MaxKeyChain)
	}
	if _, err := ospayload.ParsePublicKey(r.SigningKey); err != nil {
		return invalid("signingKey: %v", err)
	}
	seen := map[string]bool{}
	for i := range r.Apps {
		a := &r.Apps[i]
		if err := bundle.CheckAppName(a.Name); err != nil {
			return invalid("app %d: %v", i, err)
		}
		if seen[a.Name] {
			return invalid("app %s is listed twice", a.Name)
		}
		seen[a.Name] = true
		if a.Meta.App != a.Name {
			return invalid("app %s: its bundle metadata names app %q", a.Name, a.Meta.App)
		}
		if err := a.Meta.Validate(); err != nil {
			return invalid("app %s: %v", a.Name, err)
		}
		if err := a.Bundle.check("app "+a.Name+" bundle", MediaTypeBundle, bundle.DefaultMaxBytes); err != nil {
			return err
		}
		if len(a.Layers) == 0 || len(a.Layers) > MaxLayers {
			return invalid("app %s: %d layers, want 1..%d", a.Name, len(a.Layers), MaxLayers)
		}
		for j, l := range a.Layers {
			if err := l.check(fmt.Sprintf("app %s layer %d", a.Name, j), MediaTypeAppLayer, bundle.DefaultMaxBytes); err != nil {
				return err
			}
			if l.Role != RoleDeps && l.Role != RoleCode {
				return invalid("app %s layer %d: role %q, want %s or %s", a.Name, j, l.Role, RoleDeps, RoleCode)
			}
		}
	}
	if o := r.OS; o != nil {
		if o.Image == "" || len(o.Image) > 128 || !printable(o.Image) || o.Version == 0 || !printable(o.Arch) || !printable(o.Target) {
			return invalid("os: image %q, version %d, arch %q, target %q", o.Image, o.Version, o.Arch, o.Target)
		}
		for _, c := range []struct {
			b    *Blob
			name string
			mt   string
			max  int64
		}{
			{&o.Manifest, "os manifest", ospayload.MediaTypeManifest, ospayload.MaxManifestSize},
			{&o.Signature, "os signature", ospayload.MediaTypeSignature, ed25519.SignatureSize},
			{&o.Kernel, "os kernel", ospayload.MediaTypeKernel, ospayload.MaxKernelSize},
			{&o.RootFS, "os root file system", ospayload.MediaTypeRootFS, ospayload.MaxRootFSSize},
		} {
			if err := c.b.check(c.name, c.mt, c.max); err != nil {
				return err
			}
		}
	}
	if err := r.Rollout.Check(); err != nil {
		return invalid("rollout: %v", err)
	}
	return nil
}

func printable(s string) bool {
	for _, c := range s {
		if c < 0x20 || c == 0x7f {
			return false
		}
	}
	return len(s) <= 128
}

// Sign completes r (media type, signing key) and returns its bytes, as
// stored in the config blob, and the signature annotation's value.
func (r *Record) Sign(key ed25519.PrivateKey) (raw []byte, sig string, err error) {
	r.MediaType = MediaTypeRecord
	r.SigningKey = ospayload.EncodeKey(key.Public().(ed25519.PublicKey))
	// Compact: every node following the tag downloads the record with
	// each release, and indentation was a third of it (813 bytes instead
	// of 1126 for one app of two layers). Readers take any JSON: the
	// signature covers these exact bytes.
	raw, err = json.Marshal(r)
	if err != nil {
		return nil, "", err
	}
	// What a node would refuse is refused here, before anything is pushed.
	if _, err := ParseRecord(raw); err != nil {
		return nil, "", err
	}
	s := ed25519.Sign(key, append([]byte(SignedPrefix), raw...))
	return raw, base64.StdEncoding.EncodeToString(s), nil
}

// VerifyRecord parses raw (the config blob) and checks sig (the manifest's
// signature annotation) against the keys a node trusts, directly or
// through the record's key chain (ospayload.TrustedSigner). It returns the
// record and the key that signed it. Failures wrap ErrInvalid,
// ospayload.ErrUntrusted or ospayload.ErrBadSignature.
func VerifyRecord(raw []byte, sig string, trusted []ed25519.PublicKey) (*Record, ed25519.PublicKey, error) {
	r, err := ParseRecord(raw)
	if err != nil {
		return nil, nil, err
	}
	signer, err := ospayload.TrustedSigner(r.SigningKey, r.KeyChain, trusted)
	if err != nil {
		return nil, nil, err
	}
	s, err := base64.StdEncoding.DecodeString(strings.TrimSpace(sig))
	if err != nil || len(s) != ed25519.SignatureSize || !ed25519.Verify(signer, append([]byte(SignedPrefix), raw...), s) {
		return nil, nil, fmt.Errorf("%w: the release record was changed after it was signed, or its signature is missing or damaged; push the release again", ospayload.ErrBadSignature)
	}
	return r, signer, nil
}
