package cli

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/nodeboot/nodeboot/internal/flash"
)

func newWrite(stdout, stderr io.Writer) *cobra.Command {
	var yes, forceFile bool
	cmd := &cobra.Command{
		Use:   "write IMAGE DEVICE",
		Short: "Write a disk image to a USB stick, SD card or disk",
		Long: `Write a disk image (.img) to the whole disk DEVICE, e.g. /dev/sdb, then read
it back and compare it with the image.

Before writing, nodeboot shows the device's model and size and asks (--yes
skips the question). It refuses a device that is mounted (or any of its
partitions), used as swap or by LVM/RAID/device-mapper, the disk of the
running system, a partition, a device smaller than the image, and anything
that is not a block device (--force-file allows a regular file).

Ctrl-C stops the write; what was written is flushed, and the device then
holds an incomplete image.`,
		Example: `  lsblk                                   # find the stick: the disk that appears when you plug it in
  sudo nodeboot write out/disk.img /dev/sdb`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			finished := make(chan struct{})
			defer close(finished)
			go func() {
				select {
				case <-ctx.Done(): // the first Ctrl-C stops cleanly; a second one kills
					stop()
					fmt.Fprintln(stderr, "\nstopping (Ctrl-C again quits at once, without flushing)")
				case <-finished:
				}
			}()

			opts := flash.Options{ForceFile: forceFile, Progress: progressTo(stderr), Log: stderr}
			if !yes {
				opts.Confirm = func(t *flash.Target) error { return confirm(ctx, cmd.InOrStdin(), stderr, t) }
			}
			if err := flash.Write(ctx, args[0], args[1], opts); err != nil {
				return err
			}
			if fi, err := os.Stat(args[1]); err == nil && fi.Mode().IsRegular() {
				_, err := fmt.Fprintf(stdout, "%s now holds the image\n", args[1])
				return err
			}
			_, err := fmt.Fprintf(stdout, bootHelp, args[1])
			return err
		},
	}
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "write without asking for confirmation")
	cmd.Flags().BoolVar(&forceFile, "force-file", false, "allow DEVICE to be a regular file (created if missing, written in place), e.g. to prepare images")
	return cmd
}

// confirm asks on stderr and reads the answer from in, which must be a
// terminal when it is a file.
func confirm(ctx context.Context, in io.Reader, stderr io.Writer, t *flash.Target) error {
	if f, ok := in.(*os.File); ok && !flash.IsTerminal(f) {
		return fmt.Errorf("not writing %s (%s): stdin is not a terminal, so nodeboot cannot ask before overwriting it: pass --yes to write without asking", t.Path, t.Describe())
	}
	fmt.Fprintf(stderr, "write %s (%s) to %s (%s)? all data on it will be lost [y/N] ", t.Image, flash.Size(t.ImageSize), t.Path, t.Describe())
	answer := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(in).ReadString('\n')
		answer <- line
	}()
	select {
	case <-ctx.Done():
		return fmt.Errorf("%w: nothing was written to %s", flash.ErrInterrupted, t.Path)
	case a := <-answer:
		switch strings.ToLower(strings.TrimSpace(a)) {
		case "y", "yes":
			return nil
		}
		return fmt.Errorf("not confirmed: nothing was written to %s", t.Path)
	}
}

const bootHelp = `%s now holds the image, written and verified. To boot a PC from it:
  1. Plug it in, switch the PC on and at once press its boot menu key:
     F12 (Dell, Lenovo, Acer, Gigabyte), F11 (MSI, ASRock), F8 or Esc (ASUS),
     F9 (HP), Esc or F10 on others; on an Intel Mac hold Option (Alt).
  2. Pick the entry for the stick marked "UEFI".
The image boots via UEFI; legacy BIOS is not supported: where the firmware
offers "Legacy", "CSM" or "BIOS" boot, use the UEFI entry, or enable UEFI
boot in the firmware setup.
Secure Boot must be off (firmware setup, usually under Security or Boot)
unless you have signed the image's kernel with a key you enrolled in the
firmware: it is not signed by a key PCs trust out of the box.
`
