package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nodeboot/nodeboot/internal/contract"
	"github.com/nodeboot/nodeboot/internal/ospayload"
	"github.com/nodeboot/nodeboot/internal/update"
)

// fakeUpdater stands in for update.Updater (whose own tests drive the
// state machine): it records what the route gave it and fails as told.
type fakeUpdater struct {
	mu       sync.Mutex
	err      error
	got      []byte
	opts     update.InstallOptions
	rebooted chan struct{}
}

func (f *fakeUpdater) Install(ctx context.Context, r io.Reader, o update.InstallOptions) (*update.Armed, error) {
	b, err := io.ReadAll(r)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.got, f.opts = b, o
	if err != nil {
		return nil, err
	}
	if f.err != nil {
		return nil, f.err
	}
	return &update.Armed{Slot: "b", Image: update.Image{ID: "new", Version: 7}, From: update.Image{ID: "old"}, Entry: "nodeboot-b+3.conf"}, nil
}

func (f *fakeUpdater) Offset(h *ospayload.Header) int64 { return 0 }

func (f *fakeUpdater) RebootIntoTrial() error {
	close(f.rebooted)
	return nil
}

type updateNode struct {
	*fakeNode
	u OSUpdater
}

func (n updateNode) OSUpdater() OSUpdater { return n.u }

func TestUpdateRoute(t *testing.T) {
	h := start(t, Options{})
	f := &fakeUpdater{rebooted: make(chan struct{})}
	h.srv.node = updateNode{h.fake, f}

	a := h.do(t, "PUT", contract.PathUpdate+"?from=12&allowDowngrade=1", h.bearer(), strings.NewReader("payload bytes"))
	if a.code != http.StatusAccepted {
		t.Fatalf("PUT %s: %d %s", contract.PathUpdate, a.code, a.body)
	}
	var acc contract.UpdateAccepted
	if err := json.Unmarshal([]byte(a.body), &acc); err != nil || acc.Slot != "b" || acc.Image.ID != "new" || acc.From.ID != "old" {
		t.Errorf("answer %s (%v)", a.body, err)
	}
	if string(f.got) != "payload bytes" || f.opts.From != 12 || !f.opts.AllowDowngrade {
		t.Errorf("the updater got %q %+v", f.got, f.opts)
	}
	select {
	case <-f.rebooted:
	case <-time.After(time.Minute):
		t.Fatal("no reboot into the trial after the 202")
	}

	for _, c := range []struct {
		err  error
		code int
	}{
		{fmt.Errorf("%w: key x", ospayload.ErrUntrusted), 403},
		{fmt.Errorf("%w: chunk 3", ospayload.ErrCorrupt), 422},
		{fmt.Errorf("%w", ospayload.ErrBadSignature), 422},
		{fmt.Errorf("%w: amd64", update.ErrArch), 422},
		{fmt.Errorf("%w: version 3", update.ErrDowngrade), 409},
		{update.ErrBusy, 409},
		{fmt.Errorf("%w: initramfs", update.ErrNoSlots), 409},
		{&update.TooLargeError{Slot: "b", RootFS: 300 << 20, SlotSize: 256 << 20}, 413},
		{fmt.Errorf("%w: at 4096", update.ErrResume), 416},
	} {
		f.err = c.err
		a := h.do(t, "PUT", contract.PathUpdate, h.bearer(), strings.NewReader("x"))
		if a.code != c.code || !strings.Contains(a.body, jsonEscape(c.err.Error())) {
			t.Errorf("%v: %d %s, want %d with the error's text", c.err, a.code, a.body, c.code)
		}
	}
	if a := h.do(t, "PUT", contract.PathUpdate+"?from=-1", h.bearer(), strings.NewReader("x")); a.code != 400 {
		t.Errorf("from=-1: %d %s", a.code, a.body)
	}
}

func jsonEscape(s string) string {
	b, _ := json.Marshal(s)
	return strings.Trim(string(b), `"`)
}

// A node without an updater (the API's own fake, an initramfs node whose
// PID 1 has none) answers 409 naming what to do.
func TestUpdateWithoutSlots(t *testing.T) {
	h := start(t, Options{})
	a := h.do(t, "PUT", contract.PathUpdate, h.bearer(), strings.NewReader("x"))
	if a.code != http.StatusConflict || !strings.Contains(a.body, "--format disk") {
		t.Errorf("%d %s", a.code, a.body)
	}
}
