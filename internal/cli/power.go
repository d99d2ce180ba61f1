package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/nodeboot/nodeboot/internal/client"
)

// The two power verbs differ only in the route and the words.
func newReboot(stdout, stderr io.Writer) *cobra.Command {
	return newPower(stdout, "reboot", "Reboot a running node", "rebooting", (*client.Client).Reboot)
}

func newPoweroff(stdout, stderr io.Writer) *cobra.Command {
	return newPower(stdout, "poweroff", "Power a running node off", "powering off", (*client.Client).Poweroff)
}

func newPower(stdout io.Writer, verb, short, doing string, call func(*client.Client, context.Context) (*client.ActionResult, error)) *cobra.Command {
	var nf nodeFlags
	cmd := &cobra.Command{
		Use:   verb + " NODE",
		Short: short,
		Long: short + `: its apps get SIGTERM (SIGKILL after 10 s), file systems are
synced and unmounted. The node answers at once and then goes down.`,
		Example: "  nodeboot " + verb + " local",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPower(cmd.Context(), args, nf, call, doing, stdout)
		},
	}
	nf.register(cmd.Flags(), false)
	return cmd
}

func runPower(ctx context.Context, args []string, nf nodeFlags, call func(*client.Client, context.Context) (*client.ActionResult, error), doing string, stdout io.Writer) error {
	t, err := connect(nf.project, ".", args[0])
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, quickTimeout)
	defer cancel()
	if _, err := call(t.c, ctx); err != nil {
		return t.explain(err)
	}
	msg := fmt.Sprintf("node %s is %s\n", t.label(), doing)
	if doing == "rebooting" {
		msg = fmt.Sprintf("node %s is rebooting; 'nodeboot status %s' answers again once it is up\n", t.label(), t.name)
	}
	_, err = io.WriteString(stdout, msg)
	return err
}
