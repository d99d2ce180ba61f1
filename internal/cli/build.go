package cli

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/nodeboot/nodeboot/internal/build"
	"github.com/nodeboot/nodeboot/internal/image"
	arches "github.com/nodeboot/nodeboot/internal/target"
)

// buildFlags are shared by build and run.
type buildFlags struct {
	config, node, kernel, compression, arch string
	format, size, target                    string
	flags                                   *pflag.FlagSet
	libraries                               string
}

func (f *buildFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.config, "config", "", "nodeboot.json to use (default: the app dir's nodeboot.json, if any)")
	fs.StringVar(&f.node, "node", "", "node to put in the image: a version (22, 22.21.1) fetched from the npm registry npm is configured for, or a path to a node binary (default: the host's node if it satisfies engines.node)")
	fs.StringVar(&f.kernel, "kernel", "", "Linux kernel to boot: gokrazy (the prebuilt kernel pinned in nodeboot's go.mod, the default), nodeboot-vm or nodeboot-pc (nodeboot's own, built from Debian's linux-source on first use: see `nodeboot kernel build`), or a bzImage's path; default $NODEBOOT_KERNEL if set")
	fs.StringVar(&f.compression, "compression", "", "initramfs: none (default: boots fastest), zstd or gzip; --format disk: none stores the squashfs root uncompressed, anything else zlib (default)")
	fs.StringVar(&f.arch, "arch", arches.Host(), "target architecture: amd64 or arm64 (for arm64 the C library comes from Debian's arm64 packages, node from the npm registry)")
	fs.StringVar(&f.format, "format", "initramfs", "image format: initramfs (kernel + initramfs, runs in RAM), disk (a GPT disk image for UEFI PCs and VMs, with a persistent /data), or that disk image as qcow2 (libvirt, Proxmox), vmdk (VMware, AWS), vhd (Azure: fixed, whole MiB) or gce (disk.raw in a .tar.gz)")
	fs.StringVar(&f.size, "size", "2G", "disk image size (--format disk), e.g. 2G, 512M")
	fs.StringVar(&f.target, "target", "", "machine family: pi for a Raspberry Pi 3B+, 4, 5, Zero 2 W or CM4 SD card image (arm64, --format disk; write it with nodeboot write); default: a UEFI PC or VM")
	f.flags = fs
	fs.StringVar(&f.libraries, "libraries", "", "where node's C library and other shared libraries come from: host (the build host's; a Linux host of the target's arch) or debian (the target's Debian packages, from $NODEBOOT_DEBIAN_MIRROR or apt's sources; the default on macOS and for another arch); default $NODEBOOT_LIBRARIES if set")
}

// kernelName is --kernel, else NODEBOOT_KERNEL: the environment lets a whole
// test suite or CI job boot another kernel (NODEBOOT_KERNEL=nodeboot-vm
// make test-long) without touching each command line.
func (f *buildFlags) kernelName() string {
	if f.kernel != "" {
		return f.kernel
	}
	return os.Getenv("NODEBOOT_KERNEL")
}

// librariesName is --libraries, else NODEBOOT_LIBRARIES.
func (f *buildFlags) librariesName() string {
	if f.libraries != "" {
		return f.libraries
	}
	return build.LibrariesDefault()
}

// parseSize reads 2G, 512M, 1.5G, 4096K or a byte count.
func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(strings.TrimSuffix(strings.TrimSuffix(strings.ToUpper(s), "B"), "I"))
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "K"):
		mult = 1 << 10
	case strings.HasSuffix(s, "M"):
		mult = 1 << 20
	case strings.HasSuffix(s, "G"):
		mult = 1 << 30
	case strings.HasSuffix(s, "T"):
		mult = 1 << 40
	}
	if mult > 1 {
		s = s[:len(s)-1]
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f <= 0 {
		return 0, fmt.Errorf("bad size %q: use e.g. 2G, 512M or a number of bytes", s)
	}
	n := int64(f * float64(mult))
	return n / 512 * 512, nil
}

func (f *buildFlags) options(appDir, outDir string, log io.Writer) (build.Options, error) {
	comp, err := image.ParseCompression(f.compression)
	if err != nil {
		return build.Options{}, err
	}
	arch, format := f.arch, f.format
	if f.target == build.TargetPi && f.flags != nil {
		// --target pi implies arm64 and a disk image; only an --arch or
		// --format the user gave is checked against it.
		if !f.flags.Changed("arch") {
			arch = ""
		}
		if !f.flags.Changed("format") {
			format = build.FormatDisk
		}
	}
	o := build.Options{
		Target:      f.target,
		AppDir:      appDir,
		ConfigPath:  f.config,
		Format:      format,
		OutDir:      outDir,
		Arch:        arch,
		Node:        f.node,
		Kernel:      f.kernelName(),
		Libraries:   f.librariesName(),
		Compression: comp,
		Log:         log,
		Version:     version(),
	}
	if build.IsDisk(format) {
		o.Output, o.OutDir = outDir, ""
		if o.DiskSize, err = parseSize(f.size); err != nil {
			return o, err
		}
	}
	return o, nil
}

func newBuild(stdout, stderr io.Writer) *cobra.Command {
	var bf buildFlags
	var out string
	var explain bool
	cmd := &cobra.Command{
		Use:   "build [APP_DIR]",
		Short: "Build a bootable image from a Node.js app directory",
		Long: `Build a bootable image from a Node.js app directory (default: the current one).

The output directory receives:
  vmlinuz              the Linux kernel
  initramfs.cpio       the root file system: init, node, its libraries, the app
                       (.cpio.zst or .cpio.gz with --compression zstd or gzip)
  manifest.json        every input with version and sha256, and the sizes

With --format disk, -o names one raw GPT disk image (default out/disk.img)
that boots through UEFI (systemd-boot) on PCs and VMs: an EFI system partition,
two read-only squashfs root slots (A and B), and a data partition that the
node formats on first boot and mounts at /data. Its manifest is written beside
it (app.img → app.manifest.json). Write it to a USB stick or disk with
'nodeboot write'.

--format qcow2, vmdk, vhd or gce converts that disk image for a VM host or
cloud (default -o out/disk.qcow2, .vmdk, .vhd, .tar.gz): qcow2 for libvirt
and Proxmox, a streamOptimized vmdk for VMware and AWS, a fixed vhd whose
size is a whole number of MiB for Azure, and disk.raw in a gzipped tar for
GCE (--size a whole number of GiB). qcow2, vmdk and vhd need qemu-img
(Debian: qemu-utils). The README shows each cloud's import command.

The same inputs always give byte-identical output (vmdk and vhd aside:
qemu-img stamps their headers with a random id and the time).`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := "."
			if len(args) == 1 {
				dir = args[0]
			}
			if explain {
				return explainApps(stdout, dir, bf.config)
			}
			if out == "" {
				out = build.DefaultOutput(bf.format)
				if bf.target == build.TargetPi && !cmd.Flags().Changed("format") {
					out = build.DefaultOutput(build.FormatDisk)
				}
			}
			o, err := bf.options(dir, out, stderr)
			if err != nil {
				return err
			}
			res, err := build.Build(cmd.Context(), o)
			if err != nil {
				return err
			}
			built := res.InitrdPath
			if res.DiskPath != "" {
				built = res.DiskPath
			}
			_, err = io.WriteString(stdout, "built "+built+"\n")
			return err
		},
	}
	bf.register(cmd.Flags())
	cmd.Flags().BoolVar(&explain, "explain", false, "print what each app may do on the node (user, paths, namespaces, syscalls, limits) and build nothing")
	cmd.Flags().StringVarP(&out, "output", "o", "", "output directory (initramfs; default out), or image file (disk; default out/disk.img)")
	return cmd
}
