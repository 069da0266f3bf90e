package server

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/meshpki/meshpki/internal/keys"
	"github.com/meshpki/meshpki/internal/nodeapi"
)

// jwtKeyName is the JWT-SVID signing key in DIR/ca/keys.
const jwtKeyName = "jwt-svid"

// BundleRefreshHint is the spiffe_refresh_hint of /bundle.
const BundleRefreshHint = 5 * time.Minute

// loadJWTKey loads the JWT-SVID signing key, creating it on first use.
func (s *Server) loadJWTKey(ctx context.Context) (crypto.Signer, string, error) {
	return loadServerKey(ctx, s.keys, jwtKeyName, "JWT-SVID key")
}

// loadServerKey loads a signing key of the server's from its keystore by
// name, creating it (ECDSA P-256) on first use. Its key id is the base64url
// of the first 16 bytes of the SHA-256 of its public key.
func loadServerKey(ctx context.Context, ks keys.Keystore, name, what string) (crypto.Signer, string, error) {
	key, err := keys.LoadOrCreate(ctx, ks, name, keys.ECP256)
	if err != nil {
		return nil, "", fmt.Errorf("server: %s: %w", what, err)
	}
	der, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return nil, "", err
	}
	sum := sha256.Sum256(der)
	return key, base64.RawURLEncoding.EncodeToString(sum[:16]), nil
}

// handler routes gRPC (the node API, over HTTP/2) apart from the HTTP API.
func (s *Server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", s.api)
	mux.Handle("/ui/", s.web)
	mux.HandleFunc("GET /bundle", s.handleBundle)
	grpcSrv := s.nodes.GRPC()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
			if nodeapi.IsStream(r.URL.Path) {
				// A sync stream lives as long as its agent: the server's
				// per-request read and write timeouts bound unary calls
				// only; HTTP/2 pings find a dead peer instead.
				rc := http.NewResponseController(w)
				_ = rc.SetReadDeadline(time.Time{})
				_ = rc.SetWriteDeadline(time.Time{})
			}
			grpcSrv.ServeHTTP(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// handleBundle serves the SPIFFE trust bundle (JWKS with spiffe_sequence and
// spiffe_refresh_hint): the root and current intermediates as x509-svid
// authorities, the JWT-SVID key as jwt-svid authority.
func (s *Server) handleBundle(w http.ResponseWriter, _ *http.Request) {
	body, err := s.bundleJSON()
	if err != nil {
		s.log.Error("bundle", "error", err)
		http.Error(w, `{"error":{"code":"internal","message":"cannot build the bundle"}}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = w.Write(body)
}

func (s *Server) bundleJSON() ([]byte, error) {
	b := s.nodes.Bundle()
	td, err := spiffeid.TrustDomainFromString(b.TrustDomain)
	if err != nil {
		return nil, err
	}
	return marshalBundle(td, b)
}

func marshalBundle(td spiffeid.TrustDomain, b nodeapi.Bundle) ([]byte, error) {
	out := spiffebundle.New(td)
	for _, der := range b.X509 {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, err
		}
		out.AddX509Authority(c)
	}
	for kid, der := range b.JWTKeys {
		k, err := x509.ParsePKIXPublicKey(der)
		if err != nil {
			return nil, err
		}
		if err := out.AddJWTAuthority(kid, k); err != nil {
			return nil, err
		}
	}
	out.SetSequenceNumber(uint64(b.Sequence))
	out.SetRefreshHint(BundleRefreshHint)
	return out.Marshal()
}
