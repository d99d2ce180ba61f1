package api

import (
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"html"
	"net/http"
	"strings"
)

// The status page is one self-contained HTML file: its style and script
// are inlined at start-up and allowed by their hashes in the
// Content-Security-Policy, so nothing else can run or load on it.
//
//go:embed page/index.html page/login.html page/page.css page/page.js
var pageFS embed.FS

type page struct {
	indexHTML, indexCSP string
	loginHTML, loginCSP string
}

func mustPage() *page {
	read := func(name string) string {
		b, err := pageFS.ReadFile("page/" + name)
		if err != nil {
			panic("api: embedded page file missing: " + err.Error()) // a build error, not a runtime one
		}
		return string(b)
	}
	css, js := read("page.css"), read("page.js")
	p := &page{
		indexHTML: strings.NewReplacer("{{style}}", css, "{{script}}", js).Replace(read("index.html")),
		loginHTML: strings.Replace(read("login.html"), "{{style}}", css, 1),
	}
	p.indexCSP = csp("script-src '"+hash(js)+"'", "style-src '"+hash(css)+"'", "connect-src 'self'")
	p.loginCSP = csp("script-src 'none'", "style-src '"+hash(css)+"'")
	return p
}

func hash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256-" + base64.StdEncoding.EncodeToString(sum[:])
}

func csp(directives ...string) string {
	base := []string{"default-src 'none'", "base-uri 'none'", "form-action 'self'", "frame-ancestors 'none'"}
	return strings.Join(append(base, directives...), "; ")
}

func (p *page) write(w http.ResponseWriter, code int, policy, body string) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", policy)
	h.Set("X-Frame-Options", "DENY")
	w.WriteHeader(code)
	w.Write([]byte(body))
}

// login answers with the login form and an optional message; it shows no
// data of the node.
func (p *page) login(w http.ResponseWriter, code int, message string) {
	p.write(w, code, p.loginCSP, strings.Replace(p.loginHTML, "{{message}}", html.EscapeString(message), 1))
}

func (s *Server) statusPage(w http.ResponseWriter, r *http.Request) {
	s.page.write(w, http.StatusOK, s.page.indexCSP, s.page.indexHTML)
}
