// Command localkms serves local-kms (github.com/nsmithuk/local-kms, an AWS
// KMS emulator) on a loopback port of its own choosing, for meshpki's
// tests: local-kms's own main listens on every interface. It prints
// "listening on ADDR" once it accepts connections, and keeps its keys in
// the directory -data names.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"

	"github.com/nsmithuk/local-kms/src"
	"github.com/nsmithuk/local-kms/src/config"
	"github.com/nsmithuk/local-kms/src/data"
)

func main() {
	dir := flag.String("data", "", "directory for the key database")
	flag.Parse()
	if *dir == "" {
		log.Fatal("localkms: -data is required")
	}
	config.AWSAccountId = "111122223333"
	config.AWSRegion = "eu-west-1"
	config.DatabasePath = *dir
	db := data.NewDatabase(*dir)
	defer db.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Fprintf(os.Stdout, "listening on %s\n", ln.Addr())
	log.Fatal(http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		src.HandleRequest(w, r, db)
	})))
}
