package api

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/nodeboot/nodeboot/internal/contract"
)

// fakeSecrets is the fake node's secret store.
type fakeSecrets struct {
	mu sync.Mutex
	m  map[string]string // app/name → value
}

func (f *fakeNode) SetSecret(ctx context.Context, app, name string, value []byte) error {
	if !f.has(app) {
		return fmt.Errorf("%w: no app %q", ErrNotFound, app)
	}
	if strings.HasPrefix(name, ".") {
		return fmt.Errorf("%w: name %q", ErrBadSecret, name)
	}
	f.secrets.mu.Lock()
	defer f.secrets.mu.Unlock()
	if f.secrets.m == nil {
		f.secrets.m = map[string]string{}
	}
	f.secrets.m[app+"/"+name] = string(value)
	return nil
}

func (f *fakeNode) Secrets(ctx context.Context, app string) ([]string, error) {
	f.secrets.mu.Lock()
	defer f.secrets.mu.Unlock()
	names := []string{}
	for k := range f.secrets.m {
		if a, n, _ := strings.Cut(k, "/"); a == app {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names, nil
}

func (f *fakeNode) RemoveSecret(ctx context.Context, app, name string) error {
	f.secrets.mu.Lock()
	defer f.secrets.mu.Unlock()
	if _, ok := f.secrets.m[app+"/"+name]; !ok {
		return fmt.Errorf("%w: app %s has no secret %q", ErrNotFound, app, name)
	}
	delete(f.secrets.m, app+"/"+name)
	return nil
}

func TestSecrets(t *testing.T) {
	h := start(t, Options{})
	owner := h.bearer()
	a := h.do(t, "PUT", "/v1/apps/hello/secrets/db", owner, strings.NewReader("hunter2"))
	if a.code != 200 || strings.Contains(a.body, "hunter2") {
		t.Fatalf("set: %d %s", a.code, a.body)
	}
	a = h.do(t, "GET", "/v1/apps/hello/secrets", owner, nil)
	if a.code != 200 || !strings.Contains(a.body, `"names":["db"]`) || strings.Contains(a.body, "hunter2") {
		t.Errorf("list: %d %s", a.code, a.body)
	}
	a = h.do(t, "PUT", "/v1/apps/hello/secrets/big", owner, strings.NewReader(strings.Repeat("x", contract.MaxSecretBytes+1)))
	if a.code != http.StatusRequestEntityTooLarge || !strings.Contains(a.body, "65536") {
		t.Errorf("too large: %d %s", a.code, a.body)
	}
	a = h.do(t, "PUT", "/v1/apps/hello/secrets/.x", owner, strings.NewReader("v"))
	if a.code != http.StatusBadRequest {
		t.Errorf("bad name: %d %s", a.code, a.body)
	}
	a = h.do(t, "PUT", "/v1/apps/ghost/secrets/db", owner, strings.NewReader("v"))
	if a.code != http.StatusNotFound {
		t.Errorf("no such app: %d %s", a.code, a.body)
	}
	a = h.do(t, "DELETE", "/v1/apps/hello/secrets/db", owner, nil)
	if a.code != 200 {
		t.Errorf("remove: %d %s", a.code, a.body)
	}
	a = h.do(t, "DELETE", "/v1/apps/hello/secrets/db", owner, nil)
	if a.code != http.StatusNotFound || !strings.Contains(a.body, "no secret") {
		t.Errorf("remove again: %d %s", a.code, a.body)
	}
}
