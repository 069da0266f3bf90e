package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func TestParseRule(t *testing.T) {
	for in, want := range map[string]string{
		"spiffe://td/ns/app":  "spiffe://td/ns/app",
		"spiffe://td/ns/*":    "spiffe://td/ns/*",
		"spiffe://td":         "spiffe://td",
		"dns:Web.Internal":    "dns:web.internal",
		"spiffe://td/a/b/c/*": "spiffe://td/a/b/c/*",
	} {
		r, err := ParseRule(in)
		if err != nil || r.String() != want {
			t.Errorf("ParseRule(%q) = %v, %v; want %s", in, r, err, want)
		}
	}
	for _, bad := range []string{"", "td/ns", "spiffe://", "spiffe://td/*", "dns:", "dns:a b", "https://td/x", "spiffe://TD/x"} {
		if _, err := ParseRule(bad); err == nil {
			t.Errorf("ParseRule(%q) accepted", bad)
		}
	}
}

// handshake runs a TLS handshake between the two configs over loopback and
// returns the server's and the client's errors. The server sends a byte
// once it accepts, so that a TLS 1.3 client, which finishes first, learns
// the server's verdict on its certificate.
func handshake(t *testing.T, server, client *tls.Config) (error, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	b, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	a, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	_ = a.SetDeadline(time.Now().Add(5 * time.Second))
	_ = b.SetDeadline(time.Now().Add(5 * time.Second))
	srv, cl := tls.Server(a, server), tls.Client(b, client)
	errs := make(chan error, 1)
	go func() {
		err := srv.Handshake()
		if err == nil {
			_, err = srv.Write([]byte("k"))
		}
		a.Close()
		errs <- err
	}()
	cerr := cl.Handshake()
	if cerr == nil {
		_, cerr = cl.Read(make([]byte, 1))
	}
	b.Close()
	return <-errs, cerr
}

func refusal(err error) string {
	var r *Refusal
	if errors.As(err, &r) {
		return r.Reason
	}
	return ""
}

func TestMutualTLSAuthorisation(t *testing.T) {
	td := newTrustDomain(t, "example.test")
	other := newTrustDomain(t, "other.test")
	server := td.identity(t, "/ns/api")
	allowAPI, _ := ParseAuthorizer([]string{"spiffe://example.test/ns/api"})

	for _, c := range []struct {
		name   string
		client *Holder
		allow  []string
		want   string // the server's refusal, "" for accepted
	}{
		{"exact", td.identity(t, "/ns/web"), []string{"spiffe://example.test/ns/web"}, ""},
		{"prefix", td.identity(t, "/ns/web"), []string{"spiffe://example.test/ns/*"}, ""},
		{"trust domain", td.identity(t, "/ns/web"), []string{"spiffe://example.test"}, ""},
		{"not on the list", td.identity(t, "/ns/batch"), []string{"spiffe://example.test/ns/web", "spiffe://example.test/db/*"}, "not_allowed"},
		{"prefix is not a string prefix", td.identity(t, "/nsx/web"), []string{"spiffe://example.test/ns/*"}, "not_allowed"},
		{"another trust domain", other.identity(t, "/ns/web", td), []string{"spiffe://example.test"}, "untrusted"},
	} {
		t.Run(c.name, func(t *testing.T) {
			authz, err := ParseAuthorizer(c.allow)
			if err != nil {
				t.Fatal(err)
			}
			serr, cerr := handshake(t, ServerConfig(server, authz, TLSOptions{}), ClientConfig(c.client, allowAPI, TLSOptions{}))
			if got := refusal(serr); got != c.want {
				t.Fatalf("server: %v (refusal %q), want %q; client: %v", serr, got, c.want, cerr)
			}
			if c.want == "" && cerr != nil {
				t.Fatalf("client: %v", cerr)
			}
		})
	}

	t.Run("expired client", func(t *testing.T) {
		chain, key := td.svid(t, "/ns/web", "", time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour))
		id, err := NewIdentity(chain, key, map[spiffeid.TrustDomain][]*x509.Certificate{td.td: {td.root}})
		if err != nil {
			t.Fatal(err)
		}
		h := NewHolder()
		h.Store(id)
		all, _ := ParseAuthorizer([]string{"spiffe://example.test"})
		serr, _ := handshake(t, ServerConfig(server, all, TLSOptions{}), ClientConfig(h, allowAPI, TLSOptions{}))
		if refusal(serr) != "expired" {
			t.Fatalf("server: %v, want expired", serr)
		}
	})
	t.Run("client refuses the server", func(t *testing.T) {
		all, _ := ParseAuthorizer([]string{"spiffe://example.test"})
		onlyDB, _ := ParseAuthorizer([]string{"spiffe://example.test/ns/db"})
		_, cerr := handshake(t, ServerConfig(server, all, TLSOptions{}), ClientConfig(td.identity(t, "/ns/web"), onlyDB, TLSOptions{}))
		if refusal(cerr) != "not_allowed" || !strings.Contains(cerr.Error(), "spiffe://example.test/ns/api is not on the allow list") {
			t.Fatalf("client: %v", cerr)
		}
	})
	t.Run("no identity yet", func(t *testing.T) {
		all, _ := ParseAuthorizer([]string{"spiffe://example.test"})
		serr, _ := handshake(t, ServerConfig(NewHolder(), all, TLSOptions{}), ClientConfig(td.identity(t, "/ns/web"), all, TLSOptions{}))
		if !errors.Is(serr, ErrNoIdentity) {
			t.Fatalf("server without an identity: %v", serr)
		}
	})
	t.Run("TLS 1.2 only when allowed", func(t *testing.T) {
		all, _ := ParseAuthorizer([]string{"spiffe://example.test"})
		old := ClientConfig(td.identity(t, "/ns/web"), all, TLSOptions{AllowTLS12: true})
		old.MaxVersion = tls.VersionTLS12
		if serr, _ := handshake(t, ServerConfig(server, all, TLSOptions{}), old); serr == nil {
			t.Fatal("a TLS 1.2 client was accepted by default")
		}
		if serr, cerr := handshake(t, ServerConfig(server, all, TLSOptions{AllowTLS12: true}), old); serr != nil || cerr != nil {
			t.Fatalf("TLS 1.2 allowed: %v, %v", serr, cerr)
		}
	})
}
