//go:build !linux

package kernelbuild

import "errors"

func lock(path string) (func(), error) {
	return nil, errors.New("building the kernel needs a Debian-based Linux host with linux-source: use --kernel gokrazy")
}
