// Command vattnctl is the vattn admin tool: simulate KV-cache memory, map and
// benchmark GPU pages, trace mapping latency, and install the patched driver.
package main

import (
	"os"

	"github.com/vattn/vattn/internal/cmd/root"
)

func main() { os.Exit(root.Main(os.Args[1:], os.Stdout, os.Stderr)) }
