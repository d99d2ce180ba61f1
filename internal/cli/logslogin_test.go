package cli

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nodeboot/nodeboot/internal/api"
	"github.com/nodeboot/nodeboot/internal/logship/logshiptest"
)

// logsAuth is the node's PUT and DELETE /v1/logs/auth, checking the body
// as a node does.
func (n *testNode) logsAuth(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodDelete {
		n.logsCert = ""
		w.Write([]byte(`{"endpoint":"syslog+tls://10.0.2.2:6514"}`))
		return
	}
	b, _ := io.ReadAll(r.Body)
	if _, err := api.ParseLogsCredentials(b, time.Now()); err != nil {
		apiError(w, http.StatusBadRequest, err.Error())
		return
	}
	n.logsCert = string(b)
	w.Write([]byte(`{"endpoint":"syslog+tls://10.0.2.2:6514","subject":"CN=pi","notAfter":"2027-01-01T00:00:00Z"}`))
}

func TestLogsLogin(t *testing.T) {
	dir, n := project(t, helloPkg)
	p := []string{"--project", dir}
	ca, err := logshiptest.NewCA("logs CA")
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := ca.Issue("pi")
	if err != nil {
		t.Fatal(err)
	}
	_, other, err := ca.Issue("other")
	if err != nil {
		t.Fatal(err)
	}
	files := t.TempDir()
	write := func(name string, b []byte) string {
		f := filepath.Join(files, name)
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	certF, keyF, otherF, junkF := write("pi.pem", cert), write("pi.key", key), write("other.key", other), write("junk", []byte("hello"))

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--cert", certF, "--key", otherF}, "the key does not belong to the certificate"},
		{[]string{"--cert", junkF, "--key", keyF}, "the certificate is not PEM"},
		{[]string{"--cert", certF, "--key", junkF}, "the key is not a PEM private key"},
		{[]string{"--cert", keyF, "--key", certF}, "swapped"},
		{[]string{"--cert", certF}, "--cert and --key are both needed"},
		{[]string{"--cert", filepath.Join(files, "none.pem"), "--key", keyF}, "--cert: stat"},
	} {
		out, err := nodeboot(t, append(append([]string{"logs", "login", "pi"}, c.args...), p...)...)
		if err == nil || !strings.Contains(err.Error(), c.want) || n.logsCert != "" {
			t.Errorf("%v: %v, want %q\n%s", c.args, err, c.want, out)
		}
		if err != nil && strings.Contains(err.Error(), string(key[40:60])) {
			t.Errorf("the error quotes the key: %v", err)
		}
	}
	if len(n.changes) != 0 {
		t.Errorf("bad input reached the node: %v", n.changes)
	}
	out, err := nodeboot(t, append([]string{"logs", "login", "pi", "--cert", certF, "--key", keyF}, p...)...)
	if err != nil || !strings.Contains(out, "client certificate CN=pi (valid until 2027-01-01T00:00:00Z) set on pi (") || !strings.Contains(out, "for its logs to syslog+tls://10.0.2.2:6514") {
		t.Fatalf("login: %v\n%s", err, out)
	}
	if !strings.Contains(n.logsCert, "BEGIN CERTIFICATE") || !strings.Contains(n.logsCert, "PRIVATE KEY") {
		t.Errorf("the node got %q", n.logsCert)
	}
	out, err = nodeboot(t, append([]string{"logs", "logout", "pi"}, p...)...)
	if err != nil || !strings.Contains(out, "removed from pi") || n.logsCert != "" {
		t.Errorf("logout: %v\n%s", err, out)
	}
	// `logs NODE APP` is still the logs.
	if _, err := nodeboot(t, append([]string{"logs", "pi", "-n", "5"}, p...)...); err != nil {
		t.Errorf("logs: %v", err)
	}
}
