package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

type logsFlags struct {
	follow bool
	lines  int
}

func newLogs(stdout, stderr io.Writer) *cobra.Command {
	var nf nodeFlags
	var lf logsFlags
	cmd := &cobra.Command{
		Use:   "logs NODE [APP]",
		Short: "Print an app's log lines from a running node",
		Long: `Print the last lines an app wrote (stdout and stderr, earlier boots included).
APP may be left out when the node runs only one app. With -f, new lines
follow until Ctrl-C.`,
		Example: `  nodeboot logs local
  nodeboot logs pi api -f -n 20`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runLogs(cmd.Context(), args, nf, lf, stdout, stderr)
		},
	}
	nf.register(cmd.Flags(), false)
	cmd.Flags().BoolVarP(&lf.follow, "follow", "f", false, "keep printing new lines until Ctrl-C")
	cmd.Flags().IntVarP(&lf.lines, "lines", "n", 100, "how many of the last lines to print first")
	return cmd
}

func runLogs(ctx context.Context, args []string, nf nodeFlags, lf logsFlags, stdout, stderr io.Writer) error {
	if lf.lines < 1 {
		return fmt.Errorf("-n %d: give a number of lines, 1 or more", lf.lines)
	}
	t, err := connect(nf.project, ".", args[0])
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	app := ""
	if len(args) == 2 {
		app = args[1]
	} else {
		s, err := t.status(ctx)
		if err != nil {
			return err
		}
		switch len(s.Apps) {
		case 0:
			return fmt.Errorf("node %s runs no apps", t.label())
		case 1:
			app = s.Apps[0].Name
		default:
			return fmt.Errorf("node %s runs several apps (%s): name one, e.g. nodeboot logs %s %s", t.label(), appList(s), t.name, s.Apps[0].Name)
		}
	}
	if err := t.c.Logs(ctx, app, lf.lines, lf.follow, stdout); err != nil {
		return t.appError(ctx, app, err)
	}
	return nil
}
