// Command nodeboot builds and runs Node.js apps as their own operating system.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/nodeboot/nodeboot/internal/cli"
)

func main() {
	if err := cli.Run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "nodeboot:", err)
		os.Exit(1)
	}
}
