package nodeapi

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshpki/meshpki/internal/store"
)

// x509pop node attestation: the node shows a certificate chaining to one of
// the CAs the server was given (--x509pop-ca), and proves it holds the key by
// signing a fresh server nonce. The node's SPIFFE ID is
// spiffe://<td>/node/x509pop/<SHA-256 of the leaf, hex>, and it carries the
// selectors x509pop:subject:cn:<CN>, x509pop:ca:fingerprint:<SHA-256 of each
// CA certificate in the verified chain, hex> and x509pop:san:dns:<name>, so
// that entries can name a class of nodes as parent.

// X509PoP is the proof in an AttestRequest.
type X509PoP struct {
	Chain     [][]byte `json:"chain"` // DER, leaf first
	Nonce     []byte   `json:"nonce"` // from X509PoPChallenge
	Signature []byte   `json:"signature"`
}

// ChallengeRequest asks for an x509pop nonce for a certificate chain.
type ChallengeRequest struct {
	Chain [][]byte `json:"chain"`
}

// ChallengeResponse is the nonce to sign.
type ChallengeResponse struct {
	Nonce []byte `json:"nonce"`
}

// popNonceLifetime is how long a challenge may be answered.
const popNonceLifetime = time.Minute

// SignX509PoPNonce is how a node proves possession: an ECDSA or RSA
// (PKCS #1 v1.5) signature over SHA-256(nonce), or Ed25519 over the nonce.
func SignX509PoPNonce(key crypto.Signer, nonce []byte) ([]byte, error) {
	if _, ok := key.Public().(ed25519.PublicKey); ok {
		return key.Sign(rand.Reader, nonce, crypto.Hash(0))
	}
	sum := sha256.Sum256(nonce)
	return key.Sign(rand.Reader, sum[:], crypto.SHA256)
}

func verifyPoP(pub crypto.PublicKey, nonce, sig []byte) bool {
	sum := sha256.Sum256(nonce)
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return ecdsa.VerifyASN1(k, sum[:], sig)
	case *rsa.PublicKey:
		return rsa.VerifyPKCS1v15(k, crypto.SHA256, sum[:], sig) == nil
	case ed25519.PublicKey:
		return ed25519.Verify(k, nonce, sig)
	}
	return false
}

// verifyPoPChain checks a node certificate chain against the x509pop CAs.
func (s *Server) verifyPoPChain(chain [][]byte) (*x509.Certificate, [][]*x509.Certificate, error) {
	if s.popRoots == nil {
		return nil, nil, status.Error(codes.FailedPrecondition, "x509pop attestation is not enabled on this server (start it with --x509pop-ca)")
	}
	if len(chain) == 0 || len(chain) > 8 {
		return nil, nil, status.Error(codes.InvalidArgument, "x509pop: give the node certificate and up to 7 intermediates")
	}
	certs := make([]*x509.Certificate, len(chain))
	for i, der := range chain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, nil, status.Errorf(codes.InvalidArgument, "x509pop: certificate %d cannot be parsed: %v", i, err)
		}
		certs[i] = c
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	verified, err := certs[0].Verify(x509.VerifyOptions{Roots: s.popRoots, Intermediates: inter, CurrentTime: s.now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		return nil, nil, status.Errorf(codes.Unauthenticated, "x509pop: the node certificate does not chain to an x509pop CA: %v", err)
	}
	return certs[0], verified, nil
}

// X509PoPChallenge returns a nonce bound to the node certificate; it is
// stateless (HMAC-tagged) and single-use when answered.
func (s *Server) X509PoPChallenge(_ context.Context, in *ChallengeRequest) (*ChallengeResponse, error) {
	leaf, _, err := s.verifyPoPChain(in.Chain)
	if err != nil {
		return nil, err
	}
	// 8 bytes expiry, 16 random, 16 tag over them and the leaf.
	n := make([]byte, 40)
	binary.BigEndian.PutUint64(n[:8], uint64(s.now().Add(popNonceLifetime).Unix()))
	if _, err := rand.Read(n[8:24]); err != nil {
		return nil, status.Error(codes.Internal, "nonce")
	}
	copy(n[24:], s.popTag(n[:24], leaf.Raw))
	return &ChallengeResponse{Nonce: n}, nil
}

func (s *Server) popTag(body, leaf []byte) []byte {
	m := hmac.New(sha256.New, s.popKey)
	m.Write(body)
	sum := sha256.Sum256(leaf)
	m.Write(sum[:])
	return m.Sum(nil)[:16]
}

// attestX509PoP checks an x509pop proof and returns the node's SPIFFE ID and
// selectors.
func (s *Server) attestX509PoP(ctx context.Context, p *X509PoP) (string, []string, error) {
	leaf, verified, err := s.verifyPoPChain(p.Chain)
	if err != nil {
		return "", nil, err
	}
	n := p.Nonce
	if len(n) != 40 || !hmac.Equal(n[24:], s.popTag(n[:24], leaf.Raw)) {
		return "", nil, status.Error(codes.Unauthenticated, "x509pop: the nonce was not issued for this certificate")
	}
	expires := time.Unix(int64(binary.BigEndian.Uint64(n[:8])), 0)
	if s.now().After(expires) {
		return "", nil, status.Error(codes.Unauthenticated, "x509pop: the nonce expired; ask for a new challenge")
	}
	if !verifyPoP(leaf.PublicKey, n, p.Signature) {
		return "", nil, status.Error(codes.Unauthenticated, "x509pop: the signature over the nonce does not verify with the certificate's key")
	}
	if err := s.st.ConsumeToken(ctx, "x509pop-"+hex.EncodeToString(n[:24]), expires); err != nil {
		if errors.Is(err, store.ErrTokenReplayed) {
			return "", nil, status.Error(codes.Unauthenticated, "x509pop: the nonce was already used")
		}
		return "", nil, grpcErr(err)
	}
	fp := sha256.Sum256(leaf.Raw)
	id := "spiffe://" + s.ca.TrustDomain() + "/node/x509pop/" + hex.EncodeToString(fp[:])
	var sel []string
	if cn := leaf.Subject.CommonName; cn != "" && !strings.ContainsAny(cn, "\n\r") {
		sel = append(sel, "x509pop:subject:cn:"+cn)
	}
	seen := map[string]bool{}
	for _, chain := range verified {
		for _, c := range chain[1:] {
			f := sha256.Sum256(c.Raw)
			if h := hex.EncodeToString(f[:]); !seen[h] {
				seen[h] = true
				sel = append(sel, "x509pop:ca:fingerprint:"+h)
			}
		}
	}
	for _, d := range leaf.DNSNames {
		sel = append(sel, "x509pop:san:dns:"+d)
	}
	return id, sel, nil
}
