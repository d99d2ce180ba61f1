package cli

import (
	"bytes"
	"context"
	"encoding/json"
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
follow until Ctrl-C. With --json, each line is one JSON object:
{"app":"hello","line":"listening on 8080"}.`,
		Example: `  nodeboot logs local
  nodeboot logs pi api -f -n 20`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runLogs(cmd.Context(), args, nf, lf, stdout, stderr)
		},
	}
	nf.register(cmd.Flags(), false)
	cmd.Flags().BoolVar(&nf.json, "json", false, `print one JSON object per line: {"app":APP,"line":TEXT}`)
	cmd.Flags().BoolVarP(&lf.follow, "follow", "f", false, "keep printing new lines until Ctrl-C")
	cmd.Flags().IntVarP(&lf.lines, "lines", "n", 100, "how many of the last lines to print first")
	cmd.AddCommand(newLogsLogin(stdout)...)
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
	out := stdout
	var jl *jsonLines
	if nf.json {
		jl = &jsonLines{w: stdout, app: app}
		out = jl
	}
	err = t.c.Logs(ctx, app, lf.lines, lf.follow, out)
	if jl != nil {
		if ferr := jl.flush(); err == nil {
			err = ferr
		}
	}
	if err != nil {
		return t.appError(ctx, app, err)
	}
	return nil
}

// jsonLines turns the node's log text into one JSON object per line, for
// programs that read `logs --json`: a line's text may hold anything.
type jsonLines struct {
	w       io.Writer
	app     string
	partial []byte
}

type logLine struct {
	App  string `json:"app"`
	Line string `json:"line"`
}

func (j *jsonLines) Write(p []byte) (int, error) {
	j.partial = append(j.partial, p...)
	for {
		i := bytes.IndexByte(j.partial, '\n')
		if i < 0 {
			return len(p), nil
		}
		if err := j.emit(string(j.partial[:i])); err != nil {
			return 0, err
		}
		j.partial = j.partial[i+1:]
	}
}

func (j *jsonLines) emit(line string) error {
	b, err := json.Marshal(logLine{App: j.app, Line: line})
	if err != nil {
		return err
	}
	_, err = j.w.Write(append(b, '\n'))
	return err
}

// flush writes a last line that had no newline (a cut connection).
func (j *jsonLines) flush() error {
	if len(j.partial) == 0 {
		return nil
	}
	line := string(j.partial)
	j.partial = nil
	return j.emit(line)
}
