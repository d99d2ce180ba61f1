//go:build !linux

package netconf

import (
	"context"
	"errors"
	"time"
)

// LoopbackUp is only implemented on Linux.
func LoopbackUp() error { return errors.ErrUnsupported }

// FirstEthernet is only implemented on Linux.
func FirstEthernet() (string, error) { return "", errors.ErrUnsupported }

// Start is only implemented on Linux.
func Start(ctx context.Context, cfg Config) (*State, error) { return nil, errors.ErrUnsupported }

func setSystemClock(time.Time) error { return errors.ErrUnsupported }
