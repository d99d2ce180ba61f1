package image

import (
	"bytes"
	"context"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// The two parts of a split tree, unpacked one after the other, give what
// the whole tree's archive gives: every entry with its mode and owner, the
// directories above each part's entries included.
func TestSplitPartsUnpackToTheWhole(t *testing.T) {
	tr := sampleTree(t)
	mt := time.Unix(1700000000, 0)
	var whole bytes.Buffer
	if err := WriteCPIO(tr, &whole, mt); err != nil {
		t.Fatal(err)
	}
	want := readCPIO(t, &whole)

	base, rest := tr.Split(func(e *Entry) bool {
		return !strings.HasPrefix(e.Path, "/apps/") && !strings.HasPrefix(e.Path, "/etc/")
	})
	for _, c := range []Compression{None, Zstd, Gzip} {
		t.Run(string(c), func(t *testing.T) {
			var a, b bytes.Buffer
			sa, err := WriteInitramfsTo(context.Background(), base, &a, c, mt)
			if err != nil {
				t.Fatal(err)
			}
			sb, err := WriteInitramfsTo(context.Background(), rest, &b, c, mt)
			if err != nil {
				t.Fatal(err)
			}
			if sa.Compressed != int64(a.Len()) || sb.Compressed != int64(b.Len()) {
				t.Fatalf("stats %+v %+v for %d and %d bytes", sa, sb, a.Len(), b.Len())
			}
			// Concatenated compressed parts decode as the concatenated
			// archives (multi-frame zstd, multi-member gzip), as the
			// kernel reads them.
			cat := io.MultiReader(bytes.NewReader(a.Bytes()), bytes.NewReader(b.Bytes()))
			var plain bytes.Buffer
			switch c {
			case Zstd:
				zr, err := zstd.NewReader(cat)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := io.Copy(&plain, zr); err != nil {
					t.Fatal(err)
				}
			case Gzip:
				gr, err := gzip.NewReader(cat)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := io.Copy(&plain, gr); err != nil {
					t.Fatal(err)
				}
			default:
				io.Copy(&plain, cat)
			}
			if int64(plain.Len()) != sa.Uncompressed+sb.Uncompressed {
				t.Fatalf("decoded %d bytes, stats say %d+%d", plain.Len(), sa.Uncompressed, sb.Uncompressed)
			}
			first := readCPIO(t, bytes.NewReader(plain.Bytes()[:sa.Uncompressed]))
			second := readCPIO(t, bytes.NewReader(plain.Bytes()[sa.Uncompressed:]))
			if _, ok := first["apps/a/x"]; ok {
				t.Error("the base part holds an app file")
			}
			if _, ok := second["usr/bin/node"]; ok {
				t.Error("the app part holds node")
			}
			got := first
			for k, v := range second {
				got[k] = v
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("parts unpack to\n%v\nwhole archive:\n%v", got, want)
			}
		})
	}
}
