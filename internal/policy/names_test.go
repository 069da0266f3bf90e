package policy

import (
	"crypto/x509"
	"net"
	"net/url"
	"slices"
	"strings"
	"testing"
)

func TestParseNames(t *testing.T) {
	tests := []struct {
		name    string
		sans    []string
		want    []string // Strings() of the result
		wantErr string
	}{
		{name: "each type sorted", sans: []string{"me@Example.COM", "spiffe://td/ns/web", "10.0.0.1", "Web.Example.com", "::1"},
			want: []string{"web.example.com", "10.0.0.1", "::1", "spiffe://td/ns/web", "me@example.com"}},
		{name: "wildcard DNS", sans: []string{"*.example.com"}, want: []string{"*.example.com"}},
		{name: "IPv4-mapped IPv6 is IPv4", sans: []string{"::ffff:10.0.0.1"}, want: []string{"10.0.0.1"}},
		{name: "IPv6 canonical", sans: []string{"FD00:0:0::1"}, want: []string{"fd00::1"}},
		{name: "spaces trimmed", sans: []string{" a.example.com "}, want: []string{"a.example.com"}},
		{name: "duplicates dropped", sans: []string{"a.example.com", "A.example.com", "10.0.0.1", "::ffff:10.0.0.1"}, want: []string{"a.example.com", "10.0.0.1"}},
		{name: "no names", sans: nil, want: []string{}},
		{name: "empty entry", sans: []string{"a.com", ""}, wantErr: "empty name"},
		{name: "bad DNS name", sans: []string{"a..com"}, wantErr: `policy: "a..com" is not a valid DNS name: empty label`},
		{name: "CIDR is not a name", sans: []string{"10.0.0.0/8"}, wantErr: `"10.0.0.0/8" is not a valid DNS name`},
		{name: "IP zone", sans: []string{"fe80::1%eth0"}, wantErr: "zone"},
		{name: "URI with user info", sans: []string{"https://u@a.example.com/"}, wantErr: `URI "https://u@a.example.com/": user info`},
		{name: "URI does not parse", sans: []string{"http://[::1/x"}, wantErr: "does not parse"},
		{name: "URI dot segment", sans: []string{"spiffe://td/a/../b"}, wantErr: "path segments"},
		{name: "SPIFFE ID with a trailing slash", sans: []string{"spiffe://td/ns/web/"}, wantErr: `does not end with "/"`},
		{name: "SPIFFE ID with an empty segment", sans: []string{"spiffe://td/ns//web"}, wantErr: "no empty segments"},
		{name: "SPIFFE ID with only a slash", sans: []string{"spiffe://td/"}, wantErr: `does not end with "/"`},
		{name: "SPIFFE ID with a port", sans: []string{"spiffe://td:443/ns/web"}, wantErr: "no port"},
		{name: "SPIFFE ID with a query", sans: []string{"spiffe://td/ns/web?x=1"}, wantErr: "no query"},
		{name: "SPIFFE ID with other characters", sans: []string{"spiffe://td/ns/w~b"}, wantErr: "only letters"},
		{name: "a trailing slash is fine outside SPIFFE", sans: []string{"https://a.example.com/id/"}, want: []string{"https://a.example.com/id/"}},
		{name: "email two ats", sans: []string{"a@b@example.com"}, wantErr: `email address "a@b@example.com"`},
		{name: "email empty local part", sans: []string{"@example.com"}, wantErr: "empty local part"},
		{name: "email bad domain", sans: []string{"a@example..com"}, wantErr: "domain: empty label"},
		{name: "underscore in a DNS name", sans: []string{"under_score.example.internal"}, wantErr: "an underscore is not allowed"},
		{name: "underscore in an email domain", sans: []string{"a@mail_1.example.com"}, wantErr: "domain: an underscore"},
		{name: "underscore in an email local part is fine", sans: []string{"svc_a@example.com"}, want: []string{"svc_a@example.com"}},
		{name: "valid IDN A-label", sans: []string{"xn--bcher-kva.example"}, want: []string{"xn--bcher-kva.example"}},
		{name: "invalid Punycode", sans: []string{"xn--a-ecp.example", "xn--0.example"}, wantErr: `label "xn--0" is not valid Punycode`},
		{name: "IDN not in NFC", sans: []string{"xn--cafe-yvc.example"}, wantErr: "normalization form C"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := ParseNames(tt.sans)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseNames(%q) error = %v, want %q", tt.sans, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseNames(%q): %v", tt.sans, err)
			}
			if got := n.Strings(); !slices.Equal(got, tt.want) {
				t.Errorf("Strings() = %q, want %q", got, tt.want)
			}
			if n.Len() != len(tt.want) {
				t.Errorf("Len() = %d, want %d", n.Len(), len(tt.want))
			}
		})
	}
}

func TestParseNamesStoresIPv4InFourBytes(t *testing.T) {
	n, err := ParseNames([]string{"10.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(n.IPs[0]) != net.IPv4len {
		t.Errorf("IPv4 stored in %d bytes", len(n.IPs[0]))
	}
}

func TestNamesFromCSRCopies(t *testing.T) {
	csr := &x509.CertificateRequest{
		DNSNames:       []string{"a.example.com"},
		IPAddresses:    []net.IP{net.ParseIP("10.0.0.1")},
		URIs:           []*url.URL{mustURL(t, "spiffe://td/x")},
		EmailAddresses: []string{"me@example.com"},
	}
	n := NamesFromCSR(csr)
	if got, want := n.Strings(), []string{"a.example.com", "10.0.0.1", "spiffe://td/x", "me@example.com"}; !slices.Equal(got, want) {
		t.Fatalf("Strings() = %q, want %q", got, want)
	}
	csr.DNSNames[0] = "evil.com"
	csr.IPAddresses[0][15] = 99
	csr.URIs[0].Host = "evil"
	csr.EmailAddresses[0] = "evil@evil.com"
	if got, want := n.Strings(), []string{"a.example.com", "10.0.0.1", "spiffe://td/x", "me@example.com"}; !slices.Equal(got, want) {
		t.Errorf("names changed with the CSR: %q", got)
	}
	if NamesFromCSR(nil).Len() != 0 {
		t.Error("NamesFromCSR(nil) is not empty")
	}
}

func TestNamesContains(t *testing.T) {
	grant := names(t, "a.example.com", "*.example.org", "10.0.0.1", "fd00::1", "spiffe://td/ns/web", "me@example.com")
	tests := []struct {
		name        string
		asked       Names
		want        bool
		wantMissing string
	}{
		{name: "empty request is contained", asked: Names{}, want: true},
		{name: "same names", asked: grant, want: true},
		{name: "subset", asked: names(t, "a.example.com", "10.0.0.1"), want: true},
		{name: "DNS without case", asked: Names{DNS: []string{"A.EXAMPLE.com"}}, want: true},
		{name: "wildcard is literal", asked: names(t, "x.example.org"), wantMissing: "x.example.org"},
		{name: "16-byte IPv4 equals 4-byte", asked: Names{IPs: []net.IP{net.ParseIP("10.0.0.1")}}, want: true},
		{name: "extra IP", asked: names(t, "10.0.0.2"), wantMissing: "10.0.0.2"},
		{name: "URI scheme and host without case", asked: Names{URIs: []*url.URL{mustURL(t, "SPIFFE://TD/ns/web")}}, want: true},
		{name: "URI path is exact", asked: names(t, "spiffe://td/ns/Web"), wantMissing: "spiffe://td/ns/Web"},
		{name: "email domain without case", asked: Names{Emails: []string{"me@EXAMPLE.com"}}, want: true},
		{name: "email local part exact", asked: Names{Emails: []string{"Me@example.com"}}, wantMissing: "Me@example.com"},
		{name: "first missing name reported", asked: names(t, "a.example.com", "b.example.com", "c.example.com"), wantMissing: "b.example.com"},
		{name: "nil URI is missing", asked: Names{URIs: []*url.URL{nil}}, wantMissing: "<nil URI>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, missing := grant.Contains(tt.asked)
			if ok != tt.want || missing != tt.wantMissing {
				t.Errorf("Contains = %v, %q; want %v, %q", ok, missing, tt.want, tt.wantMissing)
			}
		})
	}
}
