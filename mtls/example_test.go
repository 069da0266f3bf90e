package mtls_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/meshpki/meshpki/mtls"
)

// Two services in one trust domain: api serves mTLS and admits web alone;
// web calls it and expects api. In a real service the Holder is filled by
// mtls.WatchWorkloadAPI from the local agent; here a throwaway CA stands in.
func Example() {
	ca := newCA()
	api, web := mtls.NewHolder(), mtls.NewHolder()
	api.Store(ca.identity("/ns/api"))
	web.Store(ca.identity("/ns/web"))

	allowWeb, _ := mtls.Allow("spiffe://example.test/ns/web")
	srv := &http.Server{
		TLSConfig: mtls.ServerConfig(api, allowWeb, mtls.Options{}),
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			peer, _ := mtls.PeerOf(*r.TLS)
			fmt.Fprintf(w, "hello, %s", peer.ID)
		}),
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go srv.ServeTLS(ln, "", "") // the certificate comes from the Holder
	defer srv.Close()

	expectAPI, _ := mtls.Allow("spiffe://example.test/ns/api")
	transport := &http.Transport{TLSClientConfig: mtls.ClientConfig(web, expectAPI, mtls.Options{})}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport}
	resp, err := client.Get("https://" + ln.Addr().String() + "/")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(string(body))

	// A rotation is one Store: the next handshake uses the new SVID.
	web.Store(ca.identity("/ns/web"))
	fmt.Println("rotations:", web.Rotations())
	// Output:
	// hello, spiffe://example.test/ns/web
	// rotations: 1
}

// ca is a throwaway root for the trust domain example.test.
type ca struct {
	root *x509.Certificate
	key  crypto.Signer
	n    int64
}

func newCA() *ca {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, URIs: []*url.URL{{Scheme: "spiffe", Host: "example.test"}}}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	root, _ := x509.ParseCertificate(der)
	return &ca{root: root, key: key, n: 1}
}

// identity issues an X509-SVID for path.
func (c *ca) identity(path string) *mtls.Identity {
	c.n++
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(c.n), NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs: []*url.URL{{Scheme: "spiffe", Host: "example.test", Path: path}}}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, c.root, key.Public(), c.key)
	leaf, _ := x509.ParseCertificate(der)
	id, err := mtls.NewIdentity([]*x509.Certificate{leaf}, key, map[spiffeid.TrustDomain][]*x509.Certificate{
		spiffeid.RequireTrustDomainFromString("example.test"): {c.root}})
	if err != nil {
		panic(err)
	}
	return id
}
