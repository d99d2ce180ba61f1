package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/nodeboot/nodeboot/internal/contract"
	"github.com/nodeboot/nodeboot/internal/logship"
)

// LogsAuthNode is a Node that keeps the client certificate its remote
// log endpoint requires (contract.LogsClientFile); without it PUT and
// DELETE PathLogsAuth answer 501.
type LogsAuthNode interface {
	// SetLogsClientCert stores a pair ParseLogsCredentials accepted and
	// reconnects with it.
	SetLogsClientCert(ctx context.Context, c contract.LogsClientCredentials) (*contract.LogsAuthResult, error)
	RemoveLogsClientCert(ctx context.Context) (*contract.LogsAuthResult, error)
}

// ErrNoRemoteLogs: the node ships no logs over TLS (409).
var ErrNoRemoteLogs = errors.New("this node sends no logs to a TLS endpoint")

func (s *Server) logsAuthNode(w http.ResponseWriter) (LogsAuthNode, bool) {
	ln, ok := s.node.(LogsAuthNode)
	if !ok {
		writeError(w, http.StatusNotImplemented, "this node keeps no client certificate for its logs: update its image")
	}
	return ln, ok
}

func writeLogsAuthError(w http.ResponseWriter, err error) {
	if errors.Is(err, ErrNoRemoteLogs) {
		writeError(w, http.StatusConflict, err.Error())
		return
	}
	writeNodeError(w, err)
}

// setLogsAuth stores the body's client certificate and key. Neither the
// log nor the answer carries the key.
func (s *Server) setLogsAuth(w http.ResponseWriter, r *http.Request) {
	ln, ok := s.logsAuthNode(w)
	if !ok {
		return
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, contract.MaxLogsCredentialsBytes+1))
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("reading the client certificate: %v", err))
		return
	}
	if len(b) > contract.MaxLogsCredentialsBytes {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the client certificate and key are over %d bytes", contract.MaxLogsCredentialsBytes))
		return
	}
	c, err := ParseLogsCredentials(b, time.Now())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	res, err := ln.SetLogsClientCert(r.Context(), c)
	if err != nil {
		writeLogsAuthError(w, err)
		return
	}
	s.log("management API: client certificate %s for the logs of %s set by %s", res.Subject, res.Endpoint, clientIP(r))
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) removeLogsAuth(w http.ResponseWriter, r *http.Request) {
	ln, ok := s.logsAuthNode(w)
	if !ok {
		return
	}
	res, err := ln.RemoveLogsClientCert(r.Context())
	if err != nil {
		writeLogsAuthError(w, err)
		return
	}
	s.log("management API: client certificate for the logs of %s removed by %s", res.Endpoint, clientIP(r))
	writeJSON(w, http.StatusOK, res)
}

// ParseLogsCredentials reads PUT PathLogsAuth's body strictly: one JSON
// object of "cert" and "key", both PEM, the key the certificate's own,
// the certificate valid at now and for client authentication
// (logship.ParseClientCert). Its errors never quote the body (it holds a
// private key).
func ParseLogsCredentials(b []byte, now time.Time) (contract.LogsClientCredentials, error) {
	var c contract.LogsClientCredentials
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&c); err != nil {
		var ue *json.UnmarshalTypeError
		if errors.As(err, &ue) {
			return c, fmt.Errorf("the client certificate: field %q is not a string", ue.Field)
		}
		return c, errors.New(`the client certificate is not a JSON object of "cert" and "key" (PEM text)`)
	}
	if d.More() {
		return c, errors.New("the client certificate: trailing data after the JSON object")
	}
	if c.Cert == "" || c.Key == "" {
		return c, errors.New(`the client certificate needs both "cert" and "key" (PEM text)`)
	}
	if _, err := logship.ParseClientCert([]byte(c.Cert), []byte(c.Key), now); err != nil {
		return c, err
	}
	return c, nil
}
