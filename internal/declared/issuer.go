package declared

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshpki/meshpki/internal/manifest"
	"github.com/meshpki/meshpki/internal/nodeapi"
)

// Request is one issuance a manifest asks for.
type Request struct {
	Certificate *manifest.Certificate
	CSR         []byte        // DER, signed by the key the files will hold
	TTL         time.Duration // the manifest's duration; 0 for the issuer's default
}

// Issued is what an issuer returns.
type Issued struct {
	Chain []*x509.Certificate // the leaf first
	Roots []*x509.Certificate // what a relying party trusts (ca.crt); may be empty
}

// Issuer issues the certificates manifests declare. Implementations are
// safe for concurrent use and honour ctx's deadline.
type Issuer interface {
	Issue(ctx context.Context, req Request) (Issued, error)
}

// RefusedError is a refusal that asking again at once will not change (a
// policy denial, a malformed request); the Manager retries it at its
// longest backoff, since an administrator may widen the grant.
type RefusedError struct{ Msg string }

func (e *RefusedError) Error() string { return e.Msg }

// NodeIssuer issues through the meshpki node API with the node's SVID:
// issuerRef.name names a node provisioner.
type NodeIssuer struct {
	// Client returns the agent's current node API client.
	Client func() *nodeapi.Client
}

// Issue asks the server for the certificate.
func (n NodeIssuer) Issue(ctx context.Context, req Request) (Issued, error) {
	c := req.Certificate
	resp, err := n.Client().SignDeclared(ctx, &nodeapi.DeclaredRequest{
		Provisioner: c.Spec.IssuerRef.Name, CSR: req.CSR, TTL: req.TTL, Manifest: c.Ref()})
	if err != nil {
		if st, ok := status.FromError(err); ok {
			switch st.Code() {
			case codes.PermissionDenied, codes.InvalidArgument, codes.NotFound:
				return Issued{}, &RefusedError{Msg: "the server refused: " + st.Message()}
			case codes.Unauthenticated:
				return Issued{}, fmt.Errorf("the server does not accept this node's SVID: %s", st.Message())
			}
			return Issued{}, fmt.Errorf("the server: %s (%s)", st.Message(), strings.ToLower(st.Code().String()))
		}
		return Issued{}, err
	}
	var out Issued
	if out.Chain, err = parseDER(resp.Chain); err != nil {
		return Issued{}, fmt.Errorf("the server's chain: %w", err)
	}
	if out.Roots, err = parseDER(resp.Roots); err != nil {
		return Issued{}, fmt.Errorf("the server's roots: %w", err)
	}
	if len(out.Chain) == 0 {
		return Issued{}, errors.New("the server returned no certificate")
	}
	return out, nil
}

func parseDER(ders [][]byte) ([]*x509.Certificate, error) {
	out := make([]*x509.Certificate, 0, len(ders))
	for _, d := range ders {
		c, err := x509.ParseCertificate(d)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}
