package cli

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/nodeboot/nodeboot/internal/kernelbuild"
)

func newKernel(stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "kernel",
		Short: "Build nodeboot's own Linux kernel",
		Args:  cobra.NoArgs,
	}
	var profile string
	var jobs int
	b := &cobra.Command{
		Use:   "build",
		Short: "Build nodeboot's kernel from Debian's linux-source (cached)",
		Long: `Build nodeboot's own kernel from Debian's linux-source package: allnoconfig
plus one fragment per need (the system calls node uses, the app sandbox, the file
systems, the devices of the profile), everything built in, no modules.

  --profile vm   QEMU/KVM guests: virtio, PVH, EFI stub, serial, i6300esb watchdog
  --profile pc   vm plus NVMe, AHCI, USB storage and keyboards, common wired NICs,
                 the EFI framebuffer, hardware RNGs and chipset watchdogs

It needs the linux-source package (apt-get install linux-source) and the kernel's
build tools. The kernel is cached in the user cache dir by source version and
configuration: the first build takes tens of minutes, later ones none, and an
upgraded linux-source builds anew. Boot it with --kernel nodeboot-vm (or
nodeboot-pc) on build and run; the manifest records its source version and
config hash. Prints the bzImage's path.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if err := cobra.NoArgs(cmd, args); err != nil {
				return usageError{err}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := kernelbuild.ProfileConfig(profile); err != nil {
				if errors.Is(err, kernelbuild.ErrUnknownProfile) {
					return usageError{err}
				}
				return err
			}
			r, err := kernelbuild.Build(cmd.Context(), kernelbuild.Options{Profile: profile, Jobs: jobs, Log: stderr, Progress: stderr})
			if err != nil {
				return err
			}
			if r.Cached {
				fmt.Fprintf(stderr, "kernel %s: cached (%s %s, config %s)\n", profile, r.SourcePackage, r.SourceVersion, r.ConfigSHA256[:16])
			}
			_, err = fmt.Fprintln(stdout, r.Path)
			return err
		},
	}
	b.Flags().StringVar(&profile, "profile", "vm", "vm (QEMU/KVM guests) or pc (real machines)")
	b.Flags().IntVarP(&jobs, "jobs", "j", 0, "compile jobs at once (default: one per CPU)")
	cmd.AddCommand(b)
	return cmd
}
