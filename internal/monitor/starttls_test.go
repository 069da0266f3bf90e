package monitor

import (
	"bufio"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"software.sslmate.com/src/go-pkcs12"
)

// serveStartTLS starts a server that speaks proto's plain-text preamble,
// as a mail or database server does, and then TLS with chain.
func serveStartTLS(t *testing.T, proto string, chain []*x509.Certificate, key crypto.Signer) string {
	t.Helper()
	cert := tls.Certificate{PrivateKey: key}
	for _, c := range chain {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serve(t, ln, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReader(c)
		switch proto {
		case StartTLSSMTP:
			io.WriteString(c, "220 mail.test ESMTP\r\n")
			if line, _ := r.ReadString('\n'); !strings.HasPrefix(line, "EHLO ") {
				return
			}
			io.WriteString(c, "250-mail.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n")
			if line, _ := r.ReadString('\n'); line != "STARTTLS\r\n" {
				return
			}
			io.WriteString(c, "220 2.0.0 Ready to start TLS\r\n")
		case StartTLSIMAP:
			io.WriteString(c, "* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n")
			if line, _ := r.ReadString('\n'); line != "a1 STARTTLS\r\n" {
				return
			}
			io.WriteString(c, "a1 OK Begin TLS negotiation now\r\n")
		case StartTLSPostgres:
			var req [8]byte
			if _, err := io.ReadFull(r, req[:]); err != nil || binary.BigEndian.Uint32(req[4:]) != 80877103 {
				return
			}
			c.Write([]byte{'S'})
		}
		tc := tls.Server(c, cfg)
		_ = tc.Handshake()
		_, _ = io.Copy(io.Discard, tc)
	})
	return ln.Addr().String()
}

// SMTP, IMAP and PostgreSQL endpoints are scanned after their STARTTLS
// exchange.
func TestScanStartTLS(t *testing.T) {
	p := newPKI(t)
	chain, key := p.leaf(t, leafSpec{})
	var targets []Target
	for _, proto := range []string{StartTLSSMTP, StartTLSIMAP, StartTLSPostgres} {
		ts, err := ParseTargets([]string{serveStartTLS(t, proto, chain, key)}, TargetOptions{SNI: "svc.test", StartTLS: proto})
		if err != nil {
			t.Fatal(err)
		}
		targets = append(targets, ts...)
	}
	// An SMTP server scanned without STARTTLS does not speak TLS.
	plain, _ := ParseTargets([]string{serveStartTLS(t, StartTLSSMTP, chain, key)}, TargetOptions{})
	targets = append(targets, plain...)
	results := (&Scanner{Policy: &Policy{Roots: p.roots}, Timeout: 5 * time.Second}).Scan(context.Background(), targets)
	for _, r := range results[:3] {
		if r.Error != "" || len(r.Findings) != 0 || len(r.Chain) != 2 {
			t.Errorf("%s: error %q, findings %+v, chain of %d", r.Target, r.Error, r.Findings, len(r.Chain))
		}
	}
	if r := results[3]; !strings.Contains(r.Error, "does not speak TLS") || !strings.Contains(r.Error, "220 m") {
		t.Errorf("SMTP without STARTTLS: %q", r.Error)
	}
}

// PKCS#12 files open with the password, and say so when it is wrong.
func TestScanPKCS12(t *testing.T) {
	p := newPKI(t)
	chain, key := p.leaf(t, leafSpec{})
	pfx, err := pkcs12.Modern.Encode(key, chain[0], chain[1:], "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "web.p12")
	if err := os.WriteFile(path, pfx, 0o600); err != nil {
		t.Fatal(err)
	}
	targets, _ := ParseTargets([]string{path}, TargetOptions{})
	r := (&Scanner{Policy: &Policy{Roots: p.roots}, PKCS12Password: "s3cret"}).Scan(context.Background(), targets)
	if len(r) != 1 || r[0].Error != "" || len(r[0].Chain) != 2 || len(r[0].Findings) != 0 {
		t.Errorf("PKCS#12 with its password: %+v", r)
	}
	r = (&Scanner{Policy: &Policy{Roots: p.roots}, PKCS12Password: "wrong"}).Scan(context.Background(), targets)
	if len(r) != 1 || !strings.Contains(r[0].Error, "wrong password") {
		t.Errorf("PKCS#12 with a wrong password: %+v", r)
	}
}

// The lint check reports zlint's errors on the leaf.
func TestLintFinding(t *testing.T) {
	p := newPKI(t)
	chain, _ := p.leaf(t, leafSpec{selfSigned: true})
	chain[0] = resignWithoutAKI(t, chain[0])
	fs := (&Policy{Roots: p.roots, Lint: true}).Check(chain, Source{})
	if got := checksOf(fs); !slices.Equal(got, []string{CheckSelfSigned, CheckLint}) || !strings.Contains(fs[1].Message, "e_ext_authority_key_identifier_no_key_identifier") {
		t.Errorf("findings %+v, want self_signed and a lint naming the missing key identifier", fs)
	}
}

func resignWithoutAKI(t *testing.T, c *x509.Certificate) *x509.Certificate {
	t.Helper()
	key := ecKey(t)
	tmpl := *c
	tmpl.SubjectKeyId, tmpl.AuthorityKeyId = nil, nil
	tmpl.PublicKey = nil
	return sign(t, &tmpl, &tmpl, key.Public(), key)
}
