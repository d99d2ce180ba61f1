package cli

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/nodeboot/nodeboot/internal/contract"
)

func newSecret(stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "secret",
		Short: "Set, list or remove an app's secrets on a running node",
		Long: `An app's secrets are kept on the node's /data, readable only by PID 1, and
given to the app alone through require('nodeboot').secret(name) (docs/js.md):
never in the image, its environment, the logs or status.`,
	}
	var nf nodeFlags
	var file string
	set := &cobra.Command{
		Use:   "set NODE APP NAME",
		Short: "Set a secret from stdin or --file (at most 64 KiB of UTF-8 text)",
		Example: `  printf %s "$DB_PASSWORD" | nodeboot secret set local api db-password
  nodeboot secret set local api tls-key --file key.pem`,
		Args: cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSecretSet(cmd.Context(), args, file, nf, cmd.InOrStdin(), stdout)
		},
	}
	set.Flags().StringVar(&file, "file", "", "read the value from this file instead of stdin")
	nf.register(set.Flags(), true)
	var lnf nodeFlags
	ls := &cobra.Command{
		Use:   "ls NODE APP",
		Short: "List the names of an app's secrets",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSecretLs(cmd.Context(), args, lnf, stdout)
		},
	}
	lnf.register(ls.Flags(), true)
	var rnf nodeFlags
	rm := &cobra.Command{
		Use:   "rm NODE APP NAME",
		Short: "Remove a secret",
		Args:  cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSecretRm(cmd.Context(), args, rnf, stdout)
		},
	}
	rnf.register(rm.Flags(), true)
	cmd.AddCommand(set, ls, rm)
	return cmd
}

func runSecretSet(ctx context.Context, args []string, file string, nf nodeFlags, stdin io.Reader, stdout io.Writer) error {
	var value []byte
	var err error
	src := "stdin"
	if file != "" {
		src = file
		value, err = readBounded(file, nil)
	} else {
		value, err = readBounded("", stdin)
	}
	if err != nil {
		return err
	}
	if len(value) == 0 {
		return fmt.Errorf("the secret from %s is empty: pipe the value in (printf %%s \"$VALUE\" | nodeboot secret set ...) or pass --file", src)
	}
	t, err := connect(nf.project, ".", args[0])
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, quickTimeout)
	defer cancel()
	r, err := t.c.SetSecret(ctx, args[1], args[2], value)
	if err != nil {
		return t.appError(ctx, args[1], err)
	}
	if nf.json {
		return printJSON(stdout, r)
	}
	_, err = fmt.Fprintf(stdout, "secret %s of %s set on %s (%d bytes)\n", r.Name, r.App, t.label(), len(value))
	return err
}

// readBounded reads a secret's value from file (or r), refusing more than
// the node keeps before sending anything.
func readBounded(file string, r io.Reader) ([]byte, error) {
	name := "stdin"
	if file != "" {
		f, err := os.Open(file)
		if err != nil {
			return nil, fmt.Errorf("reading the secret: %w", err)
		}
		defer f.Close()
		r, name = f, file
	}
	b, err := io.ReadAll(io.LimitReader(r, contract.MaxSecretBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading the secret from %s: %w", name, err)
	}
	if len(b) > contract.MaxSecretBytes {
		return nil, fmt.Errorf("the secret from %s is over %d bytes: a node keeps secrets of at most 64 KiB; keep larger data in the app's state dir", name, contract.MaxSecretBytes)
	}
	return b, nil
}

func runSecretLs(ctx context.Context, args []string, nf nodeFlags, stdout io.Writer) error {
	t, err := connect(nf.project, ".", args[0])
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, quickTimeout)
	defer cancel()
	r, err := t.c.Secrets(ctx, args[1])
	if err != nil {
		return t.appError(ctx, args[1], err)
	}
	if nf.json {
		return printJSON(stdout, r)
	}
	for _, n := range r.Names {
		if _, err := fmt.Fprintln(stdout, n); err != nil {
			return err
		}
	}
	return nil
}

func runSecretRm(ctx context.Context, args []string, nf nodeFlags, stdout io.Writer) error {
	t, err := connect(nf.project, ".", args[0])
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, quickTimeout)
	defer cancel()
	r, err := t.c.RemoveSecret(ctx, args[1], args[2])
	if err != nil {
		return t.appError(ctx, args[1], err)
	}
	if nf.json {
		return printJSON(stdout, r)
	}
	_, err = fmt.Fprintf(stdout, "secret %s of %s removed on %s\n", r.Name, r.App, t.label())
	return err
}
