package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A value the node would refuse is refused before anything is sent.
func TestSecretSetBadInput(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big")
	os.WriteFile(big, bytes.Repeat([]byte("x"), 64<<10+1), 0o600)
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o600)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"secret", "set", "local", "api", "db", "--file", big}, "is over 65536 bytes"},
		{[]string{"secret", "set", "local", "api", "db", "--file", empty}, "is empty"},
		{[]string{"secret", "set", "local", "api", "db", "--file", filepath.Join(dir, "missing")}, "no such file"},
	} {
		var out, errb bytes.Buffer
		err := Run(context.Background(), tc.args, &out, &errb)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
}
