package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/nodeboot/nodeboot/internal/contract"
)

// route is a Route with its handler; self routes check credentials on
// their own (the session login).
type route struct {
	Route
	self bool
	h    http.HandlerFunc
}

func (s *Server) register() {
	for _, rt := range []route{
		{Route: Route{Method: "GET", Pattern: "/v1/healthz", Public: true}, h: s.healthz},
		{Route: Route{Method: "GET", Pattern: "/v1/status", Session: true}, h: s.status},
		{Route: Route{Method: "GET", Pattern: "/v1/apps/{app}/logs", Session: true}, h: s.logs},
		{Route: Route{Method: "POST", Pattern: "/v1/apps/{app}/restart"}, h: s.restart},
		{Route: Route{Method: "PUT", Pattern: "/v1/apps/{app}"}, h: s.deploy},
		{Route: Route{Method: "POST", Pattern: "/v1/apps/{app}/rollback"}, h: s.rollback},
		{Route: Route{Method: "PUT", Pattern: "/v1/apps/{app}/secrets/{name}"}, h: s.setSecret},
		{Route: Route{Method: "GET", Pattern: "/v1/apps/{app}/secrets"}, h: s.listSecrets},
		{Route: Route{Method: "DELETE", Pattern: "/v1/apps/{app}/secrets/{name}"}, h: s.removeSecret},
		{Route: Route{Method: "PUT", Pattern: contract.PathFollowAuth}, h: s.setFollowAuth},
		{Route: Route{Method: "DELETE", Pattern: contract.PathFollowAuth}, h: s.removeFollowAuth},
		{Route: Route{Method: "PUT", Pattern: contract.PathLogsAuth}, h: s.setLogsAuth},
		{Route: Route{Method: "DELETE", Pattern: contract.PathLogsAuth}, h: s.removeLogsAuth},
		{Route: Route{Method: "PUT", Pattern: contract.PathUpdate}, h: s.updateOS},
		{Route: Route{Method: "POST", Pattern: contract.PathUpdateOffset}, h: s.updateOffset},
		{Route: Route{Method: "POST", Pattern: "/v1/reboot"}, h: s.power("reboot")},
		{Route: Route{Method: "POST", Pattern: "/v1/poweroff"}, h: s.power("poweroff")},
		{Route: Route{Method: "GET", Pattern: "/metrics", Session: true}, h: s.metrics},
		{Route: Route{Method: "GET", Pattern: "/", Session: true}, h: s.statusPage},
		{Route: Route{Method: "POST", Pattern: "/v1/session"}, self: true, h: s.session},
		{Route: Route{Method: "POST", Pattern: "/v1/logout"}, self: true, h: s.logout},
		{Route: Route{Method: "DELETE", Pattern: "/v1/sessions"}, h: s.revokeSessions},
	} {
		s.routes = append(s.routes, rt.Route)
		pattern := rt.Method + " " + rt.Pattern
		if rt.Pattern == "/" {
			pattern += "{$}" // the page only, not a catch-all
		}
		s.mux.HandleFunc(pattern, s.guard(rt))
	}
}

// guard checks the credentials a route needs before its handler runs.
func (s *Server) guard(rt route) http.HandlerFunc {
	if rt.Public || rt.self {
		return rt.h
	}
	return func(w http.ResponseWriter, r *http.Request) {
		switch s.authenticate(r, rt.Session) {
		case authOK:
			rt.h(w, r)
		case authLimited:
			s.tooMany(w, r)
		case authMissing:
			s.unauthorized(w, r, "this route needs the header Authorization: Bearer <token>, with the token from .nodeboot/owner.token of the project that built this node")
		default:
			if _, err := r.Cookie(SessionCookie); err == nil && rt.Session {
				// An expired or revoked session (or one from before a
				// reboot): forget it, so the page shows the login form.
				clearSession(w)
			}
			s.unauthorized(w, r, "this token is not the owner's of this node: use .nodeboot/owner.token of the project that built it")
		}
	}
}

func (s *Server) unauthorized(w http.ResponseWriter, r *http.Request, msg string) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="nodeboot"`)
	if r.Method == "GET" && r.URL.Path == "/" {
		s.page.login(w, http.StatusUnauthorized, "")
		return
	}
	writeError(w, http.StatusUnauthorized, msg)
}

func (s *Server) tooMany(w http.ResponseWriter, r *http.Request) {
	ip := clientIP(r)
	w.Header().Set("Retry-After", s.limiter.retryAfter(ip))
	writeError(w, http.StatusTooManyRequests, fmt.Sprintf("too many failed logins from %s: wait a few seconds, then retry with the right token", ip))
}

// serveHTTP is the mux with common headers and JSON for the mux's own 404
// and 405 answers, which are plain text otherwise.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	handler, pattern := s.mux.Handler(r)
	if pattern != "" {
		s.mux.ServeHTTP(w, r)
		return
	}
	rec := &recorder{h: http.Header{}}
	handler.ServeHTTP(rec, r)
	switch rec.code {
	case http.StatusMethodNotAllowed:
		allow := rec.h.Get("Allow")
		h.Set("Allow", allow)
		writeError(w, rec.code, fmt.Sprintf("%s is not a method of %s: use %s", r.Method, r.URL.Path, allow))
	case http.StatusNotFound:
		writeError(w, rec.code, fmt.Sprintf("no route %s: the routes are in docs/api.md", r.URL.Path))
	default: // a redirect to the clean path
		handler.ServeHTTP(w, r)
	}
}

// recorder keeps what the mux's fallback handlers answer.
type recorder struct {
	h    http.Header
	code int
}

func (r *recorder) Header() http.Header { return r.h }
func (r *recorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return len(b), nil
}
func (r *recorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(`{"error":"encoding the answer failed"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

// statusOf maps a Node's error to its HTTP status.
func statusOf(err error) int {
	var ue *UnhealthyError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &ue):
		return http.StatusUnprocessableEntity
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrNoPrevious):
		return http.StatusNotFound
	case errors.Is(err, ErrBusy):
		return http.StatusConflict
	case errors.Is(err, ErrBadBundle), errors.Is(err, io.ErrUnexpectedEOF):
		return http.StatusBadRequest
	case errors.As(err, &mbe):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, ErrNoRoom):
		return http.StatusInsufficientStorage
	}
	return http.StatusInternalServerError
}

// writeNodeError answers with a Node's error; 422 carries the new
// version's last lines.
func writeNodeError(w http.ResponseWriter, err error) {
	var ue *UnhealthyError
	if errors.As(err, &ue) {
		logs := ue.Logs
		if logs == nil {
			logs = []string{}
		}
		writeJSON(w, http.StatusUnprocessableEntity, struct {
			Error string   `json:"error"`
			Logs  []string `json:"logs"`
		}{ue.Msg, logs})
		return
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		writeError(w, http.StatusBadRequest, "the upload ended before Content-Length bytes: send the whole bundle again")
		return
	}
	writeError(w, statusOf(err), err.Error())
}

// appName is the {app} of r, or a 404 answer when no app can have it.
func appName(w http.ResponseWriter, r *http.Request) (string, bool) {
	app := r.PathValue("app")
	if !validAppName(app) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no app %q on this node", truncate(app, 64)))
		return "", false
	}
	return app, true
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, "ok\n")
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	st, err := s.node.Status(r.Context())
	if err != nil {
		writeNodeError(w, fmt.Errorf("reading the node's status: %w", err))
		return
	}
	writeJSON(w, http.StatusOK, normalize(st))
}

// normalize makes empty lists [] rather than null, as docs/api.md shows.
func normalize(st Status) Status {
	if st.Apps == nil {
		st.Apps = []AppStatus{}
	}
	if st.Node.Addresses == nil {
		st.Node.Addresses = []string{}
	}
	return st
}

func (s *Server) logs(w http.ResponseWriter, r *http.Request) {
	app, ok := appName(w, r)
	if !ok {
		return
	}
	q, err := parseLogQuery(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	rc := http.NewResponseController(w)
	started := false
	start := func() {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusOK)
		started = true
	}
	if q.follow {
		// Know the app before promising a stream, then open it at once:
		// the client sees 200 before any new line exists.
		st, err := s.node.Status(r.Context())
		if err != nil {
			writeNodeError(w, fmt.Errorf("reading the node's status: %w", err))
			return
		}
		if !hasApp(st, app) {
			writeError(w, http.StatusNotFound, fmt.Sprintf("no app %q on this node", app))
			return
		}
		// A follow lasts as long as the client wants; each line still
		// must go out within idleIO, so a stalled client is dropped.
		rc.SetWriteDeadline(time.Time{})
		start()
		rc.Flush()
	}
	emit := func(line string) error {
		if !started {
			start()
		}
		if q.follow {
			rc.SetWriteDeadline(time.Now().Add(idleIO))
		}
		// One log line per line, whatever the app printed.
		line = strings.NewReplacer("\r", " ", "\n", " ").Replace(line)
		if _, err := io.WriteString(w, line+"\n"); err != nil {
			return err
		}
		if q.follow {
			return rc.Flush()
		}
		return nil
	}
	err = s.node.Logs(r.Context(), app, q.lines, q.follow, emit)
	switch {
	case err != nil && !started:
		writeNodeError(w, err)
	case !started:
		start()
	case err != nil && r.Context().Err() == nil:
		s.log("management API: logs of %s: %v", app, err)
	}
}

func hasApp(st Status, app string) bool {
	for _, a := range st.Apps {
		if a.Name == app {
			return true
		}
	}
	return false
}

func (s *Server) restart(w http.ResponseWriter, r *http.Request) {
	app, ok := appName(w, r)
	if !ok {
		return
	}
	pid, err := s.node.Restart(r.Context(), app)
	if err != nil {
		writeNodeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		App string `json:"app"`
		PID int    `json:"pid"`
	}{app, pid})
}

func (s *Server) power(action string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := s.node.Power(action); err != nil {
			writeNodeError(w, fmt.Errorf("%s: %w", action, err))
			return
		}
		s.log("management API: %s requested by %s", action, clientIP(r))
		writeJSON(w, http.StatusAccepted, map[string]string{"action": action})
	}
}

func (s *Server) deploy(w http.ResponseWriter, r *http.Request) {
	app, ok := appName(w, r)
	if !ok {
		return
	}
	// Everything that can be refused is refused before the upload, so a
	// client sending "Expect: 100-continue" never sends the body.
	if r.ContentLength < 0 {
		writeError(w, http.StatusLengthRequired, "a deploy needs a Content-Length: send the bundle as one body, not chunked")
		s.countDeploy(app, "rejected")
		return
	}
	if r.ContentLength > s.opts.MaxBundleBytes {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the bundle is %d bytes, more than the %d this node accepts: leave big files out of the app (.nodebootignore)", r.ContentLength, s.opts.MaxBundleBytes))
		s.countDeploy(app, "rejected")
		return
	}
	digest, err := parseDigest(r.Header.Get(DigestHeader))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		s.countDeploy(app, "rejected")
		return
	}
	if !s.deploying.TryLock() {
		writeError(w, http.StatusConflict, "another deploy or rollback is in progress on this node: wait for it to finish, then retry")
		s.countDeploy(app, "rejected")
		return
	}
	defer s.deploying.Unlock()

	// The upload and the health check may take long; only stalls are
	// bounded (idleIO per read, and the health check's own limit).
	rc := http.NewResponseController(w)
	rc.SetWriteDeadline(time.Time{})
	body := &idleReader{r: http.MaxBytesReader(w, r.Body, s.opts.MaxBundleBytes), rc: rc}
	res, err := s.node.Deploy(r.Context(), app, digest, r.ContentLength, body)
	if err != nil {
		var ue *UnhealthyError
		if errors.As(err, &ue) {
			s.countDeploy(app, "unhealthy")
		} else {
			s.countDeploy(app, "rejected")
		}
		s.log("management API: deploy of %s refused: %v", app, err)
		writeNodeError(w, err)
		return
	}
	s.countDeploy(app, "ok")
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) countDeploy(app, result string) {
	s.deploys.WithLabelValues(app, result).Inc()
}

// idleReader lifts the server's read timeout for an upload but fails one
// that stalls for idleIO.
type idleReader struct {
	r  io.Reader
	rc *http.ResponseController
}

func (i *idleReader) Read(p []byte) (int, error) {
	i.rc.SetReadDeadline(time.Now().Add(idleIO))
	return i.r.Read(p)
}

func (s *Server) rollback(w http.ResponseWriter, r *http.Request) {
	app, ok := appName(w, r)
	if !ok {
		return
	}
	if !s.deploying.TryLock() {
		writeError(w, http.StatusConflict, "a deploy or rollback is in progress on this node: wait for it to finish, then retry")
		return
	}
	defer s.deploying.Unlock()
	http.NewResponseController(w).SetWriteDeadline(time.Time{}) // the health check may take its time
	res, err := s.node.Rollback(r.Context(), app)
	if err != nil {
		writeNodeError(w, err)
		return
	}
	s.rollbacks.WithLabelValues(app).Inc()
	writeJSON(w, http.StatusOK, res)
}

// maxSessionForm bounds POST /v1/session's body: one token.
const maxSessionForm = 4 << 10

// session logs the status page in: the owner's token from the form buys a
// session secret of its own, kept in an HttpOnly cookie, so that neither
// the page's script nor the browser's cookie jar ever holds the token.
func (s *Server) session(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxSessionForm)
	token := strings.TrimSpace(r.PostFormValue("token"))
	if token != "" && s.isOwner(token) {
		secret, exp := s.sessions.create()
		http.SetCookie(w, &http.Cookie{
			Name:     SessionCookie,
			Value:    secret,
			Path:     "/",
			Expires:  exp,
			MaxAge:   int(s.opts.SessionLifetime / time.Second),
			HttpOnly: true,
			Secure:   true,
			SameSite: http.SameSiteStrictMode,
		})
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	msg := "Paste the token first."
	if token != "" {
		if s.failed(clientIP(r)) == authLimited {
			s.tooMany(w, r)
			return
		}
		msg = "That is not this node's token."
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="nodeboot"`)
	s.page.login(w, http.StatusUnauthorized, msg)
}

// logout ends the browser's session: the one change the session cookie
// may make, since a forged logout can only end the session it names.
// The owner's bearer token may log a cookie out too.
func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	res := s.authenticate(r, true)
	if res == authLimited {
		s.tooMany(w, r)
		return
	}
	if c, err := r.Cookie(SessionCookie); err == nil {
		s.sessions.revoke(c.Value)
	}
	clearSession(w)
	if res != authOK {
		w.Header().Set("WWW-Authenticate", `Bearer realm="nodeboot"`)
		s.page.login(w, http.StatusUnauthorized, "")
		return
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// revokeSessions ends every browser session (a lost laptop, a shared
// screen); the owner's token is needed, a session cannot do it.
func (s *Server) revokeSessions(w http.ResponseWriter, r *http.Request) {
	n := s.sessions.revokeAll()
	s.log("management API: %d browser session(s) revoked by %s", n, clientIP(r))
	writeJSON(w, http.StatusOK, contract.RevokeResult{Revoked: n})
}

// clearSession tells the browser to forget its session cookie.
func clearSession(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
}

// statusContext bounds a scrape's or a page's wait for the node.
func statusContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, 10*time.Second)
}
