package api

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"sync"
	"time"
)

// The status page's sessions (issue 12, item 9). The browser never holds
// the owner's token: a login trades it for a session secret of its own,
// 256 random bits that expire, can be revoked one by one (logout) or all
// at once (DELETE /v1/sessions), and live only in PID 1's memory, so a
// reboot ends every one of them. A stolen cookie is therefore worth at
// most SessionLifetime of read-only access, never the token.

// DefaultSessionLifetime is how long a login lasts.
const DefaultSessionLifetime = 12 * time.Hour

// maxSessions bounds the sessions kept at once; the oldest goes first. A
// node has one owner with a few browsers: the bound only keeps repeated
// logins from growing PID 1's memory.
const maxSessions = 64

// sessions holds live session secrets by their SHA-256, so that what is
// kept in memory cannot be replayed as a cookie, and a lookup's timing
// says nothing about the secret (the map is keyed by a hash the client
// cannot steer).
type sessions struct {
	lifetime time.Duration
	now      func() time.Time

	mu   sync.Mutex
	live map[[32]byte]time.Time // secret's hash → expiry
}

func newSessions(lifetime time.Duration, now func() time.Time) *sessions {
	return &sessions{lifetime: lifetime, now: now, live: map[[32]byte]time.Time{}}
}

// create returns a new session secret (64 hex digits) and its expiry.
func (s *sessions) create() (string, time.Time) {
	var b [32]byte
	rand.Read(b[:]) // never fails (crypto/rand panics rather)
	secret := hex.EncodeToString(b[:])
	now := s.now()
	exp := now.Add(s.lifetime)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pruneLocked(now)
	for len(s.live) >= maxSessions {
		var oldest [32]byte
		first := true
		for k, e := range s.live {
			if first || e.Before(s.live[oldest]) {
				oldest, first = k, false
			}
		}
		delete(s.live, oldest)
	}
	s.live[sha256.Sum256([]byte(secret))] = exp
	return secret, exp
}

// valid reports whether secret names a live session; an expired one is
// forgotten.
func (s *sessions) valid(secret string) bool {
	if secret == "" {
		return false
	}
	k := sha256.Sum256([]byte(secret))
	s.mu.Lock()
	defer s.mu.Unlock()
	exp, ok := s.live[k]
	if !ok {
		return false
	}
	if !s.now().Before(exp) {
		delete(s.live, k)
		return false
	}
	return true
}

// revoke ends the session secret names, if any.
func (s *sessions) revoke(secret string) {
	k := sha256.Sum256([]byte(secret))
	s.mu.Lock()
	delete(s.live, k)
	s.mu.Unlock()
}

// revokeAll ends every session and returns how many were live.
func (s *sessions) revokeAll() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pruneLocked(s.now())
	n := len(s.live)
	clear(s.live)
	return n
}

func (s *sessions) pruneLocked(now time.Time) {
	for k, exp := range s.live {
		if !now.Before(exp) {
			delete(s.live, k)
		}
	}
}
