package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// SessionCookie is the status page's session: a secret of its own (see
// sessions), kept by the browser as an HttpOnly, Secure, SameSite=Strict
// cookie. It opens only the read-only GET routes (and ends itself on
// logout), so that no request another site makes the browser send can
// change anything, even if SameSite failed.
const SessionCookie = "nodeboot_session"

// authResult is what authenticate decided.
type authResult int

const (
	authOK      authResult = iota
	authMissing            // no credentials at all
	authWrong              // credentials that are not the owner's
	authLimited            // wrong credentials, and too many failures from this address
)

// authenticate checks r's credentials: the bearer token, or with cookieOK
// the session cookie. The credentials are checked first, so the owner is
// never limited (issue 12, item 9: a stranger on the same address, or
// every client of `nodeboot run` behind one NAT address, locked the owner
// out). Only failures cost the client's address its allowance, and only
// failures are answered 429 once it is used up.
func (s *Server) authenticate(r *http.Request, cookieOK bool) authResult {
	token, present := bearer(r)
	if present {
		if s.isOwner(token) {
			return authOK
		}
	} else if cookieOK {
		if c, err := r.Cookie(SessionCookie); err == nil && c.Value != "" {
			present = true
			if s.sessions.valid(c.Value) {
				return authOK
			}
		}
	}
	if !present {
		// No credentials is what a browser's first visit looks like: it is
		// not counted, or the login page would be rate limited.
		return authMissing
	}
	return s.failed(clientIP(r))
}

// failed records a failed authentication from ip: authWrong while its
// allowance lasts, then authLimited (without spending more of it).
func (s *Server) failed(ip string) authResult {
	if !s.limiter.allowed(ip) {
		return authLimited
	}
	if s.limiter.fail(ip) {
		s.log("management API: answering %s 429 for a while: too many failed logins", ip)
	}
	return authWrong
}

// isOwner compares the token's hash with the owner's in constant time: the
// node stores only the hash, and the comparison reveals nothing by timing.
func (s *Server) isOwner(token string) bool {
	sum := sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(sum[:], s.owner[:]) == 1
}

// bearer returns the token of an "Authorization: Bearer <token>" header;
// present is true for any Authorization header, so that a malformed one
// counts as a failure.
func bearer(r *http.Request) (token string, present bool) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", false
	}
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", true
	}
	return strings.TrimSpace(tok), true
}

// clientIP is the peer's address. Forwarded headers are ignored on
// purpose: the node sits behind no proxy it could trust.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// limiter is a token bucket of failed authentications per client address:
// burst failures at once, then one per every. A 256-bit token cannot be
// guessed anyway; the limit keeps scanners from burning the node's CPU and
// filling its log.
type limiter struct {
	burst float64
	every time.Duration
	now   func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

// maxBuckets bounds the limiter's memory when many addresses fail.
const maxBuckets = 4096

func newLimiter(burst int, every time.Duration, now func() time.Time) *limiter {
	return &limiter{burst: float64(burst), every: every, now: now, buckets: map[string]*bucket{}}
}

// refill brings b up to date; the caller holds l.mu.
func (l *limiter) refill(b *bucket, now time.Time) {
	b.tokens = math.Min(l.burst, b.tokens+float64(now.Sub(b.last))/float64(l.every))
	b.last = now
}

// allowed reports whether ip may try its credentials now.
func (l *limiter) allowed(ip string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[ip]
	if !ok {
		return true
	}
	l.refill(b, l.now())
	return b.tokens >= 1
}

// retryAfter is how long until ip may try again, in whole seconds.
func (l *limiter) retryAfter(ip string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	secs := 1
	if b, ok := l.buckets[ip]; ok && b.tokens < 1 {
		secs = int(math.Ceil((1 - b.tokens) * l.every.Seconds()))
	}
	return strconv.Itoa(max(secs, 1))
}

// fail records a failure of ip and reports whether it used up the
// allowance just now.
func (l *limiter) fail(ip string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b, ok := l.buckets[ip]
	if !ok {
		if len(l.buckets) >= maxBuckets {
			l.prune(now)
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[ip] = b
	}
	l.refill(b, now)
	b.tokens--
	return b.tokens < 1
}

// prune forgets addresses whose allowance is full again, and if that is
// not enough, all of them: a flood from many addresses then gets a fresh
// allowance each, which still bounds the work per request.
func (l *limiter) prune(now time.Time) {
	for ip, b := range l.buckets {
		l.refill(b, now)
		if b.tokens >= l.burst {
			delete(l.buckets, ip)
		}
	}
	if len(l.buckets) >= maxBuckets {
		clear(l.buckets)
	}
}
