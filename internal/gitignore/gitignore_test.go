package gitignore

import "testing"

// TestWildmatch holds cases of git's own t3070-wildmatch table (the
// comparison with git itself is internal/spec's TestIgnoreMatchesGit).
func TestWildmatch(t *testing.T) {
	tests := []struct {
		pattern, text string
		pathname      bool
		want          bool
	}{
		{"foo", "foo", true, true},
		{"f*", "foo/bar", true, false},
		{"f*", "foo/bar", false, true},
		{"foo/**/bar", "foo/bar", true, true},
		{"foo/**/bar", "foo/a/b/bar", true, true},
		{"**/foo", "a/b/foo", true, true},
		{"**/foo", "foo", true, true},
		{"foo/**", "foo", true, false},
		{"foo/**", "foo/a/b", true, true},
		{"*/foo", "a/b/foo", true, false},
		{"[!a-c].c", "d.c", true, true},
		{"[^a-c].c", "b.c", true, false},
		{"[]a]", "]", true, true},
		{"[[:digit:]]x", "7x", true, true},
		{"[[:nope:]]", "a", true, false},
		{"\\*", "*", true, true},
		{"\\*", "a", true, false},
		{"a?c", "a/c", true, false},
		{"a[/]c", "a/c", true, false},
		{"-*-*-*-*-*-*-12-*-*-*-m-*-*-*", "-adobe-courier-bold-o-normal--12-120-75-75-/-70-iso8859-1", true, false},
		{"**/*a*b*g*n*t", "abcd/abcdefg/abcdefghijk/abcdefghijklmnop.txtz", true, false},
	}
	for _, tc := range tests {
		if got := wildmatch(tc.pattern, tc.text, tc.pathname) == wmMatch; got != tc.want {
			t.Errorf("wildmatch(%q, %q, pathname=%v) = %v, want %v", tc.pattern, tc.text, tc.pathname, got, tc.want)
		}
	}
}

func TestParse(t *testing.T) {
	m := Parse("\ufeff# c\n\\#x\n*.log  \nkeep\\ \n!keep.log\r\nbuild/\n/top\n")
	tests := []struct {
		rel   string
		isDir bool
		want  bool
	}{
		{"#x", false, true},
		{"a.log", false, true},
		{"d/a.log", false, true},
		{"keep.log", false, false},
		{"keep ", false, true},
		{"build", true, true},
		{"build", false, false},
		{"top", false, true},
		{"d/top", false, false},
		{"# c", false, false},
	}
	for _, tc := range tests {
		if got := m.Match(tc.rel, tc.isDir); got != tc.want {
			t.Errorf("Match(%q, dir=%v) = %v, want %v", tc.rel, tc.isDir, got, tc.want)
		}
	}
}

// FuzzMatch: an ignore file comes with the app (often a cloned repository);
// no text may make the matcher panic or run away.
func FuzzMatch(f *testing.F) {
	f.Add("*.log\n!keep.log\n", "x/keep.log")
	f.Add("**/a/**/b*c*d*e\n", "a/a/a/a/bxcxdxe")
	f.Add("[[:alpha:]\n[!]\n\\", "[")
	f.Fuzz(func(t *testing.T, text, rel string) {
		m := Parse(text)
		m.Match(rel, false)
		m.Match(rel, true)
	})
}
