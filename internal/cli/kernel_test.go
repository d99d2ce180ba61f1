package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestKernelBuildBadInput(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"kernel", "build", "--profile", "arm"}, ExitUsage, `unknown kernel profile "arm": use one of pc, vm`},
		{[]string{"kernel", "build", "extra"}, ExitUsage, "see 'nodeboot kernel build --help'"},
	} {
		var out bytes.Buffer
		code := Execute(context.Background(), tc.args, &out, &out)
		if code != tc.code || !strings.Contains(out.String(), tc.want) {
			t.Errorf("%v: exit %d, %q; want exit %d and %q", tc.args, code, out.String(), tc.code, tc.want)
		}
	}
}

func TestKernelFromEnvironment(t *testing.T) {
	t.Setenv("NODEBOOT_KERNEL", "nodeboot-vm")
	f := buildFlags{}
	if got := f.kernelName(); got != "nodeboot-vm" {
		t.Errorf("NODEBOOT_KERNEL: kernel %q", got)
	}
	f.kernel = "gokrazy"
	if got := f.kernelName(); got != "gokrazy" {
		t.Errorf("--kernel over NODEBOOT_KERNEL: kernel %q", got)
	}
}
