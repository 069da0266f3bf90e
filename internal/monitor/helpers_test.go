package monitor

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"
)

// pki is a root and an intermediate that issue the test leaves.
type pki struct {
	root, inter       *x509.Certificate
	rootKey, interKey crypto.Signer
	roots             *x509.CertPool
}

var serialCounter struct {
	sync.Mutex
	n int64
}

func nextSerial() *big.Int {
	serialCounter.Lock()
	defer serialCounter.Unlock()
	serialCounter.n++
	return big.NewInt(1000 + serialCounter.n)
}

func ecKey(t testing.TB) crypto.Signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func sign(t testing.TB, tmpl, parent *x509.Certificate, pub crypto.PublicKey, parentKey crypto.Signer) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newPKI(t testing.TB) *pki {
	t.Helper()
	now := time.Now()
	p := &pki{rootKey: ecKey(t), interKey: ecKey(t)}
	rootTmpl := &x509.Certificate{SerialNumber: nextSerial(), Subject: pkix.Name{CommonName: "Test Root"},
		NotBefore: now.Add(-5 * 365 * 24 * time.Hour), NotAfter: now.Add(10 * 365 * 24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	p.root = sign(t, rootTmpl, rootTmpl, p.rootKey.Public(), p.rootKey)
	interTmpl := &x509.Certificate{SerialNumber: nextSerial(), Subject: pkix.Name{CommonName: "Test Intermediate"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(5 * 365 * 24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, MaxPathLenZero: true}
	interTmpl.NotBefore = now.Add(-365 * 24 * time.Hour)
	p.inter = sign(t, interTmpl, p.root, p.interKey.Public(), p.rootKey)
	p.roots = x509.NewCertPool()
	p.roots.AddCert(p.root)
	return p
}

// leafSpec describes a test leaf.
type leafSpec struct {
	name                string        // DNS name (default svc.test)
	notBefore, notAfter time.Duration // from now (default -30d, +60d)
	selfSigned          bool
	rsaBits             int // RSA key of this size instead of P-256
	sigAlg              x509.SignatureAlgorithm
}

// leaf issues a leaf from the intermediate (or itself) and returns its
// chain as a server would present it (leaf, intermediate) and its key.
func (p *pki) leaf(t testing.TB, s leafSpec) ([]*x509.Certificate, crypto.Signer) {
	t.Helper()
	if s.name == "" {
		s.name = "svc.test"
	}
	if s.notBefore == 0 && s.notAfter == 0 {
		s.notBefore, s.notAfter = -30*24*time.Hour, 60*24*time.Hour
	}
	var key crypto.Signer = ecKey(t)
	if s.rsaBits != 0 {
		k, err := rsa.GenerateKey(rand.Reader, s.rsaBits)
		if err != nil {
			t.Fatal(err)
		}
		key = k
	}
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: nextSerial(), Subject: pkix.Name{CommonName: s.name}, DNSNames: []string{s.name},
		NotBefore: now.Add(s.notBefore), NotAfter: now.Add(s.notAfter),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		SignatureAlgorithm: s.sigAlg}
	if s.selfSigned {
		tmpl.SubjectKeyId, tmpl.AuthorityKeyId = []byte{1, 2, 3, 4}, []byte{1, 2, 3, 4} // as zlint wants
		return []*x509.Certificate{sign(t, tmpl, tmpl, key.Public(), key)}, key
	}
	signer := p.interKey
	if s.sigAlg == x509.SHA1WithRSA {
		// SHA-1 with RSA needs an RSA issuer: a second intermediate.
		rk, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		interTmpl := &x509.Certificate{SerialNumber: nextSerial(), Subject: pkix.Name{CommonName: "Test RSA Intermediate"},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(5 * 365 * 24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
			KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, MaxPathLenZero: true}
		inter := sign(t, interTmpl, p.root, rk.Public(), p.rootKey)
		return []*x509.Certificate{sign(t, tmpl, inter, key.Public(), rk), inter}, key
	}
	return []*x509.Certificate{sign(t, tmpl, p.inter, key.Public(), signer), p.inter}, key
}

// serveTLS starts a TLS server on loopback presenting chain; it stops when
// the test ends.
func serveTLS(t testing.TB, chain []*x509.Certificate, key crypto.Signer) string {
	t.Helper()
	cert := tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, c := range chain {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	serve(t, ln, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		_ = c.(*tls.Conn).Handshake()
		var b [1]byte
		_, _ = c.Read(b[:]) // until the scanner hangs up
	})
	return ln.Addr().String()
}

// serve runs handle for every connection ln accepts until the test ends,
// then closes ln and every connection and waits for the handlers.
func serve(t testing.TB, ln net.Listener, handle func(net.Conn)) {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
}
