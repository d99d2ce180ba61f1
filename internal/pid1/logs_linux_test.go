package pid1

import (
	"fmt"
	"testing"

	"github.com/nodeboot/nodeboot/internal/logship"
)

func TestShipWriterSplitsTheSupervisorsPrefix(t *testing.T) {
	var got []string
	w := shipWriter{app: "web", add: func(r logship.Record) {
		got = append(got, fmt.Sprintf("%d|%s|%s", r.Stream, r.App, r.Msg))
	}}
	for _, l := range []string{"web: out\n", "web[err]: bad\n", "web[init]: note\n", "web: web: twice\n"} {
		if n, err := w.Write([]byte(l)); n != len(l) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", l, n, err)
		}
	}
	want := []string{"1|web|out", "2|web|bad", "0|web|note", "1|web|web: twice"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("records %q, want %q", got, want)
	}
}
