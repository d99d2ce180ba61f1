package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/nodeboot/nodeboot/internal/contract"
	"github.com/nodeboot/nodeboot/internal/logship"
)

// newLogsLogin is `logs login` and `logs logout`: a node's client
// certificate for its remote log endpoint (mutual TLS), given to each
// running node rather than built into the image (docs/logs.md).
func newLogsLogin(stdout io.Writer) []*cobra.Command {
	var nf nodeFlags
	var certFile, keyFile string
	login := &cobra.Command{
		Use:   "login NODE --cert FILE --key FILE",
		Short: "Give a node the client certificate its remote log endpoint requires",
		Long: `Sends NODE the client certificate (PEM, optionally followed by its
intermediates) and private key (PEM) it presents to the endpoint of
nodeboot.json's "logs.remote" when that endpoint requires one (mutual TLS).
They are checked here and on the node (PEM, the key the certificate's own,
not expired, usable for client authentication), kept on its /data readable
only by PID 1, used from the next connection on (at once), and survive
reboots and OS updates. They are never in the image: give each node a
certificate of its own, so one can be revoked alone.`,
		Example: `  nodeboot logs login kiosk-3 --cert kiosk-3.pem --key kiosk-3.key`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runLogsLogin(cmd.Context(), args[0], nf, certFile, keyFile, stdout)
		},
	}
	login.Flags().StringVar(&certFile, "cert", "", "PEM file of the node's client certificate")
	login.Flags().StringVar(&keyFile, "key", "", "PEM file of its private key")
	nf.register(login.Flags(), true)
	var lnf nodeFlags
	logout := &cobra.Command{
		Use:   "logout NODE",
		Short: "Remove the node's client certificate for its remote log endpoint",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runLogsLogout(cmd.Context(), args[0], lnf, stdout)
		},
	}
	lnf.register(logout.Flags(), true)
	return []*cobra.Command{login, logout}
}

func runLogsLogin(ctx context.Context, node string, nf nodeFlags, certFile, keyFile string, stdout io.Writer) error {
	if certFile == "" || keyFile == "" {
		return usageError{errors.New("--cert and --key are both needed: the client certificate and its private key, PEM files")}
	}
	certPEM, err := readLimited(certFile, "--cert")
	if err != nil {
		return err
	}
	keyPEM, err := readLimited(keyFile, "--key")
	if err != nil {
		return err
	}
	// Checked here first, so a wrong file is named before any network.
	if _, err := logship.ParseClientCert(certPEM, keyPEM, time.Now()); err != nil {
		return fmt.Errorf("--cert %s --key %s: %w", certFile, keyFile, err)
	}
	t, err := connect(nf.project, ".", node)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, quickTimeout)
	defer cancel()
	r, err := t.c.SetLogsClientCert(ctx, contract.LogsClientCredentials{Cert: string(certPEM), Key: string(keyPEM)})
	if err != nil {
		return t.explain(err)
	}
	if nf.json {
		return printJSON(stdout, r)
	}
	_, err = fmt.Fprintf(stdout, "client certificate %s (valid until %s) set on %s for its logs to %s\n",
		r.Subject, r.NotAfter.UTC().Format(time.RFC3339), t.label(), r.Endpoint)
	return err
}

func readLimited(path, flag string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	if fi.Size() > contract.MaxLogsCredentialsBytes/2 {
		return nil, fmt.Errorf("%s %s: %d bytes is not a PEM certificate or key (at most %d)", flag, path, fi.Size(), contract.MaxLogsCredentialsBytes/2)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	return b, nil
}

func runLogsLogout(ctx context.Context, node string, nf nodeFlags, stdout io.Writer) error {
	t, err := connect(nf.project, ".", node)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, quickTimeout)
	defer cancel()
	r, err := t.c.RemoveLogsClientCert(ctx)
	if err != nil {
		return t.explain(err)
	}
	if nf.json {
		return printJSON(stdout, r)
	}
	_, err = fmt.Fprintf(stdout, "client certificate for the logs to %s removed from %s\n", r.Endpoint, t.label())
	return err
}
