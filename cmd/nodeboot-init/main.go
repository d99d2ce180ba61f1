//go:build linux

// Command nodeboot-init is PID 1 of a nodeboot image.
package main

import "github.com/nodeboot/nodeboot/internal/pid1"

func main() { pid1.Main() }
