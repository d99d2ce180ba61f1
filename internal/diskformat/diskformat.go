// Package diskformat turns a raw GPT disk image into the disk formats that
// VM hosts and clouds import: qcow2 (libvirt, Proxmox, OpenStack), VMDK
// (VMware, AWS), a fixed VHD (Azure, also AWS) and GCE's disk.raw in a
// gzipped tar.
//
// qcow2, VMDK and VHD are written by qemu-img (Debian's qemu-utils): no Go
// library served here writes them (go-diskfs reads and writes raw images
// only), and qemu-img is the reference implementation every cloud's
// documentation converts with. The GCE archive is plain tar + gzip and is
// written in Go.
package diskformat

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"
)

// Format is one output format of a disk build.
type Format string

// The formats. Raw is the GPT image `--format disk` writes; the others are
// converted from it.
const (
	Raw   Format = "disk"
	QCOW2 Format = "qcow2"
	VMDK  Format = "vmdk"
	VHD   Format = "vhd"
	GCE   Format = "gce"
)

// Converted lists the formats made from the raw image, in the order help
// texts name them.
var Converted = []Format{QCOW2, VMDK, VHD, GCE}

// Parse recognises a converted format's name.
func Parse(s string) (Format, bool) {
	for _, f := range Converted {
		if string(f) == s {
			return f, true
		}
	}
	return "", false
}

// Ext is the file extension an image of format f gets by default.
func (f Format) Ext() string {
	switch f {
	case QCOW2:
		return ".qcow2"
	case VMDK:
		return ".vmdk"
	case VHD:
		return ".vhd"
	case GCE:
		return ".tar.gz"
	}
	return ".img"
}

// QEMUName is qemu-img's name of the format (its -f/-O argument); "" for
// GCE's archive, which qemu-img does not read.
func (f Format) QEMUName() string {
	switch f {
	case Raw:
		return "raw"
	case QCOW2:
		return "qcow2"
	case VMDK:
		return "vmdk"
	case VHD:
		return "vpc"
	}
	return ""
}

// Alignment is the size the raw image must be a multiple of for f:
// Azure refuses a VHD whose virtual size is not a whole number of MiB,
// and GCE an image whose disk.raw is not a whole number of GiB.
func (f Format) Alignment() int64 {
	switch f {
	case VHD:
		return 1 << 20
	case GCE:
		return 1 << 30
	}
	return 512
}

// GCEMember is the one file GCE expects in its archive.
const GCEMember = "disk.raw"

// FindQEMUImg returns qemu-img's path, or an error that says how to
// install it.
func FindQEMUImg() (string, error) {
	p, err := exec.LookPath("qemu-img")
	if err != nil {
		return "", errors.New("qemu-img not found: it writes the qcow2, vmdk and vhd formats; install it (Debian/Ubuntu: `sudo apt-get install qemu-utils`; Fedora: `sudo dnf install qemu-img`; macOS: `brew install qemu`), or build --format disk or gce, which need no qemu-img")
	}
	return p, nil
}

// Check refuses a raw image size format f cannot carry.
func Check(f Format, size int64) error {
	a := f.Alignment()
	if size%a == 0 {
		return nil
	}
	switch f {
	case VHD:
		return fmt.Errorf("--format vhd needs a disk size that is a whole number of MiB (Azure refuses others), not %d bytes: pass e.g. --size %dM", size, (size+a-1)/a)
	case GCE:
		return fmt.Errorf("--format gce needs a disk size that is a whole number of GiB (GCE refuses others), not %d bytes: pass e.g. --size %dG", size, (size+a-1)/a)
	}
	return fmt.Errorf("disk size %d is not a multiple of %d bytes", size, a)
}

// Convert writes the raw image raw as format f to out. mtime is the GCE
// archive member's modification time (the tar is then reproducible).
func Convert(ctx context.Context, f Format, raw, out string, mtime time.Time) error {
	st, err := os.Stat(raw)
	if err != nil {
		return fmt.Errorf("converting to %s: %w", f, err)
	}
	if err := Check(f, st.Size()); err != nil {
		return err
	}
	if f == GCE {
		return writeGCE(ctx, raw, out, mtime)
	}
	args := []string{"convert", "-f", "raw", "-O", f.QEMUName()}
	switch f {
	case QCOW2:
		// compat 1.1 (QEMU 1.1+, every current hypervisor) allows
		// zero clusters; the image stays as sparse as the raw one.
		args = append(args, "-o", "compat=1.1")
	case VMDK:
		// streamOptimized is the VMDK that AWS's VM Import and VMware's
		// OVF tools take (compressed, no holes to ship).
		args = append(args, "-o", "subformat=streamOptimized")
	case VHD:
		// Azure: a fixed VHD whose virtual size is exactly the raw
		// image's. Without force_size qemu-img rounds the size to a
		// cylinder/head/sector geometry, which Azure then refuses.
		args = append(args, "-o", "subformat=fixed,force_size=on")
	default:
		return fmt.Errorf("unknown disk format %q", f)
	}
	args = append(args, raw, out)
	qi, err := FindQEMUImg()
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, qi, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("qemu-img convert to %s: %w: %s", f, err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// writeGCE writes raw as disk.raw in a gzipped tar, the form GCE's image
// import takes. GNU tar format, as GCE's documentation writes it with
// `tar --format=oldgnu`; Go's writer does not make sparse members, so the
// zeros are stored and gzip shrinks them.
func writeGCE(ctx context.Context, raw, out string, mtime time.Time) error {
	in, err := os.Open(raw)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	f, err := os.Create(out)
	if err != nil {
		return fmt.Errorf("writing %s: %w", out, err)
	}
	defer f.Close()
	zw, err := gzip.NewWriterLevel(f, gzip.BestSpeed)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(zw)
	hdr := &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     GCEMember,
		Size:     st.Size(),
		Mode:     0o644,
		ModTime:  mtime,
		Format:   tar.FormatGNU,
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("writing %s: %w", out, err)
	}
	if _, err := io.Copy(tw, ctxReader{ctx, in}); err != nil {
		return fmt.Errorf("writing %s: %w", out, err)
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", out, err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", out, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("writing %s: %w", out, err)
	}
	return f.Close()
}

// ctxReader stops a long copy when ctx is cancelled (Ctrl-C during a
// multi-GiB archive).
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// Detect tells the format of an image file from its bytes: qcow2's and
// VMDK's magic at the start, a VHD's "conectix" footer at the end, else raw.
// A GCE archive (gzip) is reported as GCE.
func Detect(path string) (Format, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	head := make([]byte, 4)
	if _, err := io.ReadFull(f, head); err != nil {
		return Raw, nil
	}
	switch {
	case string(head) == "QFI\xfb":
		return QCOW2, nil
	case string(head) == "KDMV":
		return VMDK, nil
	case head[0] == 0x1f && head[1] == 0x8b:
		return GCE, nil
	}
	st, err := f.Stat()
	if err != nil {
		return "", err
	}
	if st.Size() >= 512 {
		foot := make([]byte, 8)
		if _, err := f.ReadAt(foot, st.Size()-512); err == nil && string(foot) == "conectix" {
			return VHD, nil
		}
	}
	return Raw, nil
}
