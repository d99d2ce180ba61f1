package pid1

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"

	"github.com/nodeboot/nodeboot/internal/api"
	"github.com/nodeboot/nodeboot/internal/bundle"
	"github.com/nodeboot/nodeboot/internal/deploy"
	"github.com/nodeboot/nodeboot/internal/store"
)

// TestDeployError: each failure of a transaction answers with the status
// that tells the owner what to do: 507 for a full disk, 500 for a failing
// one, 400 for a bundle this node will not run, 409 busy, 422 unhealthy.
func TestDeployError(t *testing.T) {
	sentinels := []error{api.ErrNotFound, api.ErrBusy, api.ErrBadBundle, api.ErrNoRoom, api.ErrNoPrevious}
	for _, c := range []struct {
		name string
		err  error
		want error // nil: none of the sentinels (500)
	}{
		{"disk full", fmt.Errorf("%w: no room: %w", deploy.ErrDiskFull, syscall.ENOSPC), api.ErrNoRoom},
		{"no store", fmt.Errorf("%w: none", deploy.ErrNoStore), api.ErrNoRoom},
		{"I/O error", fmt.Errorf("%w: failing: %w", deploy.ErrIO, syscall.EIO), nil},
		{"busy", fmt.Errorf("%w: a deploy", deploy.ErrBusy), api.ErrBusy},
		{"no previous", fmt.Errorf("%w: none", deploy.ErrNoPrevious), api.ErrNoPrevious},
		{"refused", fmt.Errorf("%w: node >=99", deploy.ErrRefused), api.ErrBadBundle},
		{"digest", fmt.Errorf("%w: mismatch", store.ErrDigest), api.ErrBadBundle},
		{"unsafe", fmt.Errorf("%w: ../x", bundle.ErrUnsafe), api.ErrBadBundle},
		{"not recorded", fmt.Errorf("%w: EROFS", deploy.ErrNotRecorded), nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := deployError(c.err)
			for _, s := range sentinels {
				if errors.Is(got, s) != (s == c.want) {
					t.Errorf("deployError(%v) = %v: errors.Is %v is %v", c.err, got, s, errors.Is(got, s))
				}
			}
			if got.Error() == "" || !strings.Contains(got.Error(), c.err.Error()) {
				t.Errorf("the answer %q lost the reason %q", got, c.err)
			}
		})
	}
	ue := &deploy.UnhealthyError{Msg: "version x did not become healthy", Logs: []string{"boom"}}
	var aue *api.UnhealthyError
	if got := deployError(fmt.Errorf("deploying: %w", ue)); !errors.As(got, &aue) || aue.Msg != ue.Msg || len(aue.Logs) != 1 {
		t.Errorf("an unhealthy version: %v", got)
	}
}
