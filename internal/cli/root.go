// Package cli holds nodeboot's commands, one file per verb, each callable
// in-process with its own arguments and output streams (tests use that).
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/spf13/cobra"
)

// Exit statuses, as shells and scripts expect them.
const (
	ExitOK          = 0
	ExitFailure     = 1
	ExitUsage       = 2   // a bad command line: wrong flags or arguments
	ExitInterrupted = 130 // 128 + SIGINT: stopped by Ctrl-C (or SIGTERM)
)

// usageError marks a bad command line, told apart from a failure by its
// exit status.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// IsUsage reports whether err is a bad command line.
func IsUsage(err error) bool {
	var u usageError
	// cobra reports an unknown verb from its own argument check, which
	// cannot be wrapped.
	return errors.As(err, &u) || (err != nil && strings.HasPrefix(err.Error(), "unknown command "))
}

// Main runs nodeboot with args (without the program name) and returns its
// exit status. The first Ctrl-C (or SIGTERM) cancels the command's
// context, so it stops cleanly and removes what it was writing (run powers
// the guest off, logs -f stops following); a second one quits at once, or,
// in verbs that also listen themselves (run kills QEMU, write stops without
// flushing), does what they say.
func Main(args []string, stdout, stderr io.Writer) int {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	var interrupted atomic.Bool
	go func() {
		select {
		case <-sigs:
		case <-ctx.Done():
			return
		}
		interrupted.Store(true)
		signal.Stop(sigs) // back to the default action: the next Ctrl-C kills
		cancel()
	}()
	return execute(ctx, args, stdout, stderr, interrupted.Load)
}

// Execute runs args in-process and maps the outcome to an exit status,
// printing the error; ctx done means the user interrupted.
func Execute(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return execute(ctx, args, stdout, stderr, func() bool { return false })
}

// execute: a command that returns nil succeeded, even after a Ctrl-C that
// is its documented end (run's power-off, logs -f); one that fails after
// a Ctrl-C was interrupted.
func execute(ctx context.Context, args []string, stdout, stderr io.Writer, interrupted func() bool) int {
	err := Run(ctx, args, stdout, stderr)
	switch {
	case err == nil:
		return ExitOK
	case ctx.Err() != nil || interrupted():
		if !errors.Is(err, context.Canceled) {
			fmt.Fprintln(stderr, "nodeboot:", err)
		}
		fmt.Fprintln(stderr, "nodeboot: interrupted")
		return ExitInterrupted
	case IsUsage(err):
		fmt.Fprintf(stderr, "nodeboot: %v\nsee 'nodeboot %s--help'\n", err, helpPath(args))
		return ExitUsage
	}
	fmt.Fprintln(stderr, "nodeboot:", err)
	return ExitFailure
}

// verb is the command args run, with its parents ("kernel build"; "" for
// the root).
func verb(args []string) string {
	root := newRoot(io.Discard, io.Discard)
	if c, _, err := root.Find(args); err == nil && c != root {
		return strings.TrimPrefix(c.CommandPath(), root.Name()+" ")
	}
	return ""
}

// helpPath is the verb of args followed by a space, for the usage hint.
func helpPath(args []string) string {
	if v := verb(args); v != "" {
		return v + " "
	}
	return ""
}

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
	root.Version = version()
	root.SetVersionTemplate(versionLine() + "\n")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newBuild(stdout, stderr), newRun(stdout, stderr), newVersion(stdout), newWrite(stdout, stderr))
	root.AddCommand(newStatus(stdout, stderr), newLogs(stdout, stderr), newDeploy(stdout, stderr), newRollback(stdout, stderr),
		newRestart(stdout, stderr), newReboot(stdout, stderr), newPoweroff(stdout, stderr), newUpdate(stdout, stderr),
		newKernel(stdout, stderr), newFleet(stdout, stderr), newPush(stdout, stderr), newPromote(stdout, stderr))
	root.AddCommand(newSecret(stdout, stderr), newRegistry(stdout, stderr))
	root.AddCommand(newInit(stdout, stderr), newDoctor(stdout, stderr), newCache(stdout, stderr))
	for _, c := range root.Commands() {
		if c.Args != nil {
			check := c.Args
			c.Args = func(cmd *cobra.Command, args []string) error {
				if err := check(cmd, args); err != nil {
					return usageError{err}
				}
				return nil
			}
		}
	}
	return root
}
