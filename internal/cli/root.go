// Package cli holds nodeboot's commands, one file per verb, each callable
// in-process with its own arguments and output streams (tests use that).
package cli

import (
	"context"
	"io"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// Version is stamped by the Makefile (-X); otherwise build info says.
var Version = ""

// version returns nodeboot's version.
func version() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// Run executes nodeboot with args (without the program name).
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	return root.ExecuteContext(ctx)
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "nodeboot",
		Short: "Turn a Node.js app into its own operating system",
		Long: `nodeboot turns a Node.js app directory into a bootable image: a Linux kernel,
a small Go init as PID 1, node with exactly the libraries it needs, and the app.
No shell, no package manager, no SSH.

  nodeboot build ./myapp -o out/   kernel + initramfs + manifest.json
  nodeboot run ./myapp             build if needed and boot it under QEMU`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(newBuild(stdout, stderr), newRun(stdout, stderr), newVersion(stdout), newWrite(stdout, stderr))
	root.AddCommand(newStatus(stdout, stderr), newLogs(stdout, stderr), newDeploy(stdout, stderr), newRollback(stdout, stderr),
		newRestart(stdout, stderr), newReboot(stdout, stderr), newPoweroff(stdout, stderr))
	return root
}
