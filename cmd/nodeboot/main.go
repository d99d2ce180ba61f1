// Command nodeboot builds and runs Node.js apps as their own operating system.
package main

import (
	"os"

	"github.com/nodeboot/nodeboot/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
