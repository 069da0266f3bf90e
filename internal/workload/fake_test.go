package workload

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

const (
	testTD      = "example.test"
	federatedTD = "federated.test"
)

// testCA is a root and an intermediate that issue X.509-SVIDs.
type testCA struct {
	root     *x509.Certificate
	inter    *x509.Certificate
	interKey *ecdsa.PrivateKey
}

func newTestCA(t testing.TB, td string) *testCA {
	t.Helper()
	rootKey := newKey(t)
	root := createCert(t, &x509.Certificate{
		Subject:               pkix.Name{CommonName: td + " root"},
		URIs:                  []*url.URL{{Scheme: "spiffe", Host: td}},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}, nil, rootKey.Public(), rootKey)
	interKey := newKey(t)
	inter := createCert(t, &x509.Certificate{
		Subject:               pkix.Name{CommonName: td + " intermediate"},
		URIs:                  []*url.URL{{Scheme: "spiffe", Host: td}},
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}, root, interKey.Public(), rootKey)
	return &testCA{root: root, inter: inter, interKey: interKey}
}

// issue returns an X.509-SVID chain (leaf, intermediate) for id and its key.
func (ca *testCA) issue(t testing.TB, id string) ([]*x509.Certificate, crypto.Signer) {
	t.Helper()
	u, err := url.Parse(id)
	if err != nil {
		t.Fatal(err)
	}
	key := newKey(t)
	leaf := createCert(t, &x509.Certificate{
		URIs:                  []*url.URL{u},
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}, ca.inter, key.Public(), ca.interKey)
	return []*x509.Certificate{leaf, ca.inter}, key
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func createCert(t testing.TB, tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) *x509.Certificate {
	t.Helper()
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = time.Now().Add(-time.Minute)
	tmpl.NotAfter = time.Now().Add(time.Hour)
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// fakeSource is an in-memory Source: the agent's cache, as the server sees it.
type fakeSource struct {
	ca        *testCA
	federated *testCA
	jwtKey    *ecdsa.PrivateKey
	jwtKID    string

	mu        sync.Mutex
	svids     []SVID
	svidsCh   chan struct{}
	bundles   []Bundle
	bundlesCh chan struct{}
}

func newFakeSource(t testing.TB) *fakeSource {
	t.Helper()
	f := &fakeSource{
		ca:        newTestCA(t, testTD),
		federated: newTestCA(t, federatedTD),
		jwtKey:    newKey(t),
		jwtKID:    "jwt-key-1",
		svidsCh:   make(chan struct{}),
		bundlesCh: make(chan struct{}),
	}
	f.bundles = []Bundle{
		{TrustDomain: testTD, X509Authorities: []*x509.Certificate{f.ca.root}, JWTKeys: map[string]crypto.PublicKey{f.jwtKID: f.jwtKey.Public()}},
		{TrustDomain: federatedTD, X509Authorities: []*x509.Certificate{f.federated.root}},
	}
	return f
}

// add issues an SVID for the entry and publishes it.
func (f *fakeSource) add(t testing.TB, entryID, id string, selectors ...string) {
	t.Helper()
	chain, key := f.ca.issue(t, id)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.svids = append(f.svids, SVID{EntryID: entryID, SPIFFEID: id, Selectors: selectors, Chain: chain, Key: key, Hint: "hint-" + entryID})
	f.notifySVIDsLocked()
}

// rotate reissues the entry's SVID and returns the new leaf.
func (f *fakeSource) rotate(t testing.TB, entryID string) *x509.Certificate {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	i := slices.IndexFunc(f.svids, func(v SVID) bool { return v.EntryID == entryID })
	if i < 0 {
		t.Fatalf("no entry %s", entryID)
	}
	svids := slices.Clone(f.svids)
	svids[i].Chain, svids[i].Key = f.ca.issue(t, svids[i].SPIFFEID)
	f.svids = svids
	f.notifySVIDsLocked()
	return svids[i].Chain[0]
}

func (f *fakeSource) setSVIDs(svids []SVID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.svids = svids
	f.notifySVIDsLocked()
}

func (f *fakeSource) notifySVIDsLocked() {
	close(f.svidsCh)
	f.svidsCh = make(chan struct{})
}

func (f *fakeSource) SVIDs() ([]SVID, <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.svids, f.svidsCh
}

func (f *fakeSource) Bundles() ([]Bundle, <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.bundles, f.bundlesCh
}

func (f *fakeSource) MintJWTSVID(_ context.Context, entryID string, audience []string) (string, time.Time, error) {
	f.mu.Lock()
	i := slices.IndexFunc(f.svids, func(v SVID) bool { return v.EntryID == entryID })
	var id string
	if i >= 0 {
		id = f.svids[i].SPIFFEID
	}
	f.mu.Unlock()
	if i < 0 {
		return "", time.Time{}, errors.New("no such entry")
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: f.jwtKey},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader(jose.HeaderKey("kid"), f.jwtKID))
	if err != nil {
		return "", time.Time{}, err
	}
	now := time.Now()
	expiry := now.Add(5 * time.Minute)
	token, err := jwt.Signed(signer).Claims(jwt.Claims{
		Subject:  id,
		Audience: audience,
		IssuedAt: jwt.NewNumericDate(now),
		Expiry:   jwt.NewNumericDate(expiry),
	}).Serialize()
	return token, expiry, err
}

// Selectors of this test process.
var (
	myUIDSelector = "unix:uid:" + strconv.Itoa(os.Getuid())
	myGIDSelector = "unix:gid:" + strconv.Itoa(os.Getgid())
)

func otherUIDSelector() string { return "unix:uid:" + strconv.Itoa(os.Getuid()+4242) }

// startServer serves src on a socket in a temporary directory until the test
// ends.
func startServer(t testing.TB, src Source) *Server {
	t.Helper()
	return startServerIn(t, t.TempDir(), src)
}

func startServerIn(t testing.TB, dir string, src Source) *Server {
	t.Helper()
	srv, err := New(Config{Socket: filepath.Join(dir, "agent.sock"), Source: src})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return srv
}

// newClient returns a go-spiffe Workload API client of srv.
func newClient(t testing.TB, srv *Server) *workloadapi.Client {
	t.Helper()
	c, err := workloadapi.New(context.Background(), workloadapi.WithAddr(srv.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// newRawClient returns a generated gRPC client of srv, which sends no
// security header unless the context has one (withHeader).
func newRawClient(t testing.TB, srv *Server) workload.SpiffeWorkloadAPIClient {
	t.Helper()
	conn, err := grpc.NewClient(srv.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return workload.NewSpiffeWorkloadAPIClient(conn)
}

func withHeader(ctx context.Context) context.Context {
	return metadataContext(ctx, "true")
}

func metadataContext(ctx context.Context, value string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "workload.spiffe.io", value)
}

func testContext(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func spiffeIDOf(name string) string { return fmt.Sprintf("spiffe://%s/%s", testTD, name) }
