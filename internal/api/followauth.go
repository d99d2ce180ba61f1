package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/nodeboot/nodeboot/internal/contract"
)

// FollowAuthNode is a Node that keeps the followed registry's pull
// credentials (contract.FollowAuthFile); without it PUT and DELETE
// PathFollowAuth answer 501.
type FollowAuthNode interface {
	// SetPullCredentials tries c against the followed registry and stores
	// them unless the registry refuses them (ErrCredentialsRefused).
	SetPullCredentials(ctx context.Context, c contract.RegistryCredentials) (*contract.FollowAuthResult, error)
	RemovePullCredentials(ctx context.Context) (*contract.FollowAuthResult, error)
}

// Errors a FollowAuthNode returns (wrapped): 409 and 422.
var (
	ErrNotFollowing       = errors.New("this node follows no tag")
	ErrCredentialsRefused = errors.New("the registry refused these credentials")
)

func (s *Server) followAuthNode(w http.ResponseWriter) (FollowAuthNode, bool) {
	fn, ok := s.node.(FollowAuthNode)
	if !ok {
		writeError(w, http.StatusNotImplemented, "this node keeps no pull credentials: update its image")
	}
	return fn, ok
}

func writeFollowAuthError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrNotFollowing):
		writeError(w, http.StatusConflict, err.Error())
	case errors.Is(err, ErrCredentialsRefused):
		writeError(w, http.StatusUnprocessableEntity, err.Error())
	default:
		writeNodeError(w, err)
	}
}

// setFollowAuth stores the body's pull credentials. Neither the log nor
// the answer carries them.
func (s *Server) setFollowAuth(w http.ResponseWriter, r *http.Request) {
	fn, ok := s.followAuthNode(w)
	if !ok {
		return
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, contract.MaxRegistryCredentialsBytes+1))
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("reading the credentials: %v", err))
		return
	}
	if len(b) > contract.MaxRegistryCredentialsBytes {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the credentials are over %d bytes", contract.MaxRegistryCredentialsBytes))
		return
	}
	c, err := ParseRegistryCredentials(b)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	res, err := fn.SetPullCredentials(r.Context(), c)
	if err != nil {
		writeFollowAuthError(w, err)
		return
	}
	s.log("management API: pull credentials for %s set by %s", res.Registry, clientIP(r))
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) removeFollowAuth(w http.ResponseWriter, r *http.Request) {
	fn, ok := s.followAuthNode(w)
	if !ok {
		return
	}
	res, err := fn.RemovePullCredentials(r.Context())
	if err != nil {
		writeFollowAuthError(w, err)
		return
	}
	s.log("management API: pull credentials for %s removed by %s", res.Registry, clientIP(r))
	writeJSON(w, http.StatusOK, res)
}

// ParseRegistryCredentials reads PUT PathFollowAuth's body strictly: one
// JSON object of known fields, with a user name and password or a token.
// Its errors never quote the body (it holds a password).
func ParseRegistryCredentials(b []byte) (contract.RegistryCredentials, error) {
	var c contract.RegistryCredentials
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&c); err != nil {
		var ue *json.UnmarshalTypeError
		if errors.As(err, &ue) {
			return c, fmt.Errorf("the credentials: field %q is not a string", ue.Field)
		}
		return c, errors.New(`the credentials are not a JSON object of "username", "password", "identitytoken", "registrytoken"`)
	}
	if d.More() {
		return c, errors.New("the credentials: trailing data after the JSON object")
	}
	switch {
	case c.Empty():
		return c, errors.New("the credentials are empty: send a username and password, or a token")
	case c.Username != "" && c.Password == "" && c.IdentityToken == "":
		return c, fmt.Errorf("the credentials name user %q but carry no password or token", truncate(c.Username, 64))
	case c.Username == "" && c.Password != "":
		return c, errors.New("the credentials carry a password but no username")
	}
	return c, nil
}
