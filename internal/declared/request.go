package declared

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/meshpki/meshpki/internal/ca"
	"github.com/meshpki/meshpki/internal/certfiles"
	"github.com/meshpki/meshpki/internal/keys"
	"github.com/meshpki/meshpki/internal/manifest"
)

// keyType is the key the manifest's privateKey asks for.
func keyType(pk manifest.PrivateKey) keys.KeyType {
	switch {
	case pk.Algorithm == "ECDSA" && pk.Size == 384:
		return keys.ECP384
	case pk.Algorithm == "ECDSA":
		return keys.ECP256
	case pk.Algorithm == "Ed25519":
		return keys.Ed25519
	case pk.Size == 4096:
		return keys.RSA4096
	case pk.Size == 3072:
		return keys.RSA3072
	}
	return keys.RSA2048
}

// names are the subject alternative names a manifest asks for, in its
// order: the common name is one of them (as a DNS name or an IP address)
// when no list names it, since the CA certifies only what policy granted
// and a common name is a name like any other.
type names struct {
	DNS    []string
	IPs    []net.IP
	URIs   []*url.URL
	Emails []string
}

func namesOf(c *manifest.Certificate) names {
	s := c.Spec
	n := names{DNS: slices.Clone(s.DNSNames), Emails: slices.Clone(s.EmailAddresses)}
	for _, ip := range s.IPAddresses {
		n.IPs = append(n.IPs, net.ParseIP(ip))
	}
	for _, u := range s.URIs {
		p, _ := url.Parse(u)
		n.URIs = append(n.URIs, p)
	}
	if cn := s.CommonName; cn != "" && !slices.Contains(n.strings(), strings.ToLower(cn)) {
		if ip := net.ParseIP(cn); ip != nil {
			n.IPs = append(n.IPs, ip)
		} else {
			n.DNS = append(n.DNS, cn)
		}
	}
	return n
}

// strings lists every name in one canonical, sorted form.
func (n names) strings() []string {
	var out []string
	for _, d := range n.DNS {
		out = append(out, strings.ToLower(d))
	}
	for _, ip := range n.IPs {
		out = append(out, ip.String())
	}
	for _, u := range n.URIs {
		out = append(out, u.String())
	}
	for _, e := range n.Emails {
		out = append(out, strings.ToLower(e))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func leafNames(leaf *x509.Certificate) names {
	return names{DNS: leaf.DNSNames, IPs: leaf.IPAddresses, URIs: leaf.URIs, Emails: leaf.EmailAddresses}
}

// newCSR is the request for c signed by key.
func newCSR(c *manifest.Certificate, key crypto.Signer) ([]byte, error) {
	n := namesOf(c)
	s := c.Spec.Subject
	tmpl := &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: c.Spec.CommonName, Organization: s.Organizations, Country: s.Countries,
			OrganizationalUnit: s.OrganizationalUnits, Locality: s.Localities, Province: s.Provinces,
			StreetAddress: s.StreetAddresses, PostalCode: s.PostalCodes, SerialNumber: s.SerialNumber},
		DNSNames: n.DNS, IPAddresses: n.IPs, URIs: n.URIs, EmailAddresses: n.Emails,
	}
	return x509.CreateCertificateRequest(rand.Reader, tmpl, key)
}

// layout is where c's files go: the manifest's spec.meshpki block, inside
// roots. The keystore password is read from its file each time.
func layout(c *manifest.Certificate, roots []string) (certfiles.Layout, error) {
	l := c.Spec.Meshpki
	mode, _ := strconv.ParseUint(l.Mode, 8, 32)
	keyMode, _ := strconv.ParseUint(l.KeyMode, 8, 32)
	out := certfiles.Layout{Dir: l.Dir, Cert: l.Cert, Key: l.Key, CA: l.CA, Combined: l.Combined, PKCS12: l.PKCS12, JKS: l.JKS,
		Owner: l.Owner, Group: l.Group, CertMode: os.FileMode(mode), KeyMode: os.FileMode(keyMode), AllowedRoots: roots}
	if l.PKCS12Password != "" {
		pw, err := os.ReadFile(l.PKCS12Password)
		if err != nil {
			return out, fmt.Errorf("the keystore password file: %w", err)
		}
		out.PKCS12Password = strings.TrimRight(string(pw), "\r\n")
		if out.PKCS12Password == "" {
			return out, fmt.Errorf("the keystore password file %s is empty", l.PKCS12Password)
		}
	}
	return out, nil
}

// onDisk is the set c's directory holds now, if whole: the chain and the key
// that matches it.
func onDisk(c *manifest.Certificate) ([]*x509.Certificate, crypto.Signer, error) {
	l := c.Spec.Meshpki
	certPEM, err := os.ReadFile(filepath.Join(l.Dir, l.Cert))
	if err != nil {
		return nil, nil, err
	}
	chain, err := ca.ParseCertificatesPEM(certPEM)
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err := os.ReadFile(filepath.Join(l.Dir, l.Key))
	if err != nil {
		return nil, nil, err
	}
	key, err := keys.ParsePrivateKeyPEM(keyPEM, nil)
	if err != nil {
		return nil, nil, err
	}
	if !publicKeyEqual(key.Public(), chain[0].PublicKey) {
		return nil, nil, errors.New("the key on disk does not match the certificate")
	}
	return chain, key, nil
}

func publicKeyEqual(a, b crypto.PublicKey) bool {
	eq, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && eq.Equal(b)
}
