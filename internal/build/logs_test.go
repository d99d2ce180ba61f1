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
	write := func(name string, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("ca.pem", ca.PEM)
	write("junk.pem", []byte("not pem"))

	remote := func(r spec.RemoteLogs) *spec.LogsConfig { return &spec.LogsConfig{Remote: &r} }
	files, err := logsFiles(dir, remote(spec.RemoteLogs{URL: "syslog+tls://h", CA: filepath.Join(dir, "ca.pem")}))
	if err != nil {
		t.Fatal(err)
	}
	if string(files[contract.LogsCA]) != string(ca.PEM) || len(files) != 1 {
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
	} {
		_, err := logsFiles(dir, remote(tc.r))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.r, err, tc.want)
		}
	}
}
