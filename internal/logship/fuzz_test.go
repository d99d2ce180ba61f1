package logship

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// FuzzSpool feeds arbitrary bytes to the buffer reader as a segment left
// by an earlier boot, with an arbitrary cursor file: opening and draining
// the buffer must never panic or loop, every readable record comes out
// once, and the unreadable rest is skipped and counted.
func FuzzSpool(f *testing.F) {
	var good []byte
	for i, m := range []string{"hello", "", "wörld"} {
		good = appendRecord(good, Record{Time: time.Unix(int64(i), 5), Stream: Stream(i), App: "web", Msg: m})
	}
	f.Add(good, []byte("1 0 0\n"))
	f.Add(good[:len(good)-3], []byte("1 20 1\n"))
	f.Add(append(good[:10:10], good...), []byte("x"))
	f.Fuzz(func(t *testing.T, seg, cursor []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, segName(1)), seg, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, cursorFile), cursor, 0o600); err != nil {
			t.Fatal(err)
		}
		sp, err := openSpool(dir, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		defer sp.close()
		before := sp.stats()
		if before.bytes < 0 || before.lines < 0 || before.bytes > int64(len(seg)) {
			t.Fatalf("stats %+v for %d bytes", before, len(seg))
		}
		got := int64(0)
		for i := 0; ; i++ {
			if i > len(seg)+2 {
				t.Fatal("the reader does not advance")
			}
			recs, pos, err := sp.next(64)
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) == 0 {
				break
			}
			got += int64(len(recs))
			if err := sp.commit(pos); err != nil {
				t.Fatal(err)
			}
		}
		after := sp.stats()
		if got != before.lines || after.lines != 0 || after.bytes != 0 {
			t.Fatalf("read %d of %d lines; left %+v", got, before.lines, after)
		}
		if got == 0 && after.skipped == 0 && before.bytes > 0 {
			t.Fatalf("%d bytes neither read nor skipped", before.bytes)
		}
	})
}
