package cli

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func newRollback(stdout, stderr io.Writer) *cobra.Command {
	var nf nodeFlags
	cmd := &cobra.Command{
		Use:   "rollback NODE APP",
		Short: "Run an app's previous version again",
		Long: `Switch an app back to the version it ran before the last deploy (or to the
image's own version), with the same health check as a deploy. When the
previous version is unhealthy too, the current one serves again and its last
log lines are printed.`,
		Example: `  nodeboot rollback local hello`,
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRollback(cmd.Context(), args, nf, stdout, stderr)
		},
	}
	nf.register(cmd.Flags(), true)
	return cmd
}

func runRollback(ctx context.Context, args []string, nf nodeFlags, stdout, stderr io.Writer) error {
	t, err := connect(nf.project, ".", args[0])
	if err != nil {
		return err
	}
	app := args[1]
	// A rollback waits for the health check of the version it starts, as
	// a deploy does: Ctrl-C bounds it, not a timeout.
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	r, err := t.c.Rollback(ctx, app)
	if err != nil {
		printUnhealthy(stderr, err)
		return t.appError(ctx, app, err)
	}
	if nf.json {
		return printJSON(stdout, r)
	}
	return printResult(stdout, "rolled back", t, r)
}
