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
)

// ErrCorrupt is wrapped when the stream does not match its manifest: a
// chunk whose hash differs, a stream cut short or with bytes after its end.
var ErrCorrupt = errors.New("the OS update payload is damaged")

// WriteHeader writes the header h in the stream format.
func (h *Header) WriteTo(w io.Writer) (int64, error) {
	var b bytes.Buffer
	b.WriteString(Magic)
	b.Write(binary.BigEndian.AppendUint32(nil, uint32(len(h.Raw))))
	b.Write(h.Raw)
	b.Write(binary.BigEndian.AppendUint16(nil, uint16(len(h.Sig))))
	b.Write(h.Sig)
	return b.WriteTo(w)
}

// ReadHeader reads a payload's header from untrusted r and parses its
// manifest. It reads exactly the header, so r is left at the body. The
// signature is not checked here (Verify).
func ReadHeader(r io.Reader) (*Header, error) {
	magic := make([]byte, len(Magic))
	if _, err := io.ReadFull(r, magic); err != nil {
		return nil, fmt.Errorf("%w: reading its header: %v", ErrCorrupt, eof(err))
	}
	if string(magic) != Magic {
		return nil, fmt.Errorf("%w: it does not start with %q: is it an OS update payload (`nodeboot update`)?", ErrCorrupt, Magic[:len(Magic)-1])
	}
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, fmt.Errorf("%w: reading its header: %v", ErrCorrupt, eof(err))
	}
	size := binary.BigEndian.Uint32(n[:])
	if size == 0 || size > MaxManifestSize {
		return nil, fmt.Errorf("%w: its manifest is %d bytes (at most %d)", ErrCorrupt, size, MaxManifestSize)
	}
	raw := make([]byte, size)
	if _, err := io.ReadFull(r, raw); err != nil {
		return nil, fmt.Errorf("%w: reading its manifest: %v", ErrCorrupt, eof(err))
	}
	m, err := ParseManifest(raw)
	if err != nil {
		return nil, err
	}
	if _, err := io.ReadFull(r, n[:2]); err != nil {
		return nil, fmt.Errorf("%w: reading its signature: %v", ErrCorrupt, eof(err))
	}
	if l := binary.BigEndian.Uint16(n[:2]); l != ed25519.SignatureSize {
		return nil, fmt.Errorf("%w: its signature is %d bytes, an ed25519 signature is %d", ErrCorrupt, l, ed25519.SignatureSize)
	}
	sig := make([]byte, ed25519.SignatureSize)
	if _, err := io.ReadFull(r, sig); err != nil {
		return nil, fmt.Errorf("%w: reading its signature: %v", ErrCorrupt, eof(err))
	}
	return &Header{Manifest: m, Raw: raw, Sig: sig}, nil
}

func eof(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New("the stream ends early (an interrupted upload?)")
	}
	return err
}

// Chunk is one verified chunk of the body.
type Chunk struct {
	RootFS bool  // false: the kernel
	Index  int   // chunk number within its section
	Offset int64 // byte offset within its section
	Data   []byte
	// Last says this is the last chunk of the body and the stream ended
	// right after it.
	Last bool
}

// ChunkReader reads a payload's body from untrusted r and hands out each
// chunk only once its SHA-256 matched the manifest's. It holds one chunk:
// the caller writes it where it belongs and asks for the next, so nothing
// unverified is ever written and nothing has to be read back.
type ChunkReader struct {
	r      io.Reader
	m      *Manifest
	rootfs bool
	index  int
	buf    []byte
	done   bool
	// atEnd: the reader starts at the body's end (a resumed upload that
	// only has to arm the slot); the stream must end there too.
	atEnd bool
}

// NewChunkReader reads the body from the chunk that starts at body offset
// from (0, or a chunk boundary of either section: a resumed upload).
func NewChunkReader(r io.Reader, m *Manifest, from int64) (*ChunkReader, error) {
	c := &ChunkReader{r: r, m: m, buf: make([]byte, m.ChunkSize)}
	switch {
	case from < 0 || from > m.BodySize():
		return nil, fmt.Errorf("resume offset %d is outside the body (0 to %d bytes)", from, m.BodySize())
	case from < m.Kernel.Size:
		if from%m.ChunkSize != 0 {
			return nil, fmt.Errorf("resume offset %d is not at a chunk boundary (%d bytes)", from, m.ChunkSize)
		}
		c.index = int(from / m.ChunkSize)
	default:
		off := from - m.Kernel.Size
		if off%m.ChunkSize != 0 && from != m.BodySize() {
			return nil, fmt.Errorf("resume offset %d is not at a chunk boundary of the root file system", from)
		}
		c.rootfs, c.index = true, int(off/m.ChunkSize)
	}
	c.done = from == m.BodySize()
	c.atEnd = c.done
	return c, nil
}

// Next returns the next verified chunk, or io.EOF after the last one. Any
// other error wraps ErrCorrupt (or is the reader's own), and the reader is
// then unusable.
func (c *ChunkReader) Next() (*Chunk, error) {
	if c.done {
		if c.atEnd {
			c.atEnd = false
			var one [1]byte
			if k, _ := io.ReadFull(c.r, one[:]); k > 0 {
				return nil, fmt.Errorf("%w: bytes follow the root file system's end", ErrCorrupt)
			}
		}
		return nil, io.EOF
	}
	sec, name := &c.m.Kernel, "kernel"
	if c.rootfs {
		sec, name = &c.m.RootFS, "root file system"
	}
	off := int64(c.index) * c.m.ChunkSize
	n := min(c.m.ChunkSize, sec.Size-off)
	b := c.buf[:n]
	if _, err := io.ReadFull(c.r, b); err != nil {
		c.done = true
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%w: the stream ends inside chunk %d of the %s, at body byte %d of %d (an interrupted upload: send it again, the node resumes where it stopped)",
				ErrCorrupt, c.index, name, c.m.BodyOffset(c.rootfs, c.index), c.m.BodySize())
		}
		return nil, err
	}
	sum := sha256.Sum256(b)
	if hex.EncodeToString(sum[:]) != sec.Chunks[c.index] {
		c.done = true
		return nil, fmt.Errorf("%w: chunk %d of the %s (bytes %d to %d) does not match its signed SHA-256; it was damaged on the way: send the update again",
			ErrCorrupt, c.index, name, off, off+n)
	}
	ch := &Chunk{RootFS: c.rootfs, Index: c.index, Offset: off, Data: b}
	c.index++
	if int64(c.index)*c.m.ChunkSize >= sec.Size {
		if c.rootfs {
			c.done = true
		} else {
			c.rootfs, c.index = true, 0
		}
	}
	if c.done {
		// The body must end here: a longer stream is not this payload.
		var one [1]byte
		if k, _ := io.ReadFull(c.r, one[:]); k > 0 {
			return nil, fmt.Errorf("%w: bytes follow the root file system's end", ErrCorrupt)
		}
		ch.Last = true
	}
	return ch, nil
}

// Verify reads a whole payload stream, checks its signature against
// trusted and every chunk, and returns its header: what `nodeboot update`
// can run on a payload before sending it, and what the tests run on
// damaged ones.
func Verify(r io.Reader, trusted []ed25519.PublicKey) (*Header, error) {
	h, err := ReadHeader(r)
	if err != nil {
		return nil, err
	}
	if _, err := h.Verify(trusted); err != nil {
		return nil, err
	}
	cr, err := NewChunkReader(r, h.Manifest, 0)
	if err != nil {
		return nil, err
	}
	for {
		if _, err := cr.Next(); err == io.EOF {
			return h, nil
		} else if err != nil {
			return nil, err
		}
	}
}
