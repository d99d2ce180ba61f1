package ospayload

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/nodeboot/nodeboot/internal/disk"
	"github.com/nodeboot/nodeboot/internal/piboot"
)

// BuildOptions say how to sign a payload.
type BuildOptions struct {
	// Key signs the manifest (the project's update key).
	Key ed25519.PrivateKey
	// KeyChain endorses Key for nodes that trust an older key.
	KeyChain []Endorsement
	// Version of the image; it must grow with every build sent to a node.
	Version uint64
	// Arch is the image's GOARCH; empty: the arch of the image's kernel.
	// A UEFI image whose kernel is for another arch is refused: the node
	// would refuse the payload only after its whole upload, and a
	// mislabelled one says the wrong thing everywhere in between.
	Arch string
	// Target is the boot layout ("uefi" if empty).
	Target string
	// Built is the build time (now if zero).
	Built time.Time
	// Image is the image's id; if empty, the first 12 hex digits of the
	// SHA-256 of its chunk hashes and command line, so the same image gets
	// the same id.
	Image string
	// ChunkSize (DefaultChunkSize if 0).
	ChunkSize int64
}

// Payload is a signed payload made from a disk image, ready to stream.
type Payload struct {
	Header  *Header
	img     string
	kernel  []byte
	rootOff int64
}

// FromImage makes the OS update payload of the disk image at img (made by
// `nodeboot build --format disk`): the kernel of the entry systemd-boot
// would boot, and the squashfs in the root slot that entry names, hashed by
// chunk and signed.
func FromImage(img string, o BuildOptions) (*Payload, error) {
	if len(o.Key) != ed25519.PrivateKeySize {
		return nil, errors.New("no update signing key")
	}
	if o.Version == 0 {
		return nil, errors.New("an OS update needs a version of at least 1")
	}
	if o.Target == "" {
		o.Target = "uefi"
	}
	if o.Built.IsZero() {
		o.Built = time.Now().UTC().Truncate(time.Second)
	}
	if o.ChunkSize == 0 {
		o.ChunkSize = DefaultChunkSize
	}
	if o.Target == TargetPi {
		if o.Arch == "" {
			o.Arch = "arm64"
		}
		return fromPiImage(img, o)
	}
	boot, err := disk.ReadBoot(img)
	if err != nil {
		return nil, err
	}
	// A kernel of neither kind is left to the node's own checks (the
	// payload says amd64 unless told): only a known mismatch is refused.
	switch k := KernelArch(boot.Kernel); {
	case k != "" && o.Arch == "":
		o.Arch = k
	case k != "" && o.Arch != k:
		return nil, fmt.Errorf("%s holds an %s kernel, not %s: drop --arch (the update takes the image's) or build the image with --arch %s", img, k, o.Arch, o.Arch)
	case o.Arch == "":
		o.Arch = "amd64"
	}
	layout, err := disk.ReadLayout(img)
	if err != nil {
		return nil, err
	}
	root := disk.RootPartUUID(boot.Entry.Options)
	var slot *disk.Partition
	for _, p := range []*disk.Partition{&layout.RootA, &layout.RootB} {
		if p.GUID == root {
			slot = p
		}
	}
	if slot == nil {
		return nil, fmt.Errorf("%s: boot entry %s names root PARTUUID %q, which is neither root slot; rebuild the image with `nodeboot build --format disk`", img, boot.Entry.ID, root)
	}
	f, err := os.Open(img)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	rootSize, err := disk.SquashfsSize(f, slot.Offset)
	if err != nil {
		return nil, fmt.Errorf("%s: root slot %s: %w", img, slot.Label, err)
	}
	if rootSize > slot.Size {
		return nil, fmt.Errorf("%s: root slot %s: its squashfs (%d bytes) is larger than the slot (%d bytes): the image is damaged", img, slot.Label, rootSize, slot.Size)
	}

	return finish(img, f, o, &Manifest{
		Title:   slotTitle.ReplaceAllString(boot.Entry.Title, ""),
		Cmdline: disk.BaseCmdline(boot.Entry.Options),
	}, boot.Kernel, slot.Offset, rootSize)
}

// KernelArch is the GOARCH of a kernel's bytes, "" if they are neither an
// x86 bzImage ("HdrS" at 0x202) nor an arm64 Image ("ARM\x64" at 0x38).
func KernelArch(k []byte) string {
	switch {
	case len(k) >= 0x206 && string(k[0x202:0x206]) == "HdrS":
		return "amd64"
	case len(k) >= 0x3c && binary.LittleEndian.Uint32(k[0x38:]) == 0x644d5241:
		return "arm64"
	}
	return ""
}

// TargetPi is a Raspberry Pi image's target: its kernel section is the
// slot's boot set (piboot.WriteBootSet), and its root the squashfs of
// root slot A (partition 5).
const TargetPi = "pi"

// fromPiImage makes the payload of a Pi image (`nodeboot build --target
// pi`): slot A's boot set without cmdline.txt, which the node writes for
// its own disk, the base of that cmdline.txt, and root slot A.
func fromPiImage(img string, o BuildOptions) (*Payload, error) {
	files, cmdline, err := disk.ReadPiBootSet(img)
	if err != nil {
		return nil, err
	}
	var set bytes.Buffer
	if err := piboot.WriteBootSet(&set, files); err != nil {
		return nil, fmt.Errorf("%s: %w", img, err)
	}
	f, err := os.Open(img)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	_, parts, err := disk.ReadMBR(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", img, err)
	}
	var root *disk.MBRPartition
	for i := range parts {
		if parts[i].Number == piboot.PartRootA {
			root = &parts[i]
		}
	}
	if root == nil {
		return nil, fmt.Errorf("%s has no partition %d (root slot A): rebuild it with `nodeboot build --target pi`", img, piboot.PartRootA)
	}
	rootSize, err := disk.SquashfsSize(f, root.Offset)
	if err != nil {
		return nil, fmt.Errorf("%s: root slot A: %w", img, err)
	}
	if rootSize > root.Size {
		return nil, fmt.Errorf("%s: root slot A: its squashfs (%d bytes) is larger than the slot (%d bytes): the image is damaged", img, rootSize, root.Size)
	}
	return finish(img, f, o, &Manifest{Title: "nodeboot", Cmdline: piboot.BaseCmdline(cmdline)}, set.Bytes(), root.Offset, rootSize)
}

// finish hashes the kernel section and the root file system into m and
// signs it.
func finish(img string, f *os.File, o BuildOptions, m *Manifest, kernel []byte, rootOff, rootSize int64) (*Payload, error) {
	var err error
	*m = Manifest{
		Title:     m.Title,
		Cmdline:   m.Cmdline,
		Version:   o.Version,
		Arch:      o.Arch,
		Target:    o.Target,
		Built:     o.Built,
		ChunkSize: o.ChunkSize,
		KeyChain:  o.KeyChain,
	}
	if m.Kernel, err = hashSection(bytes.NewReader(kernel), int64(len(kernel)), o.ChunkSize); err != nil {
		return nil, fmt.Errorf("%s: hashing the kernel: %w", img, err)
	}
	if m.RootFS, err = hashSection(io.NewSectionReader(f, rootOff, rootSize), rootSize, o.ChunkSize); err != nil {
		return nil, fmt.Errorf("%s: hashing the root file system: %w", img, err)
	}
	m.Image = o.Image
	if m.Image == "" {
		h := sha256.New()
		fmt.Fprintf(h, "%s\n%s\n%s\n", strings.Join(m.Kernel.Chunks, ","), strings.Join(m.RootFS.Chunks, ","), m.Cmdline)
		m.Image = hex.EncodeToString(h.Sum(nil))[:12]
	}
	hdr, err := Sign(m, o.Key)
	if err != nil {
		return nil, err
	}
	return &Payload{Header: hdr, img: img, kernel: kernel, rootOff: rootOff}, nil
}

// slotTitle is what disk.BootEntry adds to a title.
var slotTitle = regexp.MustCompile(` \(slot [A-Z]\)$`)

func hashSection(r io.Reader, size, chunk int64) (Section, error) {
	s := Section{Size: size}
	buf := make([]byte, chunk)
	for off := int64(0); off < size; off += chunk {
		b := buf[:min(chunk, size-off)]
		if _, err := io.ReadFull(r, b); err != nil {
			return s, err
		}
		sum := sha256.Sum256(b)
		s.Chunks = append(s.Chunks, hex.EncodeToString(sum[:]))
	}
	return s, nil
}

// Size is the whole stream's length.
func (p *Payload) Size() int64 { return p.Header.Size() + p.Header.Manifest.BodySize() }

// Open returns the stream: the header, then the body from body offset
// from (0 for all of it; a node's resume offset to continue an upload).
func (p *Payload) Open(from int64) (io.ReadCloser, error) {
	m := p.Header.Manifest
	if from < 0 || from > m.BodySize() {
		return nil, fmt.Errorf("resume offset %d is outside the body (0 to %d bytes)", from, m.BodySize())
	}
	f, err := os.Open(p.img)
	if err != nil {
		return nil, err
	}
	var hdr bytes.Buffer
	p.Header.WriteTo(&hdr)
	body := io.MultiReader(bytes.NewReader(p.kernel), io.NewSectionReader(f, p.rootOff, m.RootFS.Size))
	if _, err := io.CopyN(io.Discard, body, from); err != nil {
		f.Close()
		return nil, err
	}
	return readCloser{io.MultiReader(&hdr, body), f}, nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

// WriteTo writes the whole stream to w.
func (p *Payload) WriteTo(w io.Writer) (int64, error) {
	r, err := p.Open(0)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	return io.Copy(w, r)
}
