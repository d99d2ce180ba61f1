//go:build !linux

package clock

import (
	"errors"
	"time"
)

// System is the system clock; only Linux nodes can set it.
type System struct{}

// Now reads the system clock.
func (System) Now() time.Time { return time.Now() }

// Set is not supported outside Linux.
func (System) Set(time.Time) error { return errors.ErrUnsupported }

// Slew is not supported outside Linux.
func (System) Slew(time.Duration) error { return errors.ErrUnsupported }
