package declared

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	legoacme "github.com/go-acme/lego/v5/acme"
	"github.com/go-acme/lego/v5/certificate"
	"github.com/go-acme/lego/v5/challenge/http01"
	"github.com/go-acme/lego/v5/lego"
	"github.com/go-acme/lego/v5/registration"

	"github.com/meshpki/meshpki/internal/ca"
	"github.com/meshpki/meshpki/internal/keys"
)

// ACMEConfig configures the issuers of ACMEIssuer manifests: RFC 8555
// through lego, against any ACME server (meshpki's own included).
type ACMEConfig struct {
	// AccountDir keeps one account key per directory URL, encrypted with
	// Passphrase; the account is found again by its key (RFC 8555,
	// section 7.3.1) after a restart.
	AccountDir string
	Passphrase []byte
	// Roots are trusted for the ACME server's HTTPS (nil: the system's).
	Roots *x509.CertPool
	// HTTP01Address is where the http-01 challenge answer is served while
	// a challenge is pending (default ":80", where ACME servers look).
	HTTP01Address string
}

// NewACMEIssuers returns the Config.ACME function: one issuer per
// directory URL.
func NewACMEIssuers(cfg ACMEConfig) func(directoryURL string) (Issuer, error) {
	return func(directoryURL string) (Issuer, error) {
		if cfg.AccountDir == "" {
			return nil, errors.New("declared: ACME needs a directory for account keys")
		}
		return &acmeIssuer{cfg: cfg, url: directoryURL}, nil
	}
}

type acmeIssuer struct {
	cfg ACMEConfig
	url string

	mu     sync.Mutex // one order at a time per server: they share the http-01 port
	client *lego.Client
	user   *acmeUser
}

type acmeUser struct {
	key crypto.Signer
	reg *legoacme.ExtendedAccount
}

func (u *acmeUser) GetEmail() string                           { return "" }
func (u *acmeUser) GetRegistration() *legoacme.ExtendedAccount { return u.reg }
func (u *acmeUser) GetPrivateKey() crypto.Signer               { return u.key }

// accountKey loads or makes the account key for the directory URL.
func (a *acmeIssuer) accountKey() (crypto.Signer, error) {
	sum := sha256.Sum256([]byte(a.url))
	path := filepath.Join(a.cfg.AccountDir, hex.EncodeToString(sum[:8])+".key")
	if data, err := os.ReadFile(path); err == nil {
		return keys.ParsePrivateKeyPEM(data, a.cfg.Passphrase)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	key, err := keys.ECP256.Generate()
	if err != nil {
		return nil, err
	}
	pemData, err := keys.EncryptPEM(key, a.cfg.Passphrase)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(a.cfg.AccountDir, 0o700); err != nil {
		return nil, err
	}
	if err := keys.WriteFile(path, pemData, 0o600); err != nil {
		return nil, err
	}
	return key, nil
}

// ready returns the lego client, with the account found or registered.
func (a *acmeIssuer) ready(ctx context.Context) (*lego.Client, error) {
	if a.client != nil && a.user.reg != nil {
		return a.client, nil
	}
	if a.user == nil {
		key, err := a.accountKey()
		if err != nil {
			return nil, fmt.Errorf("ACME account key: %w", err)
		}
		a.user = &acmeUser{key: key}
	}
	cfg := lego.NewConfig(a.user)
	cfg.CADirURL = a.url
	cfg.HTTPClient = &http.Client{Timeout: time.Minute, Transport: &http.Transport{
		Proxy:           http.ProxyFromEnvironment,
		TLSClientConfig: &tls.Config{RootCAs: a.cfg.Roots, MinVersion: tls.VersionTLS12},
	}}
	c, err := lego.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("ACME server %s: %w", a.url, err)
	}
	host, port, err := net.SplitHostPort(a.http01Address())
	if err != nil {
		return nil, fmt.Errorf("http-01 address: %w", err)
	}
	if err := c.Challenge.SetHTTP01Provider(http01.NewProviderServer(host, port)); err != nil {
		return nil, err
	}
	reg, err := c.Registration.ResolveAccountByKey(ctx)
	if err != nil {
		reg, err = c.Registration.Register(ctx, registration.RegisterOptions{TermsOfServiceAgreed: true})
		if err != nil {
			return nil, fmt.Errorf("ACME account at %s: %w", a.url, err)
		}
	}
	a.user.reg, a.client = reg, c
	return c, nil
}

func (a *acmeIssuer) http01Address() string {
	if a.cfg.HTTP01Address == "" {
		return ":80"
	}
	return a.cfg.HTTP01Address
}

// Issue orders the certificate for the CSR, answering http-01.
func (a *acmeIssuer) Issue(ctx context.Context, req Request) (Issued, error) {
	csr, err := x509.ParseCertificateRequest(req.CSR)
	if err != nil {
		return Issued{}, err
	}
	if len(csr.URIs)+len(csr.EmailAddresses) > 0 {
		return Issued{}, &RefusedError{Msg: "an ACME server certifies DNS names and IP addresses only, not URIs or email addresses"}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	c, err := a.ready(ctx)
	if err != nil {
		return Issued{}, err
	}
	o := certificate.ObtainForCSRRequest{CSR: csr, Bundle: true}
	if req.TTL > 0 {
		// RFC 8555 notBefore/notAfter: servers may refuse them; meshpki's
		// honours them within policy.
		o.NotBefore = time.Now()
		o.NotAfter = o.NotBefore.Add(req.TTL)
	}
	res, err := c.Certificate.ObtainForCSR(ctx, o)
	if err != nil {
		var problem *legoacme.ProblemDetails
		if errors.As(err, &problem) && problem.HTTPStatus >= 400 && problem.HTTPStatus < 500 && problem.HTTPStatus != http.StatusTooManyRequests {
			return Issued{}, &RefusedError{Msg: "the ACME server refused: " + problem.Error()}
		}
		return Issued{}, fmt.Errorf("ACME order at %s: %w", a.url, err)
	}
	chain, err := ca.ParseCertificatesPEM(res.Certificate)
	if err != nil {
		return Issued{}, fmt.Errorf("the ACME server's certificate: %w", err)
	}
	return Issued{Chain: chain}, nil
}
