package build

import (
	"context"
	"crypto/sha256"
	"encoding"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nodeboot/nodeboot/internal/filedigest"
	"github.com/nodeboot/nodeboot/internal/image"
	"github.com/nodeboot/nodeboot/internal/usercache"
)

// An initramfs is written as two archives, one after the other in one
// file (the kernel unpacks concatenated archives, compressed or not, in
// order): the system part (PID 1, node, its libraries, the JS module, the
// shell, the mount points) and the app part (/apps, the generated /etc).
// The system part is the 111 MiB of examples/hello's 111.1; it is written
// once per content into the user cache and copied into each image, so a
// rebuild after an edit to the app writes only the app's part (issue 15).

// partsFormat names how a system part is laid out; a change to the writer
// that changes its bytes must change it, so old parts are never reused.
const partsFormat = "nodeboot-initramfs-part-1"

// inSystemPart tells the entries every image with the same node, PID 1 and
// libraries shares from those that depend on the apps and their config.
func inSystemPart(e *image.Entry) bool {
	return !strings.HasPrefix(e.Path, "/apps/") && !strings.HasPrefix(e.Path, "/etc/")
}

// partMeta is stored beside a cached part.
type partMeta struct {
	Size         int64  `json:"size"`
	Uncompressed int64  `json:"uncompressedSize"`
	SHA256       string `json:"sha256"`
	// HashState is SHA-256's state after the part's bytes, so the image's
	// digest is finished from the app part alone, without reading the
	// system part again.
	HashState []byte `json:"hashState"`
}

// partKey is the digest of everything that goes into the part's bytes:
// each entry's path, type, mode, owner, link and content digest, the
// compression and the mtime. Content digests come from digests (by source
// path, computed by this build) or are computed here, so two builds share
// a part only when they would write the same bytes.
func partKey(t *image.Tree, comp image.Compression, mtime time.Time, digests map[string]string) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%d\x00", partsFormat, comp, mtime.Unix())
	for _, e := range t.Entries() {
		content := ""
		if e.Kind == image.KindFile {
			switch {
			case e.Data != nil || e.Source == "":
				s := sha256.Sum256(e.Data)
				content = hex.EncodeToString(s[:])
			case digests[e.Source] != "":
				content = digests[e.Source]
			default:
				sum, _, err := filedigest.Sum(e.Source)
				if err != nil {
					return "", fmt.Errorf("adding %s: %w", e.Path, err)
				}
				content = sum
			}
		}
		fmt.Fprintf(h, "%s\x00%d\x00%o\x00%d\x00%d\x00%s\x00%s\x00", e.Path, e.Kind, e.Mode, e.UID, e.GID, e.Link, content)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// PartsDir is where system parts are cached: <user cache>/nodeboot/parts.
func PartsDir() (string, error) {
	root, err := usercache.Root()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, usercache.KindParts), nil
}

// systemPart opens the cached part of base, writing it first (written)
// when it is missing or damaged.
func systemPart(ctx context.Context, base *image.Tree, comp image.Compression, mtime time.Time, digests map[string]string) (f *os.File, m *partMeta, written bool, err error) {
	key, err := partKey(base, comp, mtime, digests)
	if err != nil {
		return nil, nil, false, err
	}
	parts, err := PartsDir()
	if err != nil {
		return nil, nil, false, err
	}
	dir := filepath.Join(parts, "initramfs-"+key[:32])
	if f, m, err := openPart(dir); err == nil {
		return f, m, false, nil
	}
	f, m, err = writePart(ctx, dir, base, comp, mtime)
	return f, m, err == nil, err
}

func writePart(ctx context.Context, dir string, base *image.Tree, comp image.Compression, mtime time.Time) (*os.File, *partMeta, error) {
	parts := filepath.Dir(dir)
	if err := os.MkdirAll(parts, 0o755); err != nil {
		return nil, nil, fmt.Errorf("the image cache: %w", err)
	}
	tmp, err := os.MkdirTemp(parts, ".tmp-")
	if err != nil {
		return nil, nil, fmt.Errorf("the image cache: %w", err)
	}
	defer os.RemoveAll(tmp)
	pf, err := os.Create(filepath.Join(tmp, "part"))
	if err != nil {
		return nil, nil, fmt.Errorf("the image cache: %w", err)
	}
	defer pf.Close()
	h := sha256.New()
	st, err := image.WriteInitramfsTo(ctx, base, io.MultiWriter(pf, h), comp, mtime)
	if err != nil {
		return nil, nil, err
	}
	state, err := h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		return nil, nil, err
	}
	m := &partMeta{Size: st.Compressed, Uncompressed: st.Uncompressed, SHA256: hex.EncodeToString(h.Sum(nil)), HashState: state}
	mj, err := json.Marshal(m)
	if err != nil {
		return nil, nil, err
	}
	if err := os.WriteFile(filepath.Join(tmp, "meta.json"), mj, 0o644); err != nil {
		return nil, nil, fmt.Errorf("the image cache: %w", err)
	}
	// Durable before it is published: a part is trusted by its name.
	if err := pf.Sync(); err != nil {
		return nil, nil, fmt.Errorf("the image cache: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		// Another build published the same part first: use it.
		if _, statErr := os.Stat(dir); statErr != nil {
			return nil, nil, fmt.Errorf("the image cache: %w", err)
		}
	}
	return openPart(dir)
}

// openPart opens a cached part and checks it against its meta: its size,
// and its digest (remembered by filedigest while the file is unchanged, so
// a part damaged by any write is hashed again and refused).
func openPart(dir string) (*os.File, *partMeta, error) {
	mj, err := os.ReadFile(filepath.Join(dir, "meta.json"))
	if err != nil {
		return nil, nil, err
	}
	var m partMeta
	if err := json.Unmarshal(mj, &m); err != nil {
		return nil, nil, err
	}
	f, err := os.Open(filepath.Join(dir, "part"))
	if err != nil {
		return nil, nil, err
	}
	sum, size, err := filedigest.Sum(f.Name())
	if err == nil && (size != m.Size || sum != m.SHA256) {
		err = errors.New("damaged")
	}
	if err != nil {
		f.Close()
		// Damaged: it goes, and the caller writes it again.
		os.RemoveAll(dir)
		return nil, nil, fmt.Errorf("cached part %s: %w", dir, err)
	}
	return f, &m, nil
}

// writeInitramfsParts writes tree's initramfs to dst as the cached system
// part followed by the app part, and returns the stats and the file's
// SHA-256. sync makes the file durable; run's own image dir, which run
// writes again before every boot, goes without.
func writeInitramfsParts(ctx context.Context, tree *image.Tree, dst string, comp image.Compression, mtime time.Time, digests map[string]string, sync bool, logf func(string, ...any)) (st image.Stats, sum, partPath string, err error) {
	base, apps := tree.Split(inSystemPart)
	part, m, written, err := systemPart(ctx, base, comp, mtime, digests)
	if err != nil {
		return image.Stats{}, "", "", err
	}
	if written {
		logf("cached the system part (node, libraries, init: %s) in %s", humanSize(m.Size), part.Name())
	}
	defer part.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return image.Stats{}, "", "", err
	}
	defer out.Close()
	// *os.File to *os.File: copy_file_range, a copy inside the kernel
	// (a reflink where the file system has them).
	if n, err := io.Copy(out, part); err != nil || n != m.Size {
		return image.Stats{}, "", "", fmt.Errorf("writing %s: %d of %d bytes: %v", dst, n, m.Size, err)
	}
	h := sha256.New()
	if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(m.HashState); err != nil {
		return image.Stats{}, "", "", fmt.Errorf("cached part %s: %w", part.Name(), err)
	}
	if st, err = image.WriteInitramfsTo(ctx, apps, io.MultiWriter(out, h), comp, mtime); err != nil {
		return image.Stats{}, "", "", err
	}
	if sync {
		if err := out.Sync(); err != nil {
			return image.Stats{}, "", "", fmt.Errorf("writing %s: %w", dst, err)
		}
	}
	if err := out.Close(); err != nil {
		return image.Stats{}, "", "", fmt.Errorf("writing %s: %w", dst, err)
	}
	st.Compressed += m.Size
	st.Uncompressed += m.Uncompressed
	return st, hex.EncodeToString(h.Sum(nil)), part.Name(), nil
}
