// Package ospayload holds the OS update payload: a signed manifest that
// names an image (id, monotonic version, arch, target, build time) and the
// SHA-256 of every fixed-size chunk of its kernel and root file system,
// followed by those two. The builder makes one from a disk image; the node
// parses and verifies it chunk by chunk as it streams in, so it can write
// each chunk only once it matched, and never has to read the payload again.
//
// The stream (MediaTypePayload):
//
//	"nodeboot-os-update\n"   19 bytes, the magic
//	uint32 big-endian        manifest length (at most MaxManifestSize)
//	manifest                 JSON (MediaTypeManifest)
//	uint16 big-endian        signature length (ed25519.SignatureSize)
//	signature                ed25519 over SignedPrefix + manifest
//	kernel                   Manifest.Kernel.Size bytes
//	root file system         Manifest.RootFS.Size bytes (squashfs)
//
// Nothing may follow. The body (kernel + root file system) is what a
// resumed upload continues at a chunk boundary (Manifest.BodyOffset).
package ospayload

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Media types, for the stream and its parts when they travel as OCI
// artifact layers.
const (
	MediaTypePayload   = "application/vnd.nodeboot.os-update.v1"
	MediaTypeManifest  = "application/vnd.nodeboot.os-update.manifest.v1+json"
	MediaTypeSignature = "application/vnd.nodeboot.os-update.signature.v1.ed25519"
	MediaTypeKernel    = "application/vnd.nodeboot.os-update.kernel.v1"
	MediaTypeRootFS    = "application/vnd.nodeboot.os-update.rootfs.v1.squashfs"
)

const (
	// Magic starts every payload stream.
	Magic = "nodeboot-os-update\n"
	// SignedPrefix is prepended to the manifest's bytes before signing, so
	// a signature over a manifest can never pass for one over anything else
	// the same key signs (key endorsements use EndorsePrefix).
	SignedPrefix = "nodeboot os-update manifest v1\n"
	// EndorsePrefix is prepended to a public key an older key endorses.
	EndorsePrefix = "nodeboot os-update key v1\n"

	// DefaultChunkSize is the chunk the builder hashes by: a resumed upload
	// loses at most this much, and the node holds one chunk in memory.
	DefaultChunkSize = 4 << 20
	// MinChunkSize and MaxChunkSize bound what a node accepts.
	MinChunkSize = 64 << 10
	MaxChunkSize = 64 << 20
	// MaxManifestSize bounds the manifest: a 64 GiB root file system in
	// 4 MiB chunks lists 16384 hashes of 67 bytes each, about 1.1 MB.
	MaxManifestSize = 2 << 20
	// MaxKernelSize bounds the kernel: it must fit the ESP beside the
	// other slot's.
	MaxKernelSize = 256 << 20
	// MaxRootFSSize bounds the root file system.
	MaxRootFSSize = 1 << 40
	// MaxKeyChain bounds the key endorsements a manifest carries.
	MaxKeyChain = 8
	// maxText bounds free-text fields (title, target, arch, image id).
	maxText = 128
	// maxCmdline is the x86 kernel's COMMAND_LINE_SIZE.
	maxCmdline = 2048
)

// Section is the kernel or the root file system: its size and the SHA-256
// of each chunk, in order; the last chunk may be short.
type Section struct {
	Size   int64    `json:"size"`
	Chunks []string `json:"chunks"`
}

// Endorsement says that the key By vouches for Key: a node that trusts By
// trusts Key for this manifest. It is how keys rotate without re-flashing
// (docs/updates.md).
type Endorsement struct {
	Key string `json:"key"` // base64 ed25519 public key
	By  string `json:"by"`  // base64 ed25519 public key
	Sig string `json:"sig"` // base64 signature by By over EndorsePrefix + Key's raw bytes
}

// Manifest describes one OS image.
type Manifest struct {
	MediaType string `json:"mediaType"`
	// Image is the image's id, shown in status and in update outcomes.
	Image string `json:"image"`
	// Version grows with every build; a node refuses one not newer than
	// what it runs unless a downgrade is allowed.
	Version uint64    `json:"version"`
	Arch    string    `json:"arch"`   // GOARCH: amd64, arm64
	Target  string    `json:"target"` // the boot layout: "uefi"
	Built   time.Time `json:"built"`
	// Title of the slot's boot entry.
	Title string `json:"title"`
	// Cmdline is the kernel command line without the root file system's
	// arguments, which the node adds for the slot it writes
	// (disk.SlotCmdline).
	Cmdline   string  `json:"cmdline"`
	ChunkSize int64   `json:"chunkSize"`
	Kernel    Section `json:"kernel"`
	RootFS    Section `json:"rootfs"`
	// SigningKey is the public key (base64) whose signature follows.
	SigningKey string        `json:"signingKey"`
	KeyChain   []Endorsement `json:"keyChain,omitempty"`
}

// Header is a payload's manifest, as signed, and its signature.
type Header struct {
	Manifest *Manifest
	// Raw is the manifest exactly as signed; Digest and the signature are
	// over these bytes, never over a re-encoding.
	Raw []byte
	Sig []byte
}

// Digest identifies the payload: the SHA-256 of its manifest, which names
// every chunk. A resumed upload must carry the same digest.
func (h *Header) Digest() string {
	s := sha256.Sum256(h.Raw)
	return hex.EncodeToString(s[:])
}

// Size is the encoded header's length: where the body starts in the stream.
func (h *Header) Size() int64 {
	return int64(len(Magic) + 4 + len(h.Raw) + 2 + len(h.Sig))
}

// BodySize is the kernel and root file system together.
func (m *Manifest) BodySize() int64 { return m.Kernel.Size + m.RootFS.Size }

// BodyOffset is where chunk i of the kernel (rootfs false) or of the root
// file system starts in the body.
func (m *Manifest) BodyOffset(rootfs bool, i int) int64 {
	off := int64(i) * m.ChunkSize
	if rootfs {
		off += m.Kernel.Size
	}
	return off
}

// ErrInvalid is wrapped by every error about a manifest's content.
var ErrInvalid = errors.New("invalid OS update manifest")

func invalid(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, a...))
}

// ParseManifest parses and checks a manifest from untrusted bytes: strict
// JSON (unknown fields, trailing data refused), every field in range, chunk
// lists that match the sizes. It does not check the signature.
func ParseManifest(b []byte) (*Manifest, error) {
	if len(b) > MaxManifestSize {
		return nil, invalid("%d bytes, more than %d", len(b), MaxManifestSize)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return nil, invalid("%v", err)
	}
	if dec.More() {
		return nil, invalid("data after the manifest's JSON object")
	}
	if err := m.check(); err != nil {
		return nil, err
	}
	return &m, nil
}

func (m *Manifest) check() error {
	if m.MediaType != MediaTypeManifest {
		return invalid("mediaType %q, want %q", m.MediaType, MediaTypeManifest)
	}
	if m.Version == 0 {
		return invalid("version 0: versions start at 1")
	}
	for _, f := range []struct{ name, v string }{{"image", m.Image}, {"arch", m.Arch}, {"target", m.Target}} {
		if !token(f.v) {
			return invalid("%s %q is not a short name of letters, digits, '.', '_' or '-'", f.name, f.v)
		}
	}
	if len(m.Title) > maxText || !printable(m.Title) {
		return invalid("title is not one line of at most %d printable characters", maxText)
	}
	if len(m.Cmdline) > maxCmdline || !printable(m.Cmdline) {
		return invalid("cmdline is not one line of at most %d printable characters", maxCmdline)
	}
	for _, f := range strings.Fields(m.Cmdline) {
		k, _, _ := strings.Cut(f, "=")
		if k == "root" || k == "rootfstype" {
			return invalid("cmdline names a root file system (%s): the node adds its slot's own", f)
		}
	}
	if m.Built.IsZero() {
		return invalid("no build time")
	}
	cs := m.ChunkSize
	if cs < MinChunkSize || cs > MaxChunkSize || cs&(cs-1) != 0 {
		return invalid("chunkSize %d is not a power of two from %d to %d", cs, MinChunkSize, MaxChunkSize)
	}
	if err := m.Kernel.check("kernel", cs, MaxKernelSize); err != nil {
		return err
	}
	if err := m.RootFS.check("rootfs", cs, MaxRootFSSize); err != nil {
		return err
	}
	if _, err := decodeKey(m.SigningKey); err != nil {
		return invalid("signingKey: %v", err)
	}
	if len(m.KeyChain) > MaxKeyChain {
		return invalid("%d key endorsements, more than %d", len(m.KeyChain), MaxKeyChain)
	}
	for i, e := range m.KeyChain {
		if _, err := decodeKey(e.Key); err != nil {
			return invalid("keyChain[%d].key: %v", i, err)
		}
		if _, err := decodeKey(e.By); err != nil {
			return invalid("keyChain[%d].by: %v", i, err)
		}
		if s, err := base64.StdEncoding.DecodeString(e.Sig); err != nil || len(s) != ed25519.SignatureSize {
			return invalid("keyChain[%d].sig is not a base64 ed25519 signature", i)
		}
	}
	return nil
}

func (s *Section) check(name string, chunk, limit int64) error {
	if s.Size <= 0 || s.Size > limit {
		return invalid("%s size %d is not between 1 and %d", name, s.Size, limit)
	}
	want := (s.Size + chunk - 1) / chunk
	if int64(len(s.Chunks)) != want {
		return invalid("%s has %d chunk hashes, its size %d needs %d", name, len(s.Chunks), s.Size, want)
	}
	for i, c := range s.Chunks {
		if len(c) != 2*sha256.Size || strings.ToLower(c) != c {
			return invalid("%s chunk %d: %q is not a lower-case hex SHA-256", name, i, c)
		}
		if _, err := hex.DecodeString(c); err != nil {
			return invalid("%s chunk %d: %q is not a lower-case hex SHA-256", name, i, c)
		}
	}
	return nil
}

func token(s string) bool {
	if s == "" || len(s) > maxText {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

func printable(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

func decodeKey(s string) (ed25519.PublicKey, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, errors.New("not a base64 ed25519 public key")
	}
	return ed25519.PublicKey(b), nil
}

// ParsePublicKey reads a public key as EncodeKey writes it (what an image
// bakes in for its node to trust).
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	k, err := decodeKey(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("update key: %w", err)
	}
	return k, nil
}

// EncodeKey is a public key as manifests and key files write it.
func EncodeKey(k ed25519.PublicKey) string { return base64.StdEncoding.EncodeToString(k) }

// KeyID is a short name of a key for messages: the first 12 hex digits of
// its SHA-256.
func KeyID(k ed25519.PublicKey) string {
	s := sha256.Sum256(k)
	return hex.EncodeToString(s[:6])
}
