package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/nodeboot/nodeboot/internal/api"
	"github.com/nodeboot/nodeboot/internal/contract"
	"github.com/nodeboot/nodeboot/internal/creds"
)

// node is the smallest api.Node: enough to see that the client and the
// real server agree on every path, header and body of internal/contract.
type node struct{ deployed []byte }

var started = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

func (n *node) Status(context.Context) (api.Status, error) {
	return api.Status{Node: api.NodeStatus{Hostname: "hello"}, Apps: []api.AppStatus{
		{Name: "hello", State: "running", PID: 7, StartedAt: started, Version: "image"},
		{Name: "idle", State: "stopped"},
	}}, nil
}

func (n *node) Logs(ctx context.Context, app string, lines int, follow bool, emit func(string) error) error {
	return emit(fmt.Sprintf("%s %d %t", app, lines, follow))
}

func (n *node) Restart(ctx context.Context, app string) (int, error) { return 8, nil }
func (n *node) Power(string) error                                   { return nil }

func (n *node) Deploy(ctx context.Context, app, digest string, size int64, body io.Reader) (api.DeployResult, error) {
	b, err := io.ReadAll(body)
	if err != nil {
		return api.DeployResult{}, err
	}
	n.deployed = b
	return api.DeployResult{App: app, Version: digest, PreviousVersion: "image", State: "running"}, nil
}

func (n *node) Rollback(ctx context.Context, app string) (api.DeployResult, error) {
	return api.DeployResult{}, fmt.Errorf("%w: nothing deployed", api.ErrNoPrevious)
}

func TestAgainstTheRealServer(t *testing.T) {
	cr, _, err := creds.Ensure(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	n := &node{}
	srv := api.New(n, cr.OwnerHash, api.Options{})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l, cr.NodeCertPEM, cr.NodeKeyPEM)
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	c := New(l.Addr().String(), cr.ClientTLS(), cr.Token)
	ctx := context.Background()

	s, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if a := s.App("hello"); a == nil || !a.StartedAt.Equal(started) || a.PID != 7 {
		t.Errorf("hello: %+v", a)
	}
	if a := s.App("idle"); a == nil || !a.StartedAt.IsZero() {
		t.Errorf("idle: %+v", a)
	}
	var logs bytes.Buffer
	if err := c.Logs(ctx, "hello", 5, false, &logs); err != nil || logs.String() != "hello 5 false\n" {
		t.Errorf("logs: %q, %v", logs.String(), err)
	}
	if r, err := c.Restart(ctx, "hello"); err != nil || *r != (RestartResult{App: "hello", PID: 8}) {
		t.Errorf("restart: %+v, %v", r, err)
	}
	bundle := []byte("bundle")
	digest := fmt.Sprintf("sha256:%x", sha256.Sum256(bundle))
	if r, err := c.Deploy(ctx, "hello", bytes.NewReader(bundle), int64(len(bundle)), digest, nil); err != nil || r.Version != digest || !bytes.Equal(n.deployed, bundle) {
		t.Errorf("deploy: %+v, %v", r, err)
	}
	if _, err := c.Rollback(ctx, "hello"); StatusOf(err) != 404 {
		t.Errorf("rollback: %v, want a 404", err)
	}
	if r, err := c.Reboot(ctx); err != nil || r.Action != "reboot" {
		t.Errorf("reboot: %+v, %v", r, err)
	}
	if r, err := c.RevokeSessions(ctx); err != nil || r.Revoked != 0 {
		t.Errorf("revoke: %+v, %v", r, err)
	}
	if contract.APIPort != creds.DefaultPort {
		t.Errorf("creds.DefaultPort %d is not contract.APIPort %d", creds.DefaultPort, contract.APIPort)
	}
}
