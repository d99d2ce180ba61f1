package cli

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/cobra"

	"github.com/nodeboot/nodeboot/internal/contract"
	"github.com/nodeboot/nodeboot/internal/spec"
)

func newRegistry(stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "registry",
		Short: "Give a node that follows a tag the pull credentials of its registry",
		Long: `A node that follows a tag of a private registry (nodeboot.json "follow") needs
pull credentials. They are never in the image: give them to each running
node with "registry login", which sends them over the management API; the
node tries them against its registry, keeps them on /data readable only by
PID 1 if the registry accepts them, and uses them from its next check on.
They are never shown in its status or logs (docs/follow.md).`,
	}
	var nf nodeFlags
	var user string
	var passStdin bool
	var dockerName string
	login := &cobra.Command{
		Use:   "login NODE",
		Short: "Send the followed registry's pull credentials to a node",
		Long: `Sends the pull credentials of the registry NODE follows. By default they are
the Docker config's for that registry ($DOCKER_CONFIG or ~/.docker/config.json,
credential helpers included), as "docker pull" would use them: keep a
pull-only token in a config of its own and point DOCKER_CONFIG at it.
--username with --password-stdin gives them directly.`,
		Example: `  DOCKER_CONFIG=~/.nodeboot-pull docker login registry.example.com   # a pull-only token
  DOCKER_CONFIG=~/.nodeboot-pull nodeboot registry login kiosk-3
  printf %s "$TOKEN" | nodeboot registry login kiosk-3 --username puller --password-stdin`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRegistryLogin(cmd.Context(), args[0], nf, user, passStdin, dockerName, cmd.InOrStdin(), stdout)
		},
	}
	login.Flags().StringVar(&user, "username", "", "the registry user (with --password-stdin) instead of the Docker config's")
	login.Flags().BoolVar(&passStdin, "password-stdin", false, "read the password or token from stdin")
	login.Flags().StringVar(&dockerName, "docker-config-name", "", "look the credentials up in the Docker config under this registry name instead of the one the node follows (when this host reaches the registry by another name)")
	nf.register(login.Flags(), true)
	var lnf nodeFlags
	logout := &cobra.Command{
		Use:   "logout NODE",
		Short: "Remove the node's pull credentials",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRegistryLogout(cmd.Context(), args[0], lnf, stdout)
		},
	}
	lnf.register(logout.Flags(), true)
	cmd.AddCommand(login, logout)
	return cmd
}

func runRegistryLogin(ctx context.Context, node string, nf nodeFlags, user string, passStdin bool, dockerName string, stdin io.Reader, stdout io.Writer) error {
	if (user == "") != !passStdin {
		return usageError{errors.New("--username and --password-stdin go together")}
	}
	t, err := connect(nf.project, ".", node)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, quickTimeout)
	defer cancel()
	s, err := t.status(ctx)
	if err != nil {
		return err
	}
	if s.Follow == nil {
		return fmt.Errorf("node %s follows no tag: pull credentials are for the registry of nodeboot.json's \"follow\" (docs/follow.md)", t.label())
	}
	tag, err := spec.ParseFollowRef(s.Follow.Ref)
	if err != nil {
		return fmt.Errorf("node %s follows %q: %w", t.label(), s.Follow.Ref, err)
	}
	reg := tag.Context().RegistryStr()
	var rc contract.RegistryCredentials
	if user != "" {
		b, err := io.ReadAll(io.LimitReader(stdin, contract.MaxRegistryCredentialsBytes))
		if err != nil {
			return fmt.Errorf("reading the password from stdin: %w", err)
		}
		rc = contract.RegistryCredentials{Username: user, Password: strings.TrimRight(string(b), "\r\n")}
		if rc.Password == "" {
			return errors.New("the password from stdin is empty: pipe it in (printf %s \"$TOKEN\" | nodeboot registry login ...)")
		}
	} else {
		lookup := reg
		if dockerName != "" {
			lookup = dockerName
		}
		if rc, err = dockerCredentials(lookup); err != nil {
			return err
		}
	}
	r, err := t.c.SetPullCredentials(ctx, rc)
	if err != nil {
		return t.explain(err)
	}
	if nf.json {
		return printJSON(stdout, r)
	}
	how := "the registry accepted them"
	if !r.Checked {
		how = "not checked: " + r.Note
	}
	_, err = fmt.Fprintf(stdout, "pull credentials for %s set on %s (%s)\n", r.Registry, t.label(), how)
	return err
}

// dockerCredentials are the Docker config's credentials for registry reg,
// as `docker pull` would find them.
func dockerCredentials(reg string) (contract.RegistryCredentials, error) {
	var rc contract.RegistryCredentials
	r, err := name.NewRegistry(reg)
	if err != nil {
		return rc, fmt.Errorf("registry %q: %w", reg, err)
	}
	a, err := authn.DefaultKeychain.Resolve(r)
	if err != nil {
		return rc, fmt.Errorf("the credentials of %s from the Docker config: %w", reg, err)
	}
	cfg, err := a.Authorization()
	if err != nil {
		return rc, fmt.Errorf("the credentials of %s from the Docker config: %w", reg, err)
	}
	rc = contract.RegistryCredentials{Username: cfg.Username, Password: cfg.Password, IdentityToken: cfg.IdentityToken, RegistryToken: cfg.RegistryToken}
	if rc.Username == "" && cfg.Auth != "" {
		// "auth" is base64 of user:password, as docker login writes it.
		b, err := base64.StdEncoding.DecodeString(cfg.Auth)
		u, p, ok := strings.Cut(string(b), ":")
		if err != nil || !ok {
			return rc, fmt.Errorf("the Docker config's \"auth\" of %s is not base64 of user:password: run docker login %s again", reg, reg)
		}
		rc.Username, rc.Password = u, p
	}
	if rc.Empty() {
		return rc, fmt.Errorf("the Docker config (DOCKER_CONFIG or ~/.docker/config.json) has no credentials for %s: log in with a pull-only token first (DOCKER_CONFIG=~/.nodeboot-pull docker login %s, then run this with that DOCKER_CONFIG), or pass --username and --password-stdin", reg, reg)
	}
	return rc, nil
}

func runRegistryLogout(ctx context.Context, node string, nf nodeFlags, stdout io.Writer) error {
	t, err := connect(nf.project, ".", node)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, quickTimeout)
	defer cancel()
	r, err := t.c.RemovePullCredentials(ctx)
	if err != nil {
		return t.explain(err)
	}
	if nf.json {
		return printJSON(stdout, r)
	}
	_, err = fmt.Fprintf(stdout, "pull credentials for %s removed from %s\n", r.Registry, t.label())
	return err
}
