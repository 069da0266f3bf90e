package client

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/meshpki/meshpki/internal/keys"
	"github.com/meshpki/meshpki/internal/policy"
)

// newTestServer starts a TLS server running h and returns it with a client
// that trusts it.
func newTestServer(t *testing.T, h http.Handler, cred *tls.Certificate) (*httptest.Server, *Client) {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	c, err := New(Config{URL: srv.URL, RootsPEM: rootsOf(srv), Certificate: cred, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return srv, c
}

func rootsOf(srv *httptest.Server) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
}

func TestErrorBodyDecodesToAPIError(t *testing.T) {
	tests := []struct {
		name      string
		status    int
		body      string
		want      APIError
		wantError string
	}{
		{
			name:      "api error json",
			status:    http.StatusForbidden,
			body:      `{"error":{"code":"forbidden","message":"deny_dns \"db.example.internal\" denies db.example.internal"}}`,
			want:      APIError{Status: 403, Code: "forbidden", Message: `deny_dns "db.example.internal" denies db.example.internal`},
			wantError: `deny_dns "db.example.internal" denies db.example.internal (forbidden, HTTP 403)`,
		},
		{
			name:      "unknown fields are ignored",
			status:    http.StatusNotFound,
			body:      `{"error":{"code":"not_found","message":"no provisioner \"web\"","detail":1},"extra":true}`,
			want:      APIError{Status: 404, Code: "not_found", Message: `no provisioner "web"`},
			wantError: `no provisioner "web" (not_found, HTTP 404)`,
		},
		{
			name:      "html from a proxy keeps its first line",
			status:    http.StatusBadGateway,
			body:      "<html>Bad Gateway</html>\n<body>nginx</body>",
			want:      APIError{Status: 502, Message: "<html>Bad Gateway</html>"},
			wantError: "<html>Bad Gateway</html> (HTTP 502)",
		},
		{
			name:      "empty body uses the status text",
			status:    http.StatusServiceUnavailable,
			body:      "",
			want:      APIError{Status: 503},
			wantError: "service unavailable (HTTP 503)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, c := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.body)
			}), nil)
			_, err := c.CheckPolicy(context.Background(), PolicyCheckRequest{Provisioner: "web", SANs: []string{"db.example.internal"}})
			var apiErr *APIError
			if !errors.As(err, &apiErr) {
				t.Fatalf("error %v (%T) is not an *APIError", err, err)
			}
			if *apiErr != tt.want {
				t.Errorf("APIError = %+v, want %+v", *apiErr, tt.want)
			}
			if err.Error() != tt.wantError {
				t.Errorf("Error() = %q, want %q", err.Error(), tt.wantError)
			}
		})
	}
}

func TestUnreachableServerNamesURLInOneLine(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "https://" + ln.Addr().String()
	ln.Close()
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	defer srv.Close()
	c, err := New(Config{URL: url, RootsPEM: rootsOf(srv)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.ListProvisioners(context.Background())
	var connErr *ConnectError
	if !errors.As(err, &connErr) {
		t.Fatalf("error %v (%T) is not a *ConnectError", err, err)
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "client: cannot reach "+url+": ") || strings.Contains(msg, "\n") {
		t.Errorf("error = %q, want one line starting with %q", msg, "client: cannot reach "+url+": ")
	}
	if !strings.Contains(msg, "refused") {
		t.Errorf("error = %q, want the reason (connection refused)", msg)
	}
}

func TestUntrustedServerCertificateIsExplained(t *testing.T) {
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	defer srv.Close()
	otherRoot := selfSigned(t, "someone else's root")
	c, err := New(Config{URL: srv.URL, RootsPEM: otherRoot.pem})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Roots(context.Background())
	if err == nil || !strings.Contains(err.Error(), "not signed by the trusted root") {
		t.Fatalf("error = %v, want one saying the certificate is not signed by the trusted root", err)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	root := selfSigned(t, "root").pem
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no url", Config{RootsPEM: root}, "no CA URL"},
		{"plain http", Config{URL: "http://127.0.0.1:8443", RootsPEM: root}, "want https://"},
		{"no host", Config{URL: "https://", RootsPEM: root}, "want https://"},
		{"query", Config{URL: "https://ca.example?x=1", RootsPEM: root}, "no user, query or fragment"},
		{"no roots", Config{URL: "https://ca.example"}, "no PEM root certificate"},
		{"garbage roots", Config{URL: "https://ca.example", RootsPEM: []byte("not pem")}, "no PEM root certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New() error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestSignSendsRequestAndDecodesAnswer(t *testing.T) {
	notAfter := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	_, c := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/sign" {
			t.Errorf("got %s %s, want POST /v1/sign", r.Method, r.URL.Path)
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type = %q", ct)
		}
		var body map[string]any
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			t.Error(err)
		}
		want := map[string]any{"csr": "CSR", "token": "TOKEN", "ttl": "1h30m0s"}
		if len(body) != len(want) || body["csr"] != want["csr"] || body["token"] != want["token"] || body["ttl"] != want["ttl"] {
			t.Errorf("body = %v, want %v", body, want)
		}
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"certificate":"PEM","serial":"5f0c","not_before":"2026-11-24T10:00:00Z","not_after":"2026-11-25T10:00:00Z"}`)
	}), nil)
	resp, err := c.Sign(context.Background(), SignRequest{CSR: "CSR", Token: "TOKEN", TTL: policy.Duration(90 * time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Serial != "5f0c" || resp.Certificate != "PEM" || !resp.NotAfter.Equal(notAfter) {
		t.Errorf("response = %+v", resp)
	}
}

func TestOptionalFieldsAreOmitted(t *testing.T) {
	got, err := json.Marshal(RenewRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "{}" {
		t.Errorf("empty RenewRequest = %s, want {}", got)
	}
	got, err = json.Marshal(TokenRequest{Subject: "web", SANs: []string{"a.example"}})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"subject":"web","sans":["a.example"]}`; string(got) != want {
		t.Errorf("TokenRequest = %s, want %s", got, want)
	}
}

func TestListCertificatesEncodesQuery(t *testing.T) {
	var gotQuery string
	_, c := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotQuery = r.URL.RawQuery
		io.WriteString(w, `{"certificates":[{"serial":"a1","subject":"web","names":["web.example.internal"],"status":"valid","revoked_at":null,"not_after":"2026-11-25T10:00:00Z"}],"next":"a2"}`)
	}), nil)
	page, err := c.ListCertificates(context.Background(), CertificateQuery{
		Name: "web.example.internal", Status: "valid", ExpiringWithin: 72 * time.Hour, Limit: 10, After: "a0",
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := "after=a0&expiring_before=72h0m0s&limit=10&name=web.example.internal&status=valid"; gotQuery != want {
		t.Errorf("query = %q, want %q", gotQuery, want)
	}
	if len(page.Certificates) != 1 || page.Certificates[0].Serial != "a1" || page.Certificates[0].RevokedAt != nil || page.Next != "a2" {
		t.Errorf("page = %+v", page)
	}
}

func TestPathSegmentsAreEscaped(t *testing.T) {
	var gotPath string
	_, c := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotPath = r.URL.EscapedPath()
		w.WriteHeader(http.StatusNoContent)
	}), nil)
	if err := c.DeleteProvisioner(context.Background(), "a/b c"); err != nil {
		t.Fatal(err)
	}
	if want := "/v1/provisioners/a%2Fb%20c"; gotPath != want {
		t.Errorf("path = %q, want %q", gotPath, want)
	}
}

func TestClientCertificateIsPresented(t *testing.T) {
	holder := selfSigned(t, "holder")
	cred, err := ParseCredentials(holder.pem, holder.keyPEM(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, c := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.TLS.PeerCertificates) == 0 {
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error":{"code":"unauthorized","message":"no client certificate"}}`)
			return
		}
		io.WriteString(w, `{"certificate":"`+r.TLS.PeerCertificates[0].Subject.CommonName+`"}`)
	}), cred)
	resp, err := c.Renew(context.Background(), RenewRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Certificate != "holder" {
		t.Errorf("server saw client certificate %q, want holder", resp.Certificate)
	}
}

func TestParseCredentialsRejectsForeignKey(t *testing.T) {
	a, b := selfSigned(t, "a"), selfSigned(t, "b")
	_, err := ParseCredentials(a.pem, b.keyPEM(t), nil)
	if err == nil || !strings.Contains(err.Error(), "does not belong") {
		t.Fatalf("error = %v, want one saying the key does not belong to the certificate", err)
	}
}

type testCert struct {
	key  *ecdsa.PrivateKey
	cert *x509.Certificate
	pem  []byte
}

func (c testCert) keyPEM(t *testing.T) []byte {
	data, err := keys.MarshalPrivateKeyPEM(c.key)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func selfSigned(t *testing.T, cn string) testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return testCert{key: key, cert: cert, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}
