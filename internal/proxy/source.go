package proxy

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/meshpki/meshpki/internal/keys"
)

// WatchWorkloadAPI keeps h's identity the default X509-SVID and the bundles
// the Workload API at addr ("unix:///run/meshpki/agent.sock"; "" for
// SPIFFE_ENDPOINT_SOCKET) hands out, until ctx ends. The go-spiffe client
// reconnects with backoff; every update is one atomic store.
func WatchWorkloadAPI(ctx context.Context, addr string, h *Holder, log *slog.Logger) error {
	if log == nil {
		log = slog.Default()
	}
	var opts []workloadapi.ClientOption
	if addr != "" {
		opts = append(opts, workloadapi.WithAddr(addr))
	} else if _, ok := workloadapi.GetDefaultAddress(); !ok {
		return errors.New("proxy: no Workload API: give --workload-api or set SPIFFE_ENDPOINT_SOCKET")
	}
	err := workloadapi.WatchX509Context(ctx, &watcher{h: h, log: log}, opts...)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

type watcher struct {
	h   *Holder
	log *slog.Logger
}

func (w *watcher) OnX509ContextUpdate(c *workloadapi.X509Context) {
	svid := c.DefaultSVID()
	if svid == nil {
		w.log.Warn("the Workload API sent no SVID")
		return
	}
	bundles := map[spiffeid.TrustDomain][]*x509.Certificate{}
	for _, b := range c.Bundles.Bundles() {
		bundles[b.TrustDomain()] = b.X509Authorities()
	}
	id, err := NewIdentity(svid.Certificates, svid.PrivateKey, bundles)
	if err != nil {
		w.log.Warn("SVID from the Workload API not used", "error", err)
		return
	}
	w.h.Store(id)
	w.log.Info("identity", "spiffe_id", id.ID.String(), "expires", id.NotAfter().UTC().Format(time.RFC3339), "trust_domains", len(bundles))
}

func (w *watcher) OnX509ContextWatchError(err error) {
	w.log.Warn("Workload API", "error", err)
}

// Files name an identity kept in files: the SVID (PEM, leaf first), its
// key (PEM; PKCS#8, SEC 1 or PKCS#1), and the trust bundle (PEM roots, of
// the SVID's trust domain unless the roots carry a spiffe://TD URI).
type Files struct {
	Cert, Key, Bundle string
}

// Load reads the files into an Identity.
func (f Files) Load() (*Identity, error) {
	certPEM, err := os.ReadFile(f.Cert)
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(f.Key)
	if err != nil {
		return nil, err
	}
	bundlePEM, err := os.ReadFile(f.Bundle)
	if err != nil {
		return nil, err
	}
	chain, err := parseCerts(certPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Cert, err)
	}
	key, err := keys.ParsePrivateKeyPEM(keyPEM, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Key, err)
	}
	roots, err := parseCerts(bundlePEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Bundle, err)
	}
	// The roots go to the trust domain their spiffe:// URI SAN names, or
	// to the SVID's own.
	leafID, err := x509svid.IDFromCert(chain[0])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Cert, err)
	}
	bundles := map[spiffeid.TrustDomain][]*x509.Certificate{}
	for _, r := range roots {
		td := leafID.TrustDomain()
		for _, u := range r.URIs {
			if t, err := spiffeid.TrustDomainFromURI(u); err == nil {
				td = t
			}
		}
		bundles[td] = append(bundles[td], r)
	}
	return NewIdentity(chain, key, bundles)
}

func parseCerts(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM certificate")
	}
	return out, nil
}

// WatchFiles loads f into h now and again whenever one of the files
// changes (looked at every interval), until ctx ends. A change that does
// not load (a key written before its certificate) keeps the identity held
// and is tried again at the next look.
func WatchFiles(ctx context.Context, f Files, every time.Duration, h *Holder, log *slog.Logger) error {
	if log == nil {
		log = slog.Default()
	}
	var seen []byte
	look := func() error {
		stamp, err := f.stamp()
		if err != nil {
			return err
		}
		if bytes.Equal(stamp, seen) {
			return nil
		}
		id, err := f.Load()
		if err != nil {
			return err
		}
		seen = stamp
		h.Store(id)
		log.Info("identity", "spiffe_id", id.ID.String(), "expires", id.NotAfter().UTC().Format(time.RFC3339), "from", f.Cert)
		return nil
	}
	if err := look(); err != nil {
		return fmt.Errorf("proxy: identity files: %w", err)
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := look(); err != nil {
				log.Warn("identity files not reloaded; keeping the identity held", "error", err)
			}
		}
	}
}

// stamp is the files' sizes and modification times.
func (f Files) stamp() ([]byte, error) {
	var b bytes.Buffer
	for _, p := range []string{f.Cert, f.Key, f.Bundle} {
		st, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&b, "%d:%d;", st.Size(), st.ModTime().UnixNano())
	}
	return b.Bytes(), nil
}
