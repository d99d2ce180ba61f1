package build

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nodeboot/nodeboot/internal/contract"
	"github.com/nodeboot/nodeboot/internal/logship/logshiptest"
	"github.com/nodeboot/nodeboot/internal/spec"
)

func TestLogsFiles(t *testing.T) {
	dir := t.TempDir()
	ca, err := logshiptest.NewCA("logs CA")
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := ca.Issue("node")
	if err != nil {
		t.Fatal(err)
	}
	_, otherKey, err := ca.Issue("other")
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("ca.pem", ca.PEM)
	write("c.pem", cert)
	write("k.pem", key)
	write("other.key", otherKey)
	write("junk.pem", []byte("not pem"))

	remote := func(r spec.RemoteLogs) *spec.LogsConfig { return &spec.LogsConfig{Remote: &r} }
	files, err := logsFiles(dir, remote(spec.RemoteLogs{URL: "syslog+tls://h", CA: "ca.pem", Cert: "c.pem", Key: filepath.Join(dir, "k.pem")}))
	if err != nil {
		t.Fatal(err)
	}
	if string(files[contract.LogsCA]) != string(ca.PEM) || string(files[contract.LogsClientCert]) != string(cert) || string(files[contract.LogsClientKey]) != string(key) {
		t.Errorf("files %v", files)
	}
	if files, err := logsFiles(dir, nil); files != nil || err != nil {
		t.Errorf("no logs: %v %v", files, err)
	}
	for _, tc := range []struct {
		r    spec.RemoteLogs
		want string
	}{
		{spec.RemoteLogs{CA: "missing.pem"}, "nodeboot.json logs.remote.ca: open " + filepath.Join(dir, "missing.pem") + ": no such file or directory; name a PEM file, relative to " + dir},
		{spec.RemoteLogs{CA: "junk.pem"}, "logs.remote.ca: junk.pem holds no PEM certificate"},
		{spec.RemoteLogs{CA: "ca.pem", Cert: "c.pem", Key: "other.key"}, "logs.remote.cert and key: tls: private key does not match public key; give the client certificate and its own private key"},
		{spec.RemoteLogs{CA: "ca.pem", Cert: "c.pem", Key: "nokey"}, "logs.remote.key: open"},
	} {
		_, err := logsFiles(dir, remote(tc.r))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.r, err, tc.want)
		}
	}
}
