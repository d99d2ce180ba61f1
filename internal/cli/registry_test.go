package cli

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nodeboot/nodeboot/internal/api"
	"github.com/nodeboot/nodeboot/internal/contract"
)

// followAuth is the node's PUT/DELETE /v1/follow/auth: it parses the body
// as a node does and accepts only the password "s3cret".
func (n *testNode) followAuth(w http.ResponseWriter, r *http.Request) {
	if n.status.Follow == nil {
		apiError(w, http.StatusConflict, "this node follows no tag")
		return
	}
	if r.Method == http.MethodDelete {
		n.pull = ""
		fmt.Fprint(w, `{"registry":"10.0.2.2:5000"}`)
		return
	}
	b, _ := io.ReadAll(r.Body)
	c, err := api.ParseRegistryCredentials(b)
	if err != nil {
		apiError(w, http.StatusBadRequest, err.Error())
		return
	}
	if c.Password != "s3cret" {
		apiError(w, http.StatusUnprocessableEntity, "the registry refused these credentials: 10.0.2.2:5000 answered 401 Unauthorized; nothing was stored")
		return
	}
	n.pull = string(b)
	fmt.Fprint(w, `{"registry":"10.0.2.2:5000","checked":true}`)
}

func registryLogin(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	root := newRoot(&out, &out)
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(append([]string{"registry"}, args...))
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

// TestRegistryLogin: the followed registry's credentials go from the
// Docker config (or stdin) to the node; what the node or the config lacks
// is said, and a refused password is not kept.
func TestRegistryLogin(t *testing.T) {
	dir, n := project(t, helloPkg)
	p := []string{"--project", dir}
	dc := t.TempDir()
	t.Setenv("DOCKER_CONFIG", dc)
	config := func(user, pw string) {
		auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + pw))
		os.WriteFile(filepath.Join(dc, "config.json"), []byte(`{"auths": {"10.0.2.2:5000": {"auth": "`+auth+`"}}}`), 0o600)
	}
	config("puller", "s3cret")

	out, err := registryLogin(t, "", append([]string{"login", "pi"}, p...)...)
	if err == nil || !strings.Contains(err.Error(), "follows no tag") {
		t.Errorf("a node that follows nothing: %v\n%s", err, out)
	}
	n.status.Follow = &contract.FollowStatus{Ref: "10.0.2.2:5000/shop:stable", State: "registry unreachable"}

	out, err = registryLogin(t, "", append([]string{"login", "pi"}, p...)...)
	if err != nil || !strings.Contains(out, "pull credentials for 10.0.2.2:5000 set on pi") || !strings.Contains(out, "accepted") {
		t.Fatalf("login from the Docker config: %v\n%s", err, out)
	}
	if !strings.Contains(n.pull, `"username":"puller"`) || !strings.Contains(n.pull, `"password":"s3cret"`) {
		t.Errorf("the node got %s", n.pull)
	}
	if strings.Contains(out, "s3cret") {
		t.Errorf("the output shows the password:\n%s", out)
	}

	config("puller", "wrong")
	n.pull = ""
	out, err = registryLogin(t, "", append([]string{"login", "pi"}, p...)...)
	if err == nil || !strings.Contains(err.Error(), "refused these credentials") || !strings.Contains(err.Error(), "10.0.2.2:5000") || n.pull != "" {
		t.Errorf("wrong credentials: %v\n%s", err, out)
	}

	out, err = registryLogin(t, "s3cret\n", append([]string{"login", "pi", "--username", "puller", "--password-stdin"}, p...)...)
	if err != nil || !strings.Contains(n.pull, `"password":"s3cret"`) {
		t.Errorf("login from stdin: %v\n%s (node got %s)", err, out, n.pull)
	}

	for _, c := range []struct {
		stdin string
		args  []string
		want  string
	}{
		{"", []string{"login", "pi", "--username", "puller"}, "go together"},
		{"", []string{"login", "pi", "--username", "puller", "--password-stdin"}, "is empty"},
		{"", []string{"login", "pi", "--docker-config-name", "registry.example.com"}, "has no credentials for registry.example.com"},
	} {
		out, err := registryLogin(t, c.stdin, append(c.args, p...)...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("registry %s: %v\n%s\nwant an error saying %q", strings.Join(c.args, " "), err, out, c.want)
		}
	}

	out, err = registryLogin(t, "", append([]string{"logout", "pi"}, p...)...)
	if err != nil || n.pull != "" || !strings.Contains(out, "removed") {
		t.Errorf("logout: %v\n%s", err, out)
	}
}
