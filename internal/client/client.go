// Package client is a typed client of a node's management API
// (docs/api.md): HTTPS with a pinned certificate and the owner's bearer
// token. Its errors say whether the node could not be reached, was not the
// node the credentials are for, or answered with an error of its own.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nodeboot/nodeboot/internal/contract"
	"github.com/nodeboot/nodeboot/internal/creds"
)

// The limits of what is read from a node into memory. A node is trusted
// only as far as its certificate; a broken one must not exhaust the CLI.
const (
	maxJSON      = 16 << 20
	maxErrorBody = 1 << 20
)

// Dial and handshake bounds. There is no bound on a whole request: a
// deploy waits for the new version's health check (up to ~30 s on the
// node), and following logs never ends by itself; ctx bounds those.
const (
	dialTimeout      = 10 * time.Second
	handshakeTimeout = 10 * time.Second
)

// Client talks to one node.
type Client struct {
	address string // host:port
	base    string // https://host:port
	token   string
	http    *http.Client
}

// New returns a client of the node at address (host:port), verifying it
// with tlsConf (creds.ClientTLS pins the project's node.crt) and
// authenticating with token.
func New(address string, tlsConf *tls.Config, token string) *Client {
	tr := &http.Transport{
		// No proxy from the environment: nodes live on the owner's own
		// networks, and a proxy set up for package registries would only
		// be in the way (or see who is managed where).
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:     tlsConf,
		TLSHandshakeTimeout: handshakeTimeout,
		ForceAttemptHTTP2:   true,
		MaxIdleConns:        2,
		// Below the node's idle timeout (api.DefaultIdleTimeout, 30 s), so
		// the client never sends a request on a connection the node is
		// closing at that moment (a deploy's PUT would not be retried).
		IdleConnTimeout: 20 * time.Second,
	}
	return &Client{
		address: address,
		base:    "https://" + address,
		token:   token,
		http:    &http.Client{Transport: tr},
	}
}

// Address is the host:port the client talks to.
func (c *Client) Address() string { return c.address }

// Error is a node's answer with a 4xx or 5xx status.
type Error struct {
	Address string
	Path    string   // the request's path, which says what was refused
	Status  int      // the HTTP status
	Message string   // the node's "error" text (or the body, if not JSON)
	Logs    []string // on 422 from a deploy or rollback: the new version's last lines
}

func (e *Error) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	s := fmt.Sprintf("node %s answered %d %s: %s", e.Address, e.Status, http.StatusText(e.Status), msg)
	switch e.Status {
	case http.StatusUnauthorized:
		// The node's own text cannot know where the CLI keeps its token.
		s += " (the token in " + creds.Dir + "/" + creds.TokenFile + " is not the one this node was built with: use the project that built it, with --project, or rebuild and reinstall the image)"
	case http.StatusConflict:
		// Only a deploy or rollback is refused for another one running;
		// an OS update's 409s (another upload, a trial boot, a
		// downgrade, no slots) each say what to do themselves.
		if strings.HasPrefix(e.Path, contract.AppPath("")) {
			s += " (wait for the other deploy or rollback to finish, then try again)"
		}
	}
	return s
}

// StatusOf returns the HTTP status of a node's error answer in err's
// chain, or 0.
func StatusOf(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

// Status is GET /v1/status.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var s Status
	if err := c.doJSON(ctx, http.MethodGet, contract.PathStatus, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// Logs copies app's last lines (the node's default of 100 when lines <= 0)
// to w; with follow, it then keeps copying new lines until ctx is done,
// which is how following ends and so is not an error.
func (c *Client) Logs(ctx context.Context, app string, lines int, follow bool, w io.Writer) error {
	q := url.Values{}
	if lines > 0 {
		q.Set("lines", strconv.Itoa(lines))
	}
	if follow {
		q.Set("follow", "1")
	}
	p := contract.AppPath(app) + contract.SuffixLogs
	if len(q) > 0 {
		p += "?" + q.Encode()
	}
	resp, err := c.do(ctx, http.MethodGet, p, nil, -1, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(w, resp.Body)
	if follow && ctx.Err() != nil {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading the logs of %s from %s: %w", app, c.address, err)
	}
	return nil
}

// Restart is POST /v1/apps/{app}/restart.
func (c *Client) Restart(ctx context.Context, app string) (*RestartResult, error) {
	var r RestartResult
	if err := c.doJSON(ctx, http.MethodPost, contract.AppPath(app)+contract.SuffixRestart, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// Rollback is POST /v1/apps/{app}/rollback: back to the previous version.
func (c *Client) Rollback(ctx context.Context, app string) (*DeployResult, error) {
	var r DeployResult
	if err := c.doJSON(ctx, http.MethodPost, contract.AppPath(app)+contract.SuffixRollback, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// Reboot is POST /v1/reboot.
func (c *Client) Reboot(ctx context.Context) (*ActionResult, error) {
	var r ActionResult
	if err := c.doJSON(ctx, http.MethodPost, contract.PathReboot, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// Poweroff is POST /v1/poweroff.
func (c *Client) Poweroff(ctx context.Context) (*ActionResult, error) {
	var r ActionResult
	if err := c.doJSON(ctx, http.MethodPost, contract.PathPoweroff, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// RevokeSessions is DELETE /v1/sessions: it ends every status page login
// on the node (the owner's token stays valid).
func (c *Client) RevokeSessions(ctx context.Context) (*RevokeResult, error) {
	var r RevokeResult
	if err := c.doJSON(ctx, http.MethodDelete, contract.PathSessions, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// Deploy uploads a bundle of size bytes for app (PUT /v1/apps/{app}) and
// waits for the node's verdict. digest is "sha256:<hex>" of the bundle's
// bytes. The bytes sent are also written to progress when it is not nil
// (a progress bar). A 422 answer is an *Error whose Logs hold the new
// version's last lines; the old version then serves again.
func (c *Client) Deploy(ctx context.Context, app string, bundle io.Reader, size int64, digest string, progress io.Writer) (*DeployResult, error) {
	body := bundle
	if progress != nil {
		body = io.TeeReader(bundle, progress)
	}
	hdr := map[string]string{contract.DigestHeader: digest, "Content-Type": "application/zstd"}
	resp, err := c.do(ctx, http.MethodPut, contract.AppPath(app), body, size, hdr)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r DeployResult
	if err := decodeJSON(resp.Body, &r); err != nil {
		return nil, fmt.Errorf("the deploy answer of %s: %w", c.address, err)
	}
	return &r, nil
}

// doJSON runs a request without a body and decodes a 2xx answer into v.
func (c *Client) doJSON(ctx context.Context, method, path string, v any) error {
	resp, err := c.do(ctx, method, path, nil, -1, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := decodeJSON(resp.Body, v); err != nil {
		return fmt.Errorf("%s %s on %s: %w", method, path, c.address, err)
	}
	return nil
}

// putJSON sends in as JSON with PUT and decodes the answer into out.
func (c *Client) putJSON(ctx context.Context, path string, in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	resp, err := c.do(ctx, http.MethodPut, path, bytes.NewReader(b), int64(len(b)), map[string]string{"Content-Type": "application/json"})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := decodeJSON(resp.Body, out); err != nil {
		return fmt.Errorf("PUT %s on %s: %w", path, c.address, err)
	}
	return nil
}

// do sends a request and returns a 2xx response; any other status is an
// *Error, any failure to talk a wrapped error saying what went wrong.
func (c *Client) do(ctx context.Context, method, path string, body io.Reader, size int64, hdr map[string]string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, fmt.Errorf("%s %s on %s: %w", method, path, c.address, err)
	}
	if body != nil && size >= 0 {
		req.ContentLength = size
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, c.transportError(ctx, err)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	e := parseError(resp.StatusCode, b)
	e.Address, e.Path = c.address, req.URL.Path
	return nil, e
}

// transportError explains why no answer came.
func (c *Client) transportError(ctx context.Context, err error) error {
	var rh tls.RecordHeaderError
	var ce *tls.CertificateVerificationError
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("talking to the node at %s: %w", c.address, ctx.Err())
	case errors.Is(err, creds.ErrWrongNode), errors.As(err, &ce):
		return fmt.Errorf("%s: %w: check the node's address, or pass --project with the project that built its image", c.address, creds.ErrWrongNode)
	case errors.As(err, &rh), strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		// net/http replaces the RecordHeaderError with that text when
		// the peer answered in plain HTTP.
		return fmt.Errorf("%s does not speak TLS: it is not a node's management API, which listens on port %d (nodeboot run prints its forwarded port and records it as the node \"local\")", c.address, contract.APIPort)
	}
	// Not net.Error: url.Error implements it, so it would match anything.
	var oe *net.OpError
	var de *net.DNSError
	if errors.As(err, &oe) || errors.As(err, &de) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("cannot reach the node at %s: %w: is it running, and is that the address of its management API (port %d)?", c.address, unwrapURL(err), contract.APIPort)
	}
	if strings.Contains(err.Error(), "tls:") {
		return fmt.Errorf("TLS with the node at %s failed: %w: is that a nodeboot node's management API?", c.address, unwrapURL(err))
	}
	return fmt.Errorf("talking to the node at %s: %w", c.address, unwrapURL(err))
}

// unwrapURL drops url.Error's `Get "https://..."` prefix, which repeats the
// address the message already names.
func unwrapURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// parseError reads an error answer: {"error": ..., "logs": [...]} as
// docs/api.md says, else the body's first line as text.
func parseError(status int, body []byte) *Error {
	e := &Error{Status: status}
	var eb contract.ErrorBody
	if json.Unmarshal(body, &eb) == nil && eb.Error != "" {
		e.Message, e.Logs = eb.Error, eb.Logs
		return e
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(body)), "\n")
	if len(line) > 500 {
		line = line[:500] + "..."
	}
	e.Message = strings.ToValidUTF8(line, "?")
	return e
}

// decodeJSON decodes one JSON value of at most maxJSON bytes.
func decodeJSON(r io.Reader, v any) error {
	dec := json.NewDecoder(io.LimitReader(r, maxJSON))
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("not the JSON docs/api.md describes: %w (is the node's nodeboot much older or newer than this one?)", err)
	}
	return nil
}
