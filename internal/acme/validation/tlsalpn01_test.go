package validation

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"math/big"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/go-acme/lego/v5/challenge/tlsalpn01"
)

// legoCert is the tls-alpn-01 certificate lego's client would serve.
func legoCert(t *testing.T, name, keyAuth string) tls.Certificate {
	t.Helper()
	cert, err := tlsalpn01.ChallengeCert(name, keyAuth)
	if err != nil {
		t.Fatal(err)
	}
	return *cert
}

// certSpec describes a hand-made tls-alpn-01 certificate.
type certSpec struct {
	dnsNames    []string
	ips         []net.IP
	keyAuth     string
	noExtension bool
	nonCritical bool
	extValue    []byte // overrides the encoded digest
}

func makeCert(t *testing.T, spec certSpec) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "tls-alpn-01 test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		DNSNames:     spec.dnsNames,
		IPAddresses:  spec.ips,
	}
	if !spec.noExtension {
		value := spec.extValue
		if value == nil {
			digest := sha256.Sum256([]byte(spec.keyAuth))
			if value, err = asn1.Marshal(digest[:]); err != nil {
				t.Fatal(err)
			}
		}
		tmpl.ExtraExtensions = []pkix.Extension{{Id: oidACMEIdentifier, Critical: !spec.nonCritical, Value: value}}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// serveTLS runs a TLS server on loopback and returns its port. If wantSNI
// is not empty, the server fails handshakes with any other SNI or with an
// ALPN offer other than just acme-tls/1.
func serveTLS(t *testing.T, cfg *tls.Config, wantSNI string) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	cfg = cfg.Clone()
	if wantSNI != "" {
		certs := cfg.Certificates
		cfg.Certificates = nil
		cfg.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			if hello.ServerName != wantSNI || !slices.Equal(hello.SupportedProtos, []string{ACMETLS1Protocol}) {
				return nil, fmt.Errorf("got SNI %q and ALPN %q", hello.ServerName, hello.SupportedProtos)
			}
			return &certs[0], nil
		}
	}
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(5 * time.Second))
				tls.Server(conn, cfg).Handshake() // the client reports any failure
			}()
		}
	}()
	return portOf(t, ln.Addr())
}

func acmeTLSConfig(certs ...tls.Certificate) *tls.Config {
	return &tls.Config{Certificates: certs, NextProtos: []string{ACMETLS1Protocol}}
}

func TestTLSALPN01(t *testing.T) {
	d := newTestDNS(t)
	d.A("a.test", "127.0.0.1")
	good := legoCert(t, "a.test", testKeyAuth)
	selfMade := makeCert(t, certSpec{dnsNames: []string{"a.test"}, keyAuth: testKeyAuth})
	chained := selfMade
	chained.Certificate = [][]byte{selfMade.Certificate[0], selfMade.Certificate[0]}

	tests := []struct {
		name     string
		id       Identifier
		server   *tls.Config
		wantSNI  string
		wantType string
	}{
		{"lego's challenge certificate", dnsID("a.test"), acmeTLSConfig(good), "a.test", ""},
		{"name compared case-insensitively", dnsID("A.TEST"), acmeTLSConfig(selfMade), "", ""},
		{"ip identifier with reverse-DNS SNI", ipID("127.0.0.1"),
			acmeTLSConfig(legoCert(t, "127.0.0.1", testKeyAuth)), "1.0.0.127.in-addr.arpa", ""},
		{"wrong key authorization digest", dnsID("a.test"),
			acmeTLSConfig(makeCert(t, certSpec{dnsNames: []string{"a.test"}, keyAuth: "other key authorization"})), "", TypeIncorrectResponse},
		{"server without ALPN", dnsID("a.test"), &tls.Config{Certificates: []tls.Certificate{good}}, "", TypeUnauthorized},
		{"server offering only h2", dnsID("a.test"),
			&tls.Config{Certificates: []tls.Certificate{good}, NextProtos: []string{"h2"}}, "", TypeTLS},
		{"certificate with an extra SAN", dnsID("a.test"),
			acmeTLSConfig(makeCert(t, certSpec{dnsNames: []string{"a.test", "extra.test"}, keyAuth: testKeyAuth})), "", TypeUnauthorized},
		{"certificate with an extra IP SAN", dnsID("a.test"),
			acmeTLSConfig(makeCert(t, certSpec{dnsNames: []string{"a.test"}, ips: []net.IP{net.IPv4(127, 0, 0, 1)}, keyAuth: testKeyAuth})), "", TypeUnauthorized},
		{"certificate for another name", dnsID("a.test"),
			acmeTLSConfig(makeCert(t, certSpec{dnsNames: []string{"other.test"}, keyAuth: testKeyAuth})), "", TypeUnauthorized},
		{"DNS SAN for an ip identifier", ipID("127.0.0.1"),
			acmeTLSConfig(makeCert(t, certSpec{dnsNames: []string{"127.0.0.1"}, keyAuth: testKeyAuth})), "", TypeUnauthorized},
		{"certificate without the acmeIdentifier extension", dnsID("a.test"),
			acmeTLSConfig(makeCert(t, certSpec{dnsNames: []string{"a.test"}, noExtension: true})), "", TypeUnauthorized},
		{"acmeIdentifier extension not critical", dnsID("a.test"),
			acmeTLSConfig(makeCert(t, certSpec{dnsNames: []string{"a.test"}, keyAuth: testKeyAuth, nonCritical: true})), "", TypeUnauthorized},
		{"acmeIdentifier extension holding a bare digest", dnsID("a.test"),
			acmeTLSConfig(makeCert(t, certSpec{dnsNames: []string{"a.test"}, extValue: make([]byte, 32)})), "", TypeIncorrectResponse},
		{"two certificates", dnsID("a.test"), acmeTLSConfig(chained), "", TypeUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v := newTestValidator(d, 0, serveTLS(t, tt.server, tt.wantSNI))
			checkResult(t, v.TLSALPN01(context.Background(), tt.id, testKeyAuth), tt.wantType)
		})
	}
}

func TestTLSALPN01ConnectionFailures(t *testing.T) {
	d := newTestDNS(t)
	d.A("a.test", "127.0.0.1")

	hanging, err := net.Listen("tcp", "127.0.0.1:0") // accepts, never handshakes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hanging.Close() })

	notTLS, err := net.Listen("tcp", "127.0.0.1:0") // answers in plain HTTP
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { notTLS.Close() })
	go func() {
		for {
			conn, err := notTLS.Accept()
			if err != nil {
				return
			}
			conn.Write([]byte("HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n"))
			conn.Close()
		}
	}()

	tests := []struct {
		name     string
		id       Identifier
		port     int
		timeout  time.Duration
		wantType string
	}{
		{"connection refused", dnsID("a.test"), closedPort(t), time.Second, TypeConnection},
		{"NXDOMAIN", dnsID("missing.test"), closedPort(t), time.Second, TypeDNS},
		{"no TLS handshake before the timeout", ipID("127.0.0.1"), portOf(t, hanging.Addr()), 200 * time.Millisecond, TypeConnection},
		{"not a TLS server", dnsID("a.test"), portOf(t, notTLS.Addr()), time.Second, TypeTLS},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v := New(Config{TLSPort: tt.port, Resolver: d.addr, Timeout: tt.timeout})
			checkResult(t, v.TLSALPN01(context.Background(), tt.id, testKeyAuth), tt.wantType)
		})
	}
}
