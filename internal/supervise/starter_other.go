//go:build !linux

package supervise

import "errors"

// Services only run on the Linux image; elsewhere the package compiles (for
// the portable parts and for tools that import it) but cannot start anything.
func defaultStarter() Starter { return unsupportedStarter{} }

type unsupportedStarter struct{}

func (unsupportedStarter) Start(StartSpec) (Process, error) {
	return nil, errors.New("supervise: starting processes is only supported on linux")
}
