// Command meshpki is a private PKI for microservices in one binary: the CA
// server, the admin and client CLI, and (later) the node agent, sidecar proxy
// and scanner. See the README for the two commands that get you started.
package main

import (
	"os"

	"github.com/meshpki/meshpki/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
