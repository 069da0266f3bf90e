package workload

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestFetchX509SVIDReturnsEntitledSVIDsInSourceOrder(t *testing.T) {
	src := newFakeSource(t)
	src.add(t, "web", spiffeIDOf("web"), myUIDSelector)
	src.add(t, "other", spiffeIDOf("other"), otherUIDSelector())
	src.add(t, "web-gid", spiffeIDOf("web-gid"), myGIDSelector, myUIDSelector)
	srv := startServer(t, src)
	c := newClient(t, srv)
	ctx := testContext(t)

	svids, err := c.FetchX509SVIDs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, s := range svids {
		ids = append(ids, s.ID.String())
	}
	if want := []string{spiffeIDOf("web"), spiffeIDOf("web-gid")}; strings.Join(ids, " ") != strings.Join(want, " ") {
		t.Fatalf("SPIFFE IDs = %v, want %v", ids, want)
	}
	if svids[0].Hint != "hint-web" {
		t.Errorf("hint = %q, want hint-web", svids[0].Hint)
	}

	x509ctx, err := c.FetchX509Context(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, td := range []string{testTD, federatedTD} {
		if !x509ctx.Bundles.Has(spiffeid.RequireTrustDomainFromString(td)) {
			t.Errorf("X.509 context has no bundle for %s", td)
		}
	}
	for _, s := range svids {
		if len(s.Certificates) != 2 {
			t.Errorf("%s: chain of %d certificates, want leaf and intermediate", s.ID, len(s.Certificates))
		}
		if _, _, err := x509svid.Verify(s.Certificates, x509ctx.Bundles); err != nil {
			t.Errorf("%s: chain does not verify against the bundle: %v", s.ID, err)
		}
		pub, ok := s.PrivateKey.Public().(interface{ Equal(crypto.PublicKey) bool })
		if !ok || !pub.Equal(s.Certificates[0].PublicKey) {
			t.Errorf("%s: private key does not match the leaf", s.ID)
		}
	}
}

func TestFetchX509SVIDWithoutEntitlementIsPermissionDenied(t *testing.T) {
	src := newFakeSource(t)
	src.add(t, "other", spiffeIDOf("other"), otherUIDSelector())
	src.add(t, "no-selectors", spiffeIDOf("no-selectors"))
	srv := startServer(t, src)

	_, err := newClient(t, srv).FetchX509SVID(testContext(t))
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("err = %v, want PermissionDenied", err)
	}
	want := "no identity issued: no registration entry matches this workload (uid " +
		strconv.Itoa(os.Getuid()) + ", pid " + strconv.Itoa(os.Getpid()) + ")"
	if msg := status.Convert(err).Message(); msg != want {
		t.Errorf("message = %q, want %q", msg, want)
	}
}

func TestFetchX509SVIDStreamEndsWhenEntitlementDrops(t *testing.T) {
	src := newFakeSource(t)
	src.add(t, "web", spiffeIDOf("web"), myUIDSelector)
	srv := startServer(t, src)
	ctx := testContext(t)

	stream, err := newRawClient(t, srv).FetchX509SVID(withHeader(ctx), &workload.X509SVIDRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	src.setSVIDs(nil)
	if _, err := stream.Recv(); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("after the entry went away: err = %v, want PermissionDenied", err)
	}
}

func TestFetchX509SVIDSendsOnlyWhenTheCallerSeesAChange(t *testing.T) {
	src := newFakeSource(t)
	src.add(t, "web", spiffeIDOf("web"), myUIDSelector)
	src.add(t, "other", spiffeIDOf("other"), otherUIDSelector())
	srv := startServer(t, src)
	ctx := testContext(t)

	stream, err := newRawClient(t, srv).FetchX509SVID(withHeader(ctx), &workload.X509SVIDRequest{})
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	src.rotate(t, "other") // not ours: nothing to send
	leaf := src.rotate(t, "web")
	next, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(next.Svids[0].X509Svid, first.Svids[0].X509Svid) {
		t.Fatal("second response repeats the first; want only the rotation of web sent")
	}
	if !bytes.HasPrefix(next.Svids[0].X509Svid, leaf.Raw) {
		t.Error("second response does not carry the rotated leaf")
	}
}

type x509Watcher struct {
	updates chan *workloadapi.X509Context
}

func (w x509Watcher) OnX509ContextUpdate(c *workloadapi.X509Context) { w.updates <- c }
func (w x509Watcher) OnX509ContextWatchError(error)                  {}

func TestWatchX509ContextReceivesRotation(t *testing.T) {
	src := newFakeSource(t)
	src.add(t, "web", spiffeIDOf("web"), myUIDSelector)
	srv := startServer(t, src)
	c := newClient(t, srv)
	ctx, cancel := context.WithCancel(testContext(t))
	w := x509Watcher{updates: make(chan *workloadapi.X509Context, 4)}
	done := make(chan error, 1)
	go func() { done <- c.WatchX509Context(ctx, w) }()
	defer func() { cancel(); <-done }()

	first := recvUpdate(t, w.updates)
	leaf := src.rotate(t, "web")
	second := recvUpdate(t, w.updates)
	got := second.DefaultSVID().Certificates[0]
	if got.SerialNumber.Cmp(first.DefaultSVID().Certificates[0].SerialNumber) == 0 {
		t.Fatal("update carries the old certificate")
	}
	if !got.Equal(leaf) {
		t.Error("update does not carry the rotated certificate")
	}
}

func recvUpdate(t *testing.T, updates chan *workloadapi.X509Context) *workloadapi.X509Context {
	t.Helper()
	select {
	case u := <-updates:
		return u
	case <-time.After(5 * time.Second):
		t.Fatal("no X.509 context update within 5s")
		return nil
	}
}

func TestFetchX509Bundles(t *testing.T) {
	src := newFakeSource(t)
	srv := startServer(t, src) // bundles need no entitlement
	set, err := newClient(t, srv).FetchX509Bundles(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	for td, root := range map[string][]byte{testTD: src.ca.root.Raw, federatedTD: src.federated.root.Raw} {
		b, ok := set.Get(spiffeid.RequireTrustDomainFromString(td))
		if !ok {
			t.Errorf("no bundle for %s", td)
			continue
		}
		if a := b.X509Authorities(); len(a) != 1 || !bytes.Equal(a[0].Raw, root) {
			t.Errorf("%s: authorities are not the root", td)
		}
	}
}

func TestFetchJWTBundles(t *testing.T) {
	src := newFakeSource(t)
	srv := startServer(t, src)
	set, err := newClient(t, srv).FetchJWTBundles(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	b, ok := set.Get(spiffeid.RequireTrustDomainFromString(testTD))
	if !ok {
		t.Fatalf("no JWT bundle for %s", testTD)
	}
	key, ok := b.FindJWTAuthority(src.jwtKID)
	if !ok || !src.jwtKey.PublicKey.Equal(key) {
		t.Errorf("JWT bundle lacks key %s", src.jwtKID)
	}
}

func TestFetchAndValidateJWTSVID(t *testing.T) {
	src := newFakeSource(t)
	src.add(t, "web", spiffeIDOf("web"), myUIDSelector)
	src.add(t, "api", spiffeIDOf("api"), myUIDSelector)
	src.add(t, "other", spiffeIDOf("other"), otherUIDSelector())
	srv := startServer(t, src)
	c := newClient(t, srv)
	ctx := testContext(t)

	svids, err := c.FetchJWTSVIDs(ctx, jwtsvid.Params{Audience: "db"})
	if err != nil {
		t.Fatal(err)
	}
	if len(svids) != 2 || svids[0].ID.String() != spiffeIDOf("web") || svids[1].ID.String() != spiffeIDOf("api") {
		t.Fatalf("JWT-SVIDs = %v, want web and api", svids)
	}
	api, err := c.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "db", Subject: spiffeid.RequireFromString(spiffeIDOf("api"))})
	if err != nil {
		t.Fatal(err)
	}
	if api.ID.String() != spiffeIDOf("api") {
		t.Errorf("requested api, got %s", api.ID)
	}

	valid, err := c.ValidateJWTSVID(ctx, api.Marshal(), "db")
	if err != nil {
		t.Fatalf("ValidateJWTSVID: %v", err)
	}
	if valid.ID.String() != spiffeIDOf("api") {
		t.Errorf("validated SPIFFE ID = %s", valid.ID)
	}
	resp, err := newRawClient(t, srv).ValidateJWTSVID(withHeader(ctx), &workload.ValidateJWTSVIDRequest{Svid: api.Marshal(), Audience: "db"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.SpiffeId != spiffeIDOf("api") || resp.Claims.Fields["sub"].GetStringValue() != spiffeIDOf("api") {
		t.Errorf("ValidateJWTSVID response = %v", resp)
	}

	if _, err := c.ValidateJWTSVID(ctx, api.Marshal(), "not-db"); status.Code(err) != codes.InvalidArgument {
		t.Errorf("wrong audience: err = %v, want InvalidArgument", err)
	}
	if _, err := c.ValidateJWTSVID(ctx, api.Marshal()+"x", "db"); status.Code(err) != codes.InvalidArgument {
		t.Errorf("bad signature: err = %v, want InvalidArgument", err)
	}
}

func TestFetchJWTSVIDRefusals(t *testing.T) {
	src := newFakeSource(t)
	src.add(t, "web", spiffeIDOf("web"), myUIDSelector)
	src.add(t, "other", spiffeIDOf("other"), otherUIDSelector())
	srv := startServer(t, src)
	raw := newRawClient(t, srv)
	ctx := withHeader(testContext(t))

	tests := []struct {
		name string
		req  *workload.JWTSVIDRequest
		want codes.Code
	}{
		{"no audience", &workload.JWTSVIDRequest{}, codes.InvalidArgument},
		{"bad SPIFFE ID", &workload.JWTSVIDRequest{Audience: []string{"db"}, SpiffeId: "https://x"}, codes.InvalidArgument},
		{"not entitled to the requested ID", &workload.JWTSVIDRequest{Audience: []string{"db"}, SpiffeId: spiffeIDOf("other")}, codes.PermissionDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := raw.FetchJWTSVID(ctx, tt.req); status.Code(err) != tt.want {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
		})
	}

	src.setSVIDs(nil)
	_, err := newClient(t, srv).FetchJWTSVID(ctx, jwtsvid.Params{Audience: "db"})
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) {
		t.Errorf("no entry: err = %v, want PermissionDenied naming our pid", err)
	}
}

func TestMissingSecurityHeaderIsInvalidArgument(t *testing.T) {
	src := newFakeSource(t)
	src.add(t, "web", spiffeIDOf("web"), myUIDSelector)
	srv := startServer(t, src)
	raw := newRawClient(t, srv)
	ctx := testContext(t)

	check := func(t *testing.T, err error) {
		t.Helper()
		if status.Code(err) != codes.InvalidArgument || status.Convert(err).Message() != "security header missing from request" {
			t.Errorf("err = %v, want InvalidArgument: security header missing from request", err)
		}
	}
	t.Run("FetchX509SVID", func(t *testing.T) {
		stream, err := raw.FetchX509SVID(ctx, &workload.X509SVIDRequest{})
		if err == nil {
			_, err = stream.Recv()
		}
		check(t, err)
	})
	t.Run("FetchX509SVID header false", func(t *testing.T) {
		stream, err := raw.FetchX509SVID(metadataContext(ctx, "false"), &workload.X509SVIDRequest{})
		if err == nil {
			_, err = stream.Recv()
		}
		check(t, err)
	})
	t.Run("FetchJWTBundles", func(t *testing.T) {
		stream, err := raw.FetchJWTBundles(ctx, &workload.JWTBundlesRequest{})
		if err == nil {
			_, err = stream.Recv()
		}
		check(t, err)
	})
	t.Run("FetchJWTSVID", func(t *testing.T) {
		_, err := raw.FetchJWTSVID(ctx, &workload.JWTSVIDRequest{Audience: []string{"db"}})
		check(t, err)
	})
	t.Run("ValidateJWTSVID", func(t *testing.T) {
		_, err := raw.ValidateJWTSVID(ctx, &workload.ValidateJWTSVIDRequest{Audience: "db", Svid: "x"})
		check(t, err)
	})
}

func TestWITMethodsAreUnimplemented(t *testing.T) {
	srv := startServer(t, newFakeSource(t))
	raw := newRawClient(t, srv)
	ctx := withHeader(testContext(t))
	stream, err := raw.FetchWITSVID(ctx, &workload.WITSVIDRequest{})
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("FetchWITSVID: err = %v, want Unimplemented", err)
	}
	bstream, err := raw.FetchWITBundles(ctx, &workload.WITBundlesRequest{})
	if err == nil {
		_, err = bstream.Recv()
	}
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("FetchWITBundles: err = %v, want Unimplemented", err)
	}
}

func TestBinarySelectors(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	sum := fileSHA256(t, exe)
	otherSum := sha256.Sum256([]byte("some other binary"))
	other := "unix:sha256:" + hex.EncodeToString(otherSum[:])

	t.Run("sha256 of another binary gives nothing", func(t *testing.T) {
		src := newFakeSource(t)
		src.add(t, "other-binary", spiffeIDOf("other-binary"), myUIDSelector, other)
		_, err := newClient(t, startServer(t, src)).FetchX509SVID(testContext(t))
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("err = %v, want PermissionDenied", err)
		}
	})
	t.Run("own sha256 and path work", func(t *testing.T) {
		src := newFakeSource(t)
		src.add(t, "other-binary", spiffeIDOf("other-binary"), myUIDSelector, other)
		src.add(t, "this-binary", spiffeIDOf("this-binary"), myUIDSelector, "unix:sha256:"+sum)
		src.add(t, "by-path", spiffeIDOf("by-path"), "unix:path:"+exe, myUIDSelector)
		src.add(t, "by-other-path", spiffeIDOf("by-other-path"), "unix:path:/usr/bin/true")
		svids, err := newClient(t, startServer(t, src)).FetchX509SVIDs(testContext(t))
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, s := range svids {
			ids = append(ids, s.ID.Path())
		}
		if got := strings.Join(ids, " "); got != "/this-binary /by-path" {
			t.Errorf("SVIDs = %s, want /this-binary /by-path", got)
		}
	})
}

func fileSHA256(t testing.TB, name string) string {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func TestSocketLifecycle(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "agent.sock")

	// A stale socket from a previous run is replaced.
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close()

	srv, err := New(Config{Socket: path, Source: newFakeSource(t)})
	if err != nil {
		t.Fatalf("New over a stale socket: %v", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o666 {
		t.Errorf("socket mode = %v, want 0666", fi.Mode().Perm())
	}

	// A live socket is not taken over.
	if _, err := New(Config{Socket: path, Source: newFakeSource(t)}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("New on a socket in use: err = %v, want in use", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("socket still there after Serve returned: %v", err)
	}
	if err := srv.Serve(context.Background()); err == nil {
		t.Error("second Serve succeeded")
	}

	// A file that is not a socket is left alone.
	regular := filepath.Join(dir, "file")
	if err := os.WriteFile(regular, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{Socket: regular, Source: newFakeSource(t)}); err == nil {
		t.Error("New over a regular file succeeded")
	}
}

func TestServeEndsOpenStreams(t *testing.T) {
	src := newFakeSource(t)
	src.add(t, "web", spiffeIDOf("web"), myUIDSelector)
	srv, err := New(Config{Socket: filepath.Join(t.TempDir(), "agent.sock"), Source: src})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()

	stream, err := newRawClient(t, srv).FetchX509SVID(withHeader(testContext(t)), &workload.X509SVIDRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Serve took %v to stop with a stream open", d)
	}
	if _, err := stream.Recv(); status.Code(err) != codes.Unavailable {
		t.Errorf("open stream: err = %v, want Unavailable", err)
	}
}

func TestMetrics(t *testing.T) {
	src := newFakeSource(t)
	src.add(t, "web", spiffeIDOf("web"), myUIDSelector)
	reg := prometheus.NewRegistry()
	srv, err := New(Config{Socket: filepath.Join(t.TempDir(), "agent.sock"), Source: src, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	c := newClient(t, srv)
	if _, err := c.FetchJWTSVID(testContext(t), jwtsvid.Params{Audience: "db"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ValidateJWTSVID(testContext(t), "bad", "db"); err == nil {
		t.Fatal("bad token validated")
	}
	cancel()
	<-done

	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			key := f.GetName()
			for _, l := range m.GetLabel() {
				key += " " + l.GetName() + "=" + l.GetValue()
			}
			if m.GetCounter() != nil {
				got[key] = m.GetCounter().GetValue()
			}
			if m.GetHistogram() != nil {
				got[key] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	for key, want := range map[string]float64{
		"meshpki_workload_requests_total code=OK method=FetchJWTSVID":                 1,
		"meshpki_workload_requests_total code=InvalidArgument method=ValidateJWTSVID": 1,
		"meshpki_workload_attest_seconds":                                             1,
	} {
		if got[key] != want {
			t.Errorf("%s = %v, want %v (all: %v)", key, got[key], want, got)
		}
	}
}

// TestDuplicateHintKeepsTheFirstSVID: a hint names one identity of a
// workload's set, so when two entitled SVIDs share a hint only the first (in
// Source order) is served, for X.509 and JWT alike.
func TestDuplicateHintKeepsTheFirstSVID(t *testing.T) {
	src := newFakeSource(t)
	src.add(t, "a", spiffeIDOf("a"), myUIDSelector)
	src.add(t, "b", spiffeIDOf("b"), myUIDSelector)
	src.add(t, "c", spiffeIDOf("c"), myUIDSelector)
	svids, _ := src.SVIDs()
	svids = slices.Clone(svids)
	svids[0].Hint, svids[1].Hint, svids[2].Hint = "internal", "internal", ""
	src.setSVIDs(svids)
	srv := startServer(t, src)
	c := newClient(t, srv)
	ctx := testContext(t)

	got, err := c.FetchX509SVIDs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, s := range got {
		ids = append(ids, s.ID.String()+"#"+s.Hint)
	}
	if want := spiffeIDOf("a") + "#internal " + spiffeIDOf("c") + "#"; strings.Join(ids, " ") != want {
		t.Fatalf("X.509-SVIDs = %v, want %s", ids, want)
	}
	jwts, err := c.FetchJWTSVIDs(ctx, jwtsvid.Params{Audience: "aud"})
	if err != nil {
		t.Fatal(err)
	}
	if len(jwts) != 2 || jwts[0].ID.String() != spiffeIDOf("a") || jwts[1].ID.String() != spiffeIDOf("c") {
		t.Fatalf("JWT-SVIDs: %d, first %v", len(jwts), jwts[0].ID)
	}
}
