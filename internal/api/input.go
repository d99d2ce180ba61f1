package api

import (
	"fmt"
	"net/url"
	"regexp"
	"strconv"

	"github.com/nodeboot/nodeboot/internal/contract"
)

// Limits of the logs route's query.
const (
	DefaultLogLines = 100
	MaxLogLines     = 10000
)

// logQuery is the parsed query of GET /v1/apps/{app}/logs.
type logQuery struct {
	lines  int
	follow bool
}

// parseLogQuery reads lines (1..MaxLogLines, default DefaultLogLines) and
// follow (1/true or 0/false); anything else is an error a user can act on.
func parseLogQuery(q url.Values) (logQuery, error) {
	lq := logQuery{lines: DefaultLogLines}
	for k := range q {
		if k != "lines" && k != "follow" {
			return lq, fmt.Errorf("unknown query parameter %q: the logs route takes lines=N and follow=1", k)
		}
	}
	if v, ok := q["lines"]; ok {
		if len(v) != 1 {
			return lq, fmt.Errorf("lines given %d times: give it once", len(v))
		}
		n, err := strconv.Atoi(v[0])
		if err != nil || n < 1 || n > MaxLogLines {
			return lq, fmt.Errorf("lines=%q: want a number from 1 to %d", v[0], MaxLogLines)
		}
		lq.lines = n
	}
	if v, ok := q["follow"]; ok {
		if len(v) != 1 {
			return lq, fmt.Errorf("follow given %d times: give it once", len(v))
		}
		switch v[0] {
		case "1", "true":
			lq.follow = true
		case "0", "false", "":
		default:
			return lq, fmt.Errorf("follow=%q: want 1 or 0", v[0])
		}
	}
	return lq, nil
}

// DigestHeader carries the bundle's digest on a deploy.
const DigestHeader = contract.DigestHeader

var digestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// parseDigest checks a Nodeboot-Digest value: "sha256:" and 64 lower-case
// hex digits, the form the store names versions by.
func parseDigest(v string) (string, error) {
	if v == "" {
		return "", fmt.Errorf("the %s header is missing: send sha256:<hex of the body> (nodeboot deploy does)", DigestHeader)
	}
	if !digestRE.MatchString(v) {
		return "", fmt.Errorf("%s %q: want sha256: and 64 lower-case hex digits", DigestHeader, truncate(v, 80))
	}
	return v, nil
}

// appNameRE is spec's rule for app names (internal/spec/names.go): a name
// outside it can be no app of this node, so it is 404 without asking
// PID 1, and never becomes a metric label.
var appNameRE = regexp.MustCompile(`^[a-z]([a-z0-9-]{0,30}[a-z0-9])?$`)

func validAppName(name string) bool { return appNameRE.MatchString(name) }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
