// Package gitignore matches paths against .gitignore-syntax rules exactly as
// git does: the parsing of git's dir.c (comments, trailing spaces, "!", a
// trailing "/", anchoring by a leading or inner "/") and a port of git's
// wildmatch.c (with WM_PATHNAME for patterns that hold a slash).
//
// Why not a library: the two Go libraries at hand disagree with
// `git check-ignore` on common negation patterns (go-gitignore on 10, go-git's
// plumbing/format/gitignore on 7 of the table in internal/spec's
// ignore_git_test.go: "*" + "!*/", "docs/**" + "!docs/**/*.md", "a/**"
// matching a itself, "[!a-c]", ...). This package follows git's own code, and
// that test compares it with git on every run.
package gitignore

import "strings"

// Matcher holds the rules of one ignore file at the top of a tree.
type Matcher struct {
	rules []rule
}

type rule struct {
	pattern  string // without "!", the trailing "/" and a leading "/"
	negate   bool   // "!pattern": re-include
	dirOnly  bool   // "pattern/": directories only
	basename bool   // no "/" in the pattern: match the last path element
}

// Parse reads .gitignore text. It never fails: like git, it ignores what
// matches nothing.
func Parse(text string) *Matcher {
	m := &Matcher{}
	text = strings.TrimPrefix(text, "\ufeff") // git skips a UTF-8 BOM
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSuffix(line, "\r")
		if line == "" || line[0] == '#' {
			continue
		}
		line = trimTrailingSpaces(line)
		if line == "" {
			continue
		}
		var r rule
		if line[0] == '!' {
			r.negate = true
			line = line[1:]
		}
		if strings.HasSuffix(line, "/") {
			r.dirOnly = true
			line = line[:len(line)-1]
		}
		if line == "" {
			continue
		}
		r.basename = !strings.Contains(line, "/")
		if !r.basename {
			// A leading slash only anchors: the path is matched from
			// the ignore file's directory either way.
			line = strings.TrimPrefix(line, "/")
		}
		r.pattern = line
		m.rules = append(m.rules, r)
	}
	return m
}

// trimTrailingSpaces drops unescaped trailing spaces (not tabs), as git's
// trim_trailing_spaces does.
func trimTrailingSpaces(s string) string {
	lastSpace := -1
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case ' ':
			if lastSpace < 0 {
				lastSpace = i
			}
		case '\\':
			i++
			if i >= len(s) {
				return s
			}
			lastSpace = -1
		default:
			lastSpace = -1
		}
	}
	if lastSpace >= 0 {
		return s[:lastSpace]
	}
	return s
}

// Match reports whether rel (slash-separated, relative to the ignore file's
// directory) is ignored by the rules themselves. As in git, the last rule
// that matches decides. It does not look at rel's parents: a caller walking
// a tree skips an ignored directory's contents, since git never re-includes
// a file below an ignored directory.
func (m *Matcher) Match(rel string, isDir bool) bool {
	base := rel
	if i := strings.LastIndexByte(rel, '/'); i >= 0 {
		base = rel[i+1:]
	}
	for i := len(m.rules) - 1; i >= 0; i-- {
		r := &m.rules[i]
		if r.dirOnly && !isDir {
			continue
		}
		var ok bool
		if r.basename {
			ok = wildmatch(r.pattern, base, false) == wmMatch
		} else {
			ok = wildmatch(r.pattern, rel, true) == wmMatch
		}
		if ok {
			return !r.negate
		}
	}
	return false
}

// wildmatch results, as in git's wildmatch.c: the two aborts prune the
// search so that a pattern with many stars cannot take exponential time.
const (
	wmMatch = iota
	wmNoMatch
	wmAbortAll
	wmAbortToStarStar
)

// wildmatch matches text against pattern; pathname is git's WM_PATHNAME
// ("*" and "?" do not match "/", "**/" matches any number of directories).
func wildmatch(pattern, text string, pathname bool) int {
	return dowild(pattern, text, pathname)
}

func isGlobSpecial(c byte) bool {
	return c == '*' || c == '?' || c == '[' || c == '\\'
}

// at returns s[i], or 0 past the end (the C string's terminator).
func at(s string, i int) byte {
	if i < len(s) {
		return s[i]
	}
	return 0
}

func dowild(p, text string, pathname bool) int {
	pi, ti := 0, 0
	for ; pi < len(p); pi++ {
		pch := p[pi]
		tch := at(text, ti)
		if tch == 0 && pch != '*' {
			return wmAbortAll
		}
		switch pch {
		case '\\':
			// A backslash makes the next character literal.
			pi++
			pch = at(p, pi)
			if tch != pch {
				return wmNoMatch
			}
		case '?':
			if pathname && tch == '/' {
				return wmNoMatch
			}
		case '*':
			var matchSlash bool
			pi++
			if at(p, pi) == '*' {
				prev := pi - 2
				for at(p, pi) == '*' {
					pi++
				}
				if (prev < 0 || p[prev] == '/') &&
					(pi >= len(p) || p[pi] == '/' || (p[pi] == '\\' && at(p, pi+1) == '/')) {
					// "**/" may match no directory at all: foo/**/bar
					// matches foo/bar.
					if at(p, pi) == '/' && dowild(p[pi+1:], text[ti:], pathname) == wmMatch {
						return wmMatch
					}
					matchSlash = true
				} else {
					matchSlash = !pathname
				}
			} else {
				matchSlash = !pathname
			}
			if pi >= len(p) {
				// A trailing "**" matches everything, a trailing "*"
				// only what holds no more slashes.
				if !matchSlash && strings.IndexByte(text[ti:], '/') >= 0 {
					return wmAbortToStarStar
				}
				return wmMatch
			}
			if !matchSlash && p[pi] == '/' {
				// One star followed by a slash matches the rest of
				// this path element.
				slash := strings.IndexByte(text[ti:], '/')
				if slash < 0 {
					return wmNoMatch
				}
				// The loop's step matches the slash with the pattern's.
				ti += slash
				break
			}
			for {
				tch = at(text, ti)
				if tch == 0 {
					break
				}
				if !isGlobSpecial(p[pi]) {
					// Skip ahead to the literal that follows the star.
					pc := p[pi]
					for tch = at(text, ti); tch != 0 && (matchSlash || tch != '/'); tch = at(text, ti) {
						if tch == pc {
							break
						}
						ti++
					}
					if tch != pc {
						return wmNoMatch
					}
				}
				if m := dowild(p[pi:], text[ti:], pathname); m != wmNoMatch {
					if !matchSlash || m != wmAbortToStarStar {
						return m
					}
				} else if !matchSlash && tch == '/' {
					return wmAbortToStarStar
				}
				ti++
			}
			return wmAbortAll
		case '[':
			pi++
			pch = at(p, pi)
			if pch == '^' {
				pch = '!'
			}
			negated := pch == '!'
			if negated {
				pi++
				pch = at(p, pi)
			}
			var prev byte
			matched := false
			for {
				if pch == 0 {
					return wmAbortAll
				}
				switch {
				case pch == '\\':
					pi++
					pch = at(p, pi)
					if pch == 0 {
						return wmAbortAll
					}
					if tch == pch {
						matched = true
					}
				case pch == '-' && prev != 0 && at(p, pi+1) != 0 && at(p, pi+1) != ']':
					pi++
					pch = p[pi]
					if pch == '\\' {
						pi++
						pch = at(p, pi)
						if pch == 0 {
							return wmAbortAll
						}
					}
					if tch <= pch && tch >= prev {
						matched = true
					}
					pch = 0 // so that prev becomes 0
				case pch == '[' && at(p, pi+1) == ':':
					s := pi + 2
					pi = s
					for at(p, pi) != 0 && p[pi] != ']' {
						pi++
					}
					if at(p, pi) == 0 {
						return wmAbortAll
					}
					n := pi - s - 1
					if n < 0 || p[pi-1] != ':' {
						// No ":]": an ordinary "[" in the set.
						pi = s - 2
						pch = '['
						if tch == pch {
							matched = true
						}
						break
					}
					in, ok := charClass(p[s:s+n], tch)
					if !ok {
						return wmAbortAll // malformed [:class:]
					}
					if in {
						matched = true
					}
					pch = 0
				default:
					if tch == pch {
						matched = true
					}
				}
				prev = pch
				pi++
				pch = at(p, pi)
				if pch == ']' {
					break
				}
			}
			if matched == negated || (pathname && tch == '/') {
				return wmNoMatch
			}
		default:
			if tch != pch {
				return wmNoMatch
			}
		}
		ti++
	}
	if ti < len(text) {
		return wmNoMatch
	}
	return wmMatch
}

// charClass reports whether c is in the POSIX class name (ASCII, as git).
func charClass(name string, c byte) (in, ok bool) {
	isUpper := 'A' <= c && c <= 'Z'
	isLower := 'a' <= c && c <= 'z'
	isDigit := '0' <= c && c <= '9'
	isAlpha := isUpper || isLower
	isPrint := c >= 0x20 && c < 0x7f
	isSpace := c == ' ' || (c >= '\t' && c <= '\r')
	switch name {
	case "alnum":
		return isAlpha || isDigit, true
	case "alpha":
		return isAlpha, true
	case "blank":
		return c == ' ' || c == '\t', true
	case "cntrl":
		return c < 0x20 || c == 0x7f, true
	case "digit":
		return isDigit, true
	case "graph":
		return isPrint && c != ' ', true
	case "lower":
		return isLower, true
	case "print":
		return isPrint, true
	case "punct":
		return isPrint && c != ' ' && !isAlpha && !isDigit, true
	case "space":
		return isSpace, true
	case "upper":
		return isUpper, true
	case "xdigit":
		return isDigit || ('a' <= c && c <= 'f') || ('A' <= c && c <= 'F'), true
	}
	return false, false
}
