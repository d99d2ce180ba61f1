package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/nodeboot/nodeboot/internal/contract"
)

// SecretNode is a Node that keeps the apps' secrets (internal/secrets);
// without it the secret routes answer 501.
type SecretNode interface {
	SetSecret(ctx context.Context, app, name string, value []byte) error
	// Secrets lists the names of app's secrets, never their values.
	Secrets(ctx context.Context, app string) ([]string, error)
	RemoveSecret(ctx context.Context, app, name string) error
}

// Errors a SecretNode returns (wrapped): 400 and 413.
var (
	ErrBadSecret      = errors.New("bad secret")
	ErrSecretTooLarge = errors.New("secret too large")
)

func (s *Server) secretNode(w http.ResponseWriter) (SecretNode, bool) {
	sn, ok := s.node.(SecretNode)
	if !ok {
		writeError(w, http.StatusNotImplemented, "this node keeps no secrets: update its image")
	}
	return sn, ok
}

func writeSecretError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrBadSecret):
		writeError(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, ErrSecretTooLarge):
		writeError(w, http.StatusRequestEntityTooLarge, err.Error())
	default:
		writeNodeError(w, err)
	}
}

// setSecret stores the request's body as the secret. The value is never
// logged, and no answer carries it.
func (s *Server) setSecret(w http.ResponseWriter, r *http.Request) {
	app, ok := appName(w, r)
	if !ok {
		return
	}
	sn, ok := s.secretNode(w)
	if !ok {
		return
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, contract.MaxSecretBytes+1))
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("reading the secret: %v", err))
		return
	}
	if len(b) > contract.MaxSecretBytes {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the secret is over %d bytes: keep larger data in the app's state dir", contract.MaxSecretBytes))
		return
	}
	name := r.PathValue("name")
	if err := sn.SetSecret(r.Context(), app, name, b); err != nil {
		writeSecretError(w, err)
		return
	}
	s.log("management API: secret %q of %s set by %s (%d bytes)", truncate(name, 64), app, clientIP(r), len(b))
	writeJSON(w, http.StatusOK, contract.SecretResult{App: app, Name: name})
}

func (s *Server) listSecrets(w http.ResponseWriter, r *http.Request) {
	app, ok := appName(w, r)
	if !ok {
		return
	}
	sn, ok := s.secretNode(w)
	if !ok {
		return
	}
	names, err := sn.Secrets(r.Context(), app)
	if err != nil {
		writeSecretError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, contract.SecretList{App: app, Names: names})
}

func (s *Server) removeSecret(w http.ResponseWriter, r *http.Request) {
	app, ok := appName(w, r)
	if !ok {
		return
	}
	sn, ok := s.secretNode(w)
	if !ok {
		return
	}
	name := r.PathValue("name")
	if err := sn.RemoveSecret(r.Context(), app, name); err != nil {
		writeSecretError(w, err)
		return
	}
	s.log("management API: secret %q of %s removed by %s", truncate(name, 64), app, clientIP(r))
	writeJSON(w, http.StatusOK, contract.SecretResult{App: app, Name: name})
}
