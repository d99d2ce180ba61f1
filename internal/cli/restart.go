package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

func newRestart(stdout, stderr io.Writer) *cobra.Command {
	var nf nodeFlags
	cmd := &cobra.Command{
		Use:   "restart NODE APP",
		Short: "Restart an app on a running node",
		Long: `Restart an app on a running node: SIGTERM, then SIGKILL after 10 s if it has
not exited, then the same version starts again.`,
		Example: `  nodeboot restart local hello`,
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRestart(cmd.Context(), args, nf, stdout, stderr)
		},
	}
	nf.register(cmd.Flags(), true)
	return cmd
}

func runRestart(ctx context.Context, args []string, nf nodeFlags, stdout, stderr io.Writer) error {
	t, err := connect(nf.project, ".", args[0])
	if err != nil {
		return err
	}
	app := args[1]
	// Stopping an app may take its 10 s grace period; quickTimeout is far
	// above it.
	ctx, cancel := context.WithTimeout(ctx, quickTimeout)
	defer cancel()
	r, err := t.c.Restart(ctx, app)
	if err != nil {
		return t.appError(ctx, app, err)
	}
	if nf.json {
		return printJSON(stdout, r)
	}
	_, err = fmt.Fprintf(stdout, "restarted %s on %s (pid %d)\n", r.App, t.label(), r.PID)
	return err
}
