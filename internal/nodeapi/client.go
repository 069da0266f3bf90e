package nodeapi

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/url"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
)

// KeepaliveTime is how long a connection to the server may be silent before
// the client pings it.
const KeepaliveTime = time.Minute

// Client is the agent's side of the node API.
type Client struct {
	conn *grpc.ClientConn
}

// Dial connects to the server at serverURL (https://host:port), trusting
// roots, presenting the certificate cert returns (nil before attestation).
// It does not wait for the connection.
func Dial(serverURL string, roots *x509.CertPool, cert func() *tls.Certificate) (*Client, error) {
	u, err := url.Parse(serverURL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("nodeapi: server URL %q: want https://HOST:PORT", serverURL)
	}
	host := u.Host
	if u.Port() == "" {
		host += ":443"
	}
	tlsConfig := &tls.Config{
		MinVersion: tls.VersionTLS12,
		RootCAs:    roots,
		ServerName: u.Hostname(),
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if c := cert(); c != nil {
				return c, nil
			}
			return &tls.Certificate{}, nil
		},
	}
	conn, err := grpc.NewClient("passthrough:///"+host,
		grpc.WithTransportCredentials(credentials.NewTLS(tlsConfig)),
		// The sync stream is long-lived: pings keep middleboxes from
		// dropping it as idle and find a dead server without waiting for
		// TCP to give up.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: KeepaliveTime, Timeout: 20 * time.Second}),
		grpc.WithDefaultCallOptions(grpc.CallContentSubtype(codec{}.Name())))
	if err != nil {
		return nil, fmt.Errorf("nodeapi: %w", err)
	}
	return &Client{conn: conn}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

func (c *Client) call(ctx context.Context, method string, in, out any) error {
	return c.conn.Invoke(ctx, "/"+ServiceName+"/"+method, in, out)
}

// Attest redeems a join token for a node SVID.
func (c *Client) Attest(ctx context.Context, in *AttestRequest) (*AttestResponse, error) {
	out := new(AttestResponse)
	return out, c.call(ctx, "Attest", in, out)
}

// X509PoPChallenge asks for a nonce to sign for x509pop attestation.
func (c *Client) X509PoPChallenge(ctx context.Context, in *ChallengeRequest) (*ChallengeResponse, error) {
	out := new(ChallengeResponse)
	return out, c.call(ctx, "X509PoPChallenge", in, out)
}

// RenewNode gets a fresh node SVID.
func (c *Client) RenewNode(ctx context.Context, in *RenewRequest) (*AttestResponse, error) {
	out := new(AttestResponse)
	return out, c.call(ctx, "RenewNode", in, out)
}

// SignDeclared asks for a certificate the node declared.
func (c *Client) SignDeclared(ctx context.Context, in *DeclaredRequest) (*DeclaredResponse, error) {
	out := new(DeclaredResponse)
	return out, c.call(ctx, "SignDeclared", in, out)
}

// MintX509SVIDs mints a batch of X.509-SVIDs.
func (c *Client) MintX509SVIDs(ctx context.Context, in *MintRequest) (*MintResponse, error) {
	out := new(MintResponse)
	return out, c.call(ctx, "MintX509SVIDs", in, out)
}

// MintJWTSVID mints a JWT-SVID.
func (c *Client) MintJWTSVID(ctx context.Context, in *JWTRequest) (*JWTResponse, error) {
	out := new(JWTResponse)
	return out, c.call(ctx, "MintJWTSVID", in, out)
}

// Sync opens a sync stream; recv blocks for the next message.
func (c *Client) Sync(ctx context.Context) (recv func() (*SyncResponse, error), err error) {
	desc := &grpc.StreamDesc{StreamName: "Sync", ServerStreams: true}
	stream, err := c.conn.NewStream(ctx, desc, "/"+ServiceName+"/Sync")
	if err != nil {
		return nil, err
	}
	if err := stream.SendMsg(&SyncRequest{}); err != nil {
		return nil, err
	}
	if err := stream.CloseSend(); err != nil {
		return nil, err
	}
	return func() (*SyncResponse, error) {
		out := new(SyncResponse)
		return out, stream.RecvMsg(out)
	}, nil
}
