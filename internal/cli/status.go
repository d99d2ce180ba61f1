package cli

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/nodeboot/nodeboot/internal/client"
	"github.com/nodeboot/nodeboot/internal/contract"
)

func newStatus(stdout, stderr io.Writer) *cobra.Command {
	var nf nodeFlags
	cmd := &cobra.Command{
		Use:   "status NODE",
		Short: "Show a running node and its apps",
		Long: `Show a running node: host name, uptime, kernel, node version, image version,
memory and /data, then one row per app (state, pid, restarts, version, last exit).

NODE is a name from .nodeboot/nodes.json ('nodeboot run' records its VM as
"local") or host[:port] (port 9443 by default).`,
		Example: `  nodeboot status local
  nodeboot status 192.168.1.20 --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runStatus(cmd.Context(), args, nf, stdout, stderr)
		},
	}
	nf.register(cmd.Flags(), true)
	return cmd
}

func runStatus(ctx context.Context, args []string, nf nodeFlags, stdout, stderr io.Writer) error {
	t, err := connect(nf.project, ".", args[0])
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, quickTimeout)
	defer cancel()
	s, err := t.status(ctx)
	if err != nil {
		return err
	}
	if nf.json {
		return printJSON(stdout, s)
	}
	return printStatus(stdout, s)
}

// printStatus writes the node line and the apps table.
func printStatus(w io.Writer, s *client.Status) error {
	n := s.Node
	data := fmt.Sprintf("%s free of %s", bytesIEC(n.Data.FreeBytes), bytesIEC(n.Data.TotalBytes))
	if !n.Data.Persistent {
		data += " (RAM only: lost at reboot)"
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tUPTIME\tKERNEL\tNODE.JS\tIMAGE\tMEMORY\t/DATA")
	fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", orDash(n.Hostname), uptime(n.UptimeSeconds), orDash(n.Kernel), orDash(n.NodeVersion),
		shortVersion(n.ImageVersion), fmt.Sprintf("%s free of %s", bytesIEC(n.Memory.AvailableBytes), bytesIEC(n.Memory.TotalBytes)), data)
	if err := tw.Flush(); err != nil {
		return err
	}
	if n.Degraded != "" {
		fmt.Fprintf(w, "\ndegraded: %s\n", n.Degraded)
	}
	printOS(w, s.OS)         // update.go
	printFollow(w, s.Follow) // fleet.go
	printClock(w, s.Clock)
	printLogs(w, s.Logs)
	if len(s.Apps) == 0 {
		_, err := fmt.Fprintln(w, "\nno apps")
		return err
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "APP\tSTATE\tPID\tRESTARTS\tVERSION\tLAST EXIT")
	for _, a := range s.Apps {
		pid := "-"
		if a.PID > 0 {
			pid = strconv.Itoa(a.PID)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", a.Name, orDash(a.State), pid, a.Restarts, shortVersion(a.Version), orDash(a.LastExit))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return printAppAPI(w, s.Apps)
}

// printAppAPI says what the apps told the node through require('nodeboot'):
// readiness, watchdogs and the restarts they caused, held locks.
func printAppAPI(w io.Writer, apps []contract.AppStatus) error {
	for _, a := range apps {
		var parts []string
		switch {
		case a.Ready:
			parts = append(parts, "ready")
		case a.Health == "ready":
			parts = append(parts, "not ready (deploys wait for ready())")
		}
		if a.WatchdogMs > 0 {
			parts = append(parts, fmt.Sprintf("watchdog every %s", time.Duration(a.WatchdogMs)*time.Millisecond))
		}
		if a.WatchdogRestarts > 0 {
			parts = append(parts, fmt.Sprintf("%d watchdog restart(s)", a.WatchdogRestarts))
		}
		if len(parts) > 0 {
			if _, err := fmt.Fprintf(w, "%s: %s\n", a.Name, strings.Join(parts, ", ")); err != nil {
				return err
			}
		}
		for _, l := range a.Locks {
			state := "held"
			if l.Overridden {
				state = "OVERRIDDEN (held past maxLockSeconds)"
			}
			if _, err := fmt.Fprintf(w, "%s: lock %q %s since %s\n", a.Name, l.Reason, state, l.Since.UTC().Format(time.RFC3339)); err != nil {
				return err
			}
		}
		if a.LastLockOverride != "" {
			if _, err := fmt.Fprintf(w, "%s: last lock override: %s\n", a.Name, a.LastLockOverride); err != nil {
				return err
			}
		}
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// uptime is seconds as 42s, 5m3s, 3h2m or 4d3h: two units are enough to
// tell a fresh boot from an old one.
func uptime(sec float64) string {
	d := time.Duration(sec * float64(time.Second))
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm%ds", int(d/time.Minute), int(d%time.Minute/time.Second))
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
	}
	return fmt.Sprintf("%dd%dh", int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour))
}

// bytesIEC is n in B, KiB, MiB, GiB or TiB with one decimal.
func bytesIEC(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, i := float64(n), -1
	for v >= unit && i < 3 {
		v /= unit
		i++
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMGT"[i])
}

// printClock says whether the node's clock can be trusted (issue 16).
func printClock(w io.Writer, c *contract.ClockStatus) {
	if c == nil {
		return
	}
	state := "not synced"
	switch {
	case c.Synced:
		state = fmt.Sprintf("synced with %s (last %s, offset %s)", c.Source, c.LastSync.UTC().Format(time.RFC3339),
			(time.Duration(c.OffsetSeconds * float64(time.Second))).Round(time.Millisecond))
	case c.NTPOff:
		state = "NTP off"
	}
	if !c.Synced && c.Source != "" {
		state += ", set from the " + c.Source
	}
	fmt.Fprintf(w, "\nclock %s: %s\n", c.Now.UTC().Format(time.RFC3339), state)
	if !c.Saved.IsZero() {
		fmt.Fprintf(w, "  saved to /data at %s\n", c.Saved.UTC().Format(time.RFC3339))
	}
	if !c.Synced && !c.NTPOff && len(c.NTP) > 0 {
		fmt.Fprintf(w, "  asking %s\n", strings.Join(c.NTP, ", "))
	}
}

// printLogs writes the remote log shipper's state (nodeboot.json
// "logs.remote").
func printLogs(w io.Writer, l *contract.LogsStatus) {
	if l == nil {
		return
	}
	state := "not connected"
	if l.Connected {
		state = "connected"
	}
	fmt.Fprintf(w, "\nremote logs to %s: %s\n", l.Endpoint, state)
	fmt.Fprintf(w, "  %d lines (%s of %s) waiting, %d delivered, %d dropped\n",
		l.BufferedLines, bytesIEC(uint64(max(l.BufferedBytes, 0))), bytesIEC(uint64(max(l.CapBytes, 0))), l.Delivered, l.Dropped)
	if l.ClientCert != "" {
		fmt.Fprintf(w, "  client certificate: %s\n", l.ClientCert)
	}
	if l.LastError != "" {
		at := ""
		if !l.LastErrorAt.IsZero() {
			at = " (" + l.LastErrorAt.UTC().Format(time.RFC3339) + ")"
		}
		fmt.Fprintf(w, "  last error%s: %s\n", at, l.LastError)
	}
}
