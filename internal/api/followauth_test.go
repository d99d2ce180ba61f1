package api

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/nodeboot/nodeboot/internal/contract"
)

// fakePull is the fake node's pull credentials: "hunter2" is the one
// password its registry accepts.
type fakePull struct {
	mu        sync.Mutex
	following bool
	stored    *contract.RegistryCredentials
}

func (f *fakeNode) SetPullCredentials(ctx context.Context, c contract.RegistryCredentials) (*contract.FollowAuthResult, error) {
	f.pull.mu.Lock()
	defer f.pull.mu.Unlock()
	if !f.pull.following {
		return nil, fmt.Errorf("%w: nothing to log in to", ErrNotFollowing)
	}
	if c.Password != "hunter2" {
		return nil, fmt.Errorf("%w: 10.0.2.2:5000 said 401", ErrCredentialsRefused)
	}
	f.pull.stored = &c
	return &contract.FollowAuthResult{Registry: "10.0.2.2:5000", Checked: true}, nil
}

func (f *fakeNode) RemovePullCredentials(ctx context.Context) (*contract.FollowAuthResult, error) {
	f.pull.mu.Lock()
	defer f.pull.mu.Unlock()
	if !f.pull.following {
		return nil, fmt.Errorf("%w: nothing to log out of", ErrNotFollowing)
	}
	f.pull.stored = nil
	return &contract.FollowAuthResult{Registry: "10.0.2.2:5000"}, nil
}

// TestFollowAuth: the credentials reach the node, refused ones are not
// stored, and neither the answers nor the log carry the password.
func TestFollowAuth(t *testing.T) {
	var logMu sync.Mutex
	var logs strings.Builder
	h := start(t, Options{Log: func(f string, a ...any) {
		logMu.Lock()
		defer logMu.Unlock()
		fmt.Fprintf(&logs, f+"\n", a...)
	}})
	owner := h.bearer()
	put := func(body string) answer {
		return h.do(t, "PUT", contract.PathFollowAuth, owner, strings.NewReader(body))
	}
	if a := put(`{"username":"pull","password":"hunter2"}`); a.code != http.StatusConflict || !strings.Contains(a.body, "follows no tag") {
		t.Errorf("on a node that follows nothing: %d %s", a.code, a.body)
	}
	h.fake.pull.following = true
	if a := h.do(t, "PUT", contract.PathFollowAuth, "", strings.NewReader(`{"username":"pull","password":"hunter2"}`)); a.code != http.StatusUnauthorized || h.fake.pull.stored != nil {
		t.Errorf("without the owner's token: %d %s", a.code, a.body)
	}
	for _, c := range []struct{ body, want string }{
		{`{}`, "empty"},
		{`{"username":"pull"}`, "no password"},
		{`{"password":"hunter2"}`, "no username"},
		{`{"username":"pull","password":"hunter2","auth":"x"}`, "not a JSON object of"},
		{`{"username":1}`, "not a string"},
		{`{"username":"pull","password":"hunter2"} {}`, "trailing"},
		{`hunter2`, "not a JSON object"},
		{`{"username":"pull","password":"` + strings.Repeat("x", contract.MaxRegistryCredentialsBytes) + `"}`, "over"},
	} {
		a := put(c.body)
		if a.code/100 != 4 || !strings.Contains(a.body, c.want) || (c.want != "over" && strings.Contains(a.body, "hunter2")) {
			t.Errorf("PUT %.60s: %d %s, want a 4xx saying %q", c.body, a.code, a.body, c.want)
		}
	}
	a := put(`{"username":"pull","password":"wrong"}`)
	if a.code != http.StatusUnprocessableEntity || !strings.Contains(a.body, "refused these credentials") || h.fake.pull.stored != nil {
		t.Errorf("refused credentials: %d %s, stored %v", a.code, a.body, h.fake.pull.stored)
	}
	a = put(`{"username":"pull","password":"hunter2"}`)
	if a.code != 200 || !strings.Contains(a.body, `"registry":"10.0.2.2:5000"`) || strings.Contains(a.body, "hunter2") {
		t.Errorf("set: %d %s", a.code, a.body)
	}
	if s := h.fake.pull.stored; s == nil || s.Username != "pull" || s.Password != "hunter2" {
		t.Errorf("stored %+v", s)
	}
	a = h.do(t, "DELETE", contract.PathFollowAuth, owner, nil)
	if a.code != 200 || h.fake.pull.stored != nil {
		t.Errorf("remove: %d %s, stored %v", a.code, a.body, h.fake.pull.stored)
	}
	logMu.Lock()
	defer logMu.Unlock()
	if !strings.Contains(logs.String(), "pull credentials for 10.0.2.2:5000 set") || strings.Contains(logs.String(), "hunter2") {
		t.Errorf("log:\n%s", logs.String())
	}
}

// FuzzParseRegistryCredentials: the body of PUT /v1/follow/auth comes from
// the network; whatever it is, the parser answers without panicking and
// its errors never quote the password.
func FuzzParseRegistryCredentials(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseRegistryCredentials(b)
		if err != nil {
			return
		}
		if c.Empty() {
			t.Fatal("empty credentials accepted")
		}
	})
}
