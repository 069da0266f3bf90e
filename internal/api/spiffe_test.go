package api_test

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshpki/meshpki/internal/audit"
	"github.com/meshpki/meshpki/internal/ca"
	"github.com/meshpki/meshpki/internal/keys"
	"github.com/meshpki/meshpki/internal/servertest"
	"github.com/meshpki/meshpki/internal/store"
	"github.com/meshpki/meshpki/internal/token"
)

type entryJSON struct {
	ID        string    `json:"id"`
	SPIFFEID  string    `json:"spiffe_id"`
	Parent    string    `json:"parent"`
	Selectors []string  `json:"selectors"`
	X509TTL   string    `json:"x509_ttl"`
	JWTTTL    string    `json:"jwt_ttl"`
	DNSNames  []string  `json:"dns_names"`
	Hint      string    `json:"hint"`
	Revision  int64     `json:"revision"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

type entryList struct {
	Entries []entryJSON `json:"entries"`
	Next    string      `json:"next"`
}

const node1 = "spiffe://test.internal/node/n1"

func webEntry() map[string]any {
	return map[string]any{"spiffe_id": "spiffe://test.internal/app/web", "parent": node1, "selectors": []string{"unix:uid:1000"}}
}

func createEntry(t *testing.T, in *servertest.Instance, body map[string]any) entryJSON {
	t.Helper()
	var e entryJSON
	if status, raw := do(t, in.Admin, "POST", in.URL+"/v1/entries", body, &e); status != http.StatusCreated {
		t.Fatalf("create entry: %d %s", status, raw)
	}
	return e
}

// startBoth runs test against a server on SQLite and one on PostgreSQL.
func startBoth(t *testing.T, test func(t *testing.T, in *servertest.Instance)) {
	t.Run("sqlite", func(t *testing.T) { test(t, servertest.Start(t, servertest.Options{})) })
	t.Run("postgres", func(t *testing.T) {
		test(t, servertest.Start(t, servertest.Options{StoreURL: servertest.PostgresURL(t)}))
	})
}

func TestEntryCreateReadListUpdateDeleteRoundTrip(t *testing.T) { startBoth(t, testEntryRoundTrip) }

func testEntryRoundTrip(t *testing.T, in *servertest.Instance) {

	created := createEntry(t, in, map[string]any{
		"spiffe_id": "spiffe://test.internal/app/web", "parent": node1,
		"selectors": []string{"unix:uid:1000", " unix:path:/usr/bin/web", "unix:uid:1000"},
		"dns_names": []string{"web.example.internal"}, "hint": "internal",
	})
	if created.ID == "" || created.Revision <= 0 || created.CreatedAt.IsZero() || !created.CreatedAt.Equal(created.UpdatedAt) {
		t.Fatalf("created entry lacks id, revision or times: %+v", created)
	}
	// Selectors are trimmed, sorted and de-duplicated; lifetimes default.
	if !slices.Equal(created.Selectors, []string{"unix:path:/usr/bin/web", "unix:uid:1000"}) || created.X509TTL != "1h0m0s" || created.JWTTTL != "5m0s" {
		t.Errorf("created entry %+v", created)
	}
	if ev := lastEvent(t, in); ev.Type != audit.TypeEntryCreated || ev.Subject != created.ID || ev.Actor == "" {
		t.Errorf("last audit event %+v", ev)
	}

	var got entryJSON
	if status, raw := do(t, in.Admin, "GET", in.URL+"/v1/entries/"+created.ID, nil, &got); status != http.StatusOK {
		t.Fatalf("get entry: %d %s", status, raw)
	}
	if got.SPIFFEID != created.SPIFFEID || got.Hint != "internal" || !slices.Equal(got.DNSNames, []string{"web.example.internal"}) || got.Revision != created.Revision {
		t.Errorf("got %+v, created %+v", got, created)
	}

	second := createEntry(t, in, map[string]any{"spiffe_id": "spiffe://test.internal/app/db", "parent": "x509pop:subject:cn:db-1",
		"selectors": []string{"unix:user:postgres"}, "x509_ttl": "4h", "jwt_ttl": "10m"})
	if second.X509TTL != "4h0m0s" || second.JWTTTL != "10m0s" || second.Revision <= created.Revision {
		t.Errorf("second entry %+v", second)
	}

	// Listing: everything, by filter, and page by page.
	var all entryList
	do(t, in.Admin, "GET", in.URL+"/v1/entries", nil, &all)
	if len(all.Entries) != 2 || all.Next != "" {
		t.Fatalf("list: %+v", all)
	}
	var bySPIFFE, byParent entryList
	do(t, in.Admin, "GET", in.URL+"/v1/entries?spiffe_id="+url.QueryEscape("spiffe://test.internal/app/db"), nil, &bySPIFFE)
	do(t, in.Admin, "GET", in.URL+"/v1/entries?parent="+url.QueryEscape(node1), nil, &byParent)
	if len(bySPIFFE.Entries) != 1 || bySPIFFE.Entries[0].ID != second.ID || len(byParent.Entries) != 1 || byParent.Entries[0].ID != created.ID {
		t.Errorf("filtered lists: %+v / %+v", bySPIFFE, byParent)
	}
	var seen []string
	for after := ""; ; {
		var page entryList
		if status, raw := do(t, in.Admin, "GET", in.URL+"/v1/entries?limit=1&after="+after, nil, &page); status != http.StatusOK {
			t.Fatalf("page: %d %s", status, raw)
		}
		for _, e := range page.Entries {
			seen = append(seen, e.ID)
		}
		if page.Next == "" {
			break
		}
		after = page.Next
	}
	want := []string{created.ID, second.ID}
	slices.Sort(want)
	if !slices.Equal(seen, want) {
		t.Errorf("paged through %v, want %v", seen, want)
	}
	status, raw := do(t, in.Admin, "GET", in.URL+"/v1/entries?limit=0", nil, nil)
	wantError(t, status, raw, http.StatusBadRequest, "bad_request")

	// PUT replaces the whole entry: fields not given fall back.
	var updated entryJSON
	if status, raw := do(t, in.Admin, "PUT", in.URL+"/v1/entries/"+created.ID, map[string]any{
		"spiffe_id": "spiffe://test.internal/app/web", "parent": node1, "selectors": []string{"unix:uid:1001"}, "x509_ttl": "30m",
	}, &updated); status != http.StatusOK {
		t.Fatalf("update: %d %s", status, raw)
	}
	if updated.ID != created.ID || !slices.Equal(updated.Selectors, []string{"unix:uid:1001"}) || updated.X509TTL != "30m0s" ||
		updated.Hint != "" || len(updated.DNSNames) != 0 || updated.Revision <= second.Revision ||
		updated.CreatedAt.Sub(created.CreatedAt).Abs() > time.Millisecond || updated.UpdatedAt.Before(created.CreatedAt) {
		t.Errorf("updated %+v", updated)
	}
	if ev := lastEvent(t, in); ev.Type != audit.TypeEntryUpdated || ev.Subject != created.ID {
		t.Errorf("last audit event %+v", ev)
	}

	if status, raw := do(t, in.Admin, "DELETE", in.URL+"/v1/entries/"+created.ID, nil, nil); status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", status, raw)
	}
	if ev := lastEvent(t, in); ev.Type != audit.TypeEntryDeleted || ev.Subject != created.ID {
		t.Errorf("last audit event %+v", ev)
	}
	status, raw = do(t, in.Admin, "GET", in.URL+"/v1/entries/"+created.ID, nil, nil)
	wantError(t, status, raw, http.StatusNotFound, "not_found")
}

func TestEntryBadInputIsRefused(t *testing.T) {
	in := servertest.Start(t, servertest.Options{})
	with := func(field string, value any) map[string]any {
		b := webEntry()
		if value == nil {
			delete(b, field)
		} else {
			b[field] = value
		}
		return b
	}
	for _, tc := range []struct {
		name       string
		body       any
		wantStatus int
		wantCode   string
		wantMsg    string
	}{
		{"bad-spiffe-id", with("spiffe_id", "web.example.internal"), 400, "bad_request", "not a SPIFFE ID"},
		{"bad-spiffe-id-other-trust-domain", with("spiffe_id", "spiffe://other.internal/web"), 400, "bad_request", "trust domain"},
		{"bad-spiffe-id-trust-domain-only", with("spiffe_id", "spiffe://test.internal"), 400, "bad_request", "needs a path"},
		{"bad-spiffe-id-reserved", with("spiffe_id", "spiffe://test.internal/meshpki/admin/eve"), 403, "forbidden", "reserved"},
		{"bad-spiffe-id-missing", with("spiffe_id", nil), 400, "bad_request", "spiffe_id"},
		{"bad-parent-missing", with("parent", nil), 400, "bad_request", "parent"},
		{"bad-parent-other-trust-domain", with("parent", "spiffe://other.internal/node/n1"), 400, "bad_request", "parent"},
		{"bad-parent-workload-selector", with("parent", "unix:uid:0"), 400, "bad_request", "node selector"},
		{"bad-selectors-missing", with("selectors", nil), 400, "bad_request", "at least one"},
		{"bad-selector-unknown-kind", with("selectors", []string{"k8s:ns:default"}), 400, "bad_request", "unknown kind"},
		{"bad-selector-node-kind", with("selectors", []string{"x509pop:subject:cn:web-1"}), 400, "bad_request", "not a workload"},
		{"bad-selector-uid-not-number", with("selectors", []string{"unix:uid:root"}), 400, "bad_request", "number"},
		{"bad-x509-ttl-too-short", with("x509_ttl", "1m"), 400, "bad_request", "lifetime"},
		{"bad-x509-ttl-too-long", with("x509_ttl", "720h"), 400, "bad_request", "lifetime"},
		{"bad-jwt-ttl-too-short", with("jwt_ttl", "10s"), 400, "bad_request", "lifetime"},
		{"bad-ttl-not-duration", with("x509_ttl", "soon"), 400, "bad_request", "x509_ttl"},
		{"bad-ttl-negative", with("jwt_ttl", "-5m"), 400, "bad_request", "jwt_ttl"},
		{"bad-dns-name", with("dns_names", []string{"not a name"}), 400, "bad_request", "dns"},
		{"bad-unknown-field", with("ttl", "1h"), 400, "bad_request", "unknown field"},
		{"bad-json", `{"spiffe_id":`, 400, "bad_request", "JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, raw := do(t, in.Admin, "POST", in.URL+"/v1/entries", tc.body, nil)
			e := wantError(t, status, raw, tc.wantStatus, tc.wantCode)
			if !strings.Contains(e.Error.Message, tc.wantMsg) {
				t.Errorf("message %q does not mention %q", e.Error.Message, tc.wantMsg)
			}
		})
	}
	var list entryList
	do(t, in.Admin, "GET", in.URL+"/v1/entries", nil, &list)
	if len(list.Entries) != 0 {
		t.Errorf("refused entries were recorded: %+v", list.Entries)
	}
	// The reserved namespace is policy: its refusal is audited.
	do(t, in.Admin, "POST", in.URL+"/v1/entries", with("spiffe_id", "spiffe://test.internal/meshpki/x"), nil)
	if ev := lastEvent(t, in); ev.Type != audit.TypeRequestDenied || ev.Outcome != "denied" {
		t.Errorf("last audit event %+v", ev)
	}
}

func TestEntryDuplicateConflictsAndUnknownIDIsNotFound(t *testing.T) {
	startBoth(t, testEntryConflictAndNotFound)
}

func testEntryConflictAndNotFound(t *testing.T, in *servertest.Instance) {
	first := createEntry(t, in, webEntry())

	status, raw := do(t, in.Admin, "POST", in.URL+"/v1/entries", webEntry(), nil)
	wantError(t, status, raw, http.StatusConflict, "conflict")
	// The same SPIFFE ID under another parent is a different entry.
	other := webEntry()
	other["parent"] = "spiffe://test.internal/node/n2"
	second := createEntry(t, in, other)
	// Updating the second into a copy of the first conflicts too.
	status, raw = do(t, in.Admin, "PUT", in.URL+"/v1/entries/"+second.ID, webEntry(), nil)
	wantError(t, status, raw, http.StatusConflict, "conflict")

	for _, req := range []struct {
		method string
		body   any
	}{{"GET", nil}, {"PUT", webEntry()}, {"DELETE", nil}} {
		status, raw := do(t, in.Admin, req.method, in.URL+"/v1/entries/no-such-entry", req.body, nil)
		if e := wantError(t, status, raw, http.StatusNotFound, "not_found"); !strings.Contains(e.Error.Message, "no-such-entry") {
			t.Errorf("%s: message %q does not name the id", req.method, e.Error.Message)
		}
	}
	var got entryJSON
	if status, raw := do(t, in.Admin, "GET", in.URL+"/v1/entries/"+first.ID, nil, &got); status != http.StatusOK || !slices.Equal(got.Selectors, first.Selectors) {
		t.Fatalf("first entry changed: %d %s", status, raw)
	}
}

func TestSPIFFEEndpointsNeedAnAdminCertificate(t *testing.T) {
	in := servertest.Start(t, servertest.Options{})
	addProvisioner(t, in, "web", webPolicy)
	key, csr := newCSR(t, keys.ECP256, "api", "api.example.internal")
	var got issued
	do(t, in.Anonymous, "POST", in.URL+"/v1/sign", map[string]any{"csr": csr, "token": newToken(t, in, "web", "api", "api.example.internal")}, &got)
	holder := tlsCert(t, got.Certificate, key)
	for _, ep := range []struct {
		method, path string
		body         any
	}{
		{"GET", "/v1/entries", nil}, {"POST", "/v1/entries", webEntry()}, {"GET", "/v1/entries/x", nil},
		{"PUT", "/v1/entries/x", webEntry()}, {"DELETE", "/v1/entries/x", nil},
		{"GET", "/v1/nodes", nil}, {"POST", "/v1/nodes/evict", map[string]any{"spiffe_id": node1}},
		{"POST", "/v1/tokens", map[string]any{"join": true, "spiffe_id": node1}},
	} {
		status, raw := do(t, in.Anonymous, ep.method, in.URL+ep.path, ep.body, nil)
		wantError(t, status, raw, http.StatusUnauthorized, "unauthorized")
		status, raw = do(t, in.Client(&holder), ep.method, in.URL+ep.path, ep.body, nil)
		wantError(t, status, raw, http.StatusForbidden, "forbidden")
	}
}

func TestJoinTokenIsMintedForTheNode(t *testing.T) {
	in := servertest.Start(t, servertest.Options{})
	keyring := testKeyring(t, in)
	joinAudience := in.Server.Authority().JoinAudience()

	for _, tc := range []struct {
		name    string
		ttl     string
		wantTTL time.Duration
	}{{"default-ttl", "", ca.DefaultJoinTTL}, {"given-ttl", "2h", 2 * time.Hour}} {
		t.Run(tc.name, func(t *testing.T) {
			body := map[string]any{"join": true, "spiffe_id": node1}
			if tc.ttl != "" {
				body["ttl"] = tc.ttl
			}
			var tok struct {
				Token       string    `json:"token"`
				ID          string    `json:"id"`
				ExpiresAt   time.Time `json:"expires_at"`
				Provisioner *string   `json:"provisioner"`
			}
			start := time.Now()
			if status, raw := do(t, in.Admin, "POST", in.URL+"/v1/tokens", body, &tok); status != http.StatusCreated {
				t.Fatalf("join token: %d %s", status, raw)
			}
			if tok.Token == "" || tok.ID == "" || tok.Provisioner == nil || *tok.Provisioner != "" {
				t.Fatalf("join token response %+v", tok)
			}
			if left := tok.ExpiresAt.Sub(start); left < tc.wantTTL-time.Minute || left > tc.wantTTL+time.Minute {
				t.Errorf("expires in %s, want %s", left, tc.wantTTL)
			}
			claims, err := keyring.Verify(tok.Token, joinAudience, token.PurposeJoin, time.Now())
			if err != nil || claims.Subject != node1 || claims.ID != tok.ID {
				t.Fatalf("join token claims %+v, %v", claims, err)
			}
			// It is no certificate token.
			if _, err := keyring.Verify(tok.Token, in.Server.URL()+"/v1/sign", token.PurposeSign, time.Now()); err == nil {
				t.Error("a join token verifies as a sign token")
			}
			if ev := lastEvent(t, in); ev.Type != audit.TypeTokenCreated || ev.Subject != tok.ID || ev.Detail["spiffe_id"] != node1 {
				t.Errorf("last audit event %+v", ev)
			}
		})
	}

	for _, tc := range []struct {
		name       string
		body       map[string]any
		wantStatus int
		wantCode   string
	}{
		{"bad-join-with-subject", map[string]any{"join": true, "spiffe_id": node1, "subject": "n1"}, 400, "bad_request"},
		{"bad-join-with-sans", map[string]any{"join": true, "spiffe_id": node1, "sans": []string{"n1.example.internal"}}, 400, "bad_request"},
		{"bad-join-without-spiffe-id", map[string]any{"join": true}, 400, "bad_request"},
		{"bad-join-other-trust-domain", map[string]any{"join": true, "spiffe_id": "spiffe://other.internal/node/n1"}, 400, "bad_request"},
		{"bad-join-reserved", map[string]any{"join": true, "spiffe_id": "spiffe://test.internal/meshpki/server"}, 403, "forbidden"},
		{"bad-join-ttl-too-long", map[string]any{"join": true, "spiffe_id": node1, "ttl": "200h"}, 400, "bad_request"},
		{"bad-join-unknown-field", map[string]any{"join": true, "spiffe_id": node1, "node": "n1"}, 400, "bad_request"},
		{"bad-spiffe-id-without-join", map[string]any{"spiffe_id": node1, "subject": "n1", "sans": []string{"n1.example.internal"}}, 400, "bad_request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, raw := do(t, in.Admin, "POST", in.URL+"/v1/tokens", tc.body, nil)
			wantError(t, status, raw, tc.wantStatus, tc.wantCode)
		})
	}
}

func TestCertificateTokensStillWorkBesideJoinTokens(t *testing.T) {
	in := servertest.Start(t, servertest.Options{})
	addProvisioner(t, in, "web", webPolicy)
	tok := newToken(t, in, "web", "api", "api.example.internal")
	_, csr := newCSR(t, keys.ECP256, "api")
	if status, raw := do(t, in.Anonymous, "POST", in.URL+"/v1/sign", map[string]any{"csr": csr, "token": tok}, nil); status != http.StatusCreated {
		t.Fatalf("sign with a certificate token: %d %s", status, raw)
	}
	// The body checks of certificate tokens are unchanged.
	status, raw := do(t, in.Admin, "POST", in.URL+"/v1/tokens", `{"subject":"api","sans":["api.example.internal"]} {}`, nil)
	wantError(t, status, raw, http.StatusBadRequest, "bad_request")
	status, raw = do(t, in.Admin, "POST", in.URL+"/v1/tokens", "", nil)
	wantError(t, status, raw, http.StatusBadRequest, "bad_request")
}

type nodeJSON struct {
	SPIFFEID    string   `json:"spiffe_id"`
	Attestation string   `json:"attestation"`
	Selectors   []string `json:"selectors"`
	CertSerial  string   `json:"cert_serial"`
	Evicted     bool     `json:"evicted"`
}

func TestNodesListAndEviction(t *testing.T) { startBoth(t, testNodesListAndEviction) }

func testNodesListAndEviction(t *testing.T, in *servertest.Instance) {

	var list struct {
		Nodes []nodeJSON `json:"nodes"`
	}
	status, raw := do(t, in.Admin, "GET", in.URL+"/v1/nodes", nil, &list)
	if status != http.StatusOK || list.Nodes == nil || len(list.Nodes) != 0 {
		t.Fatalf("empty node list: %d %s", status, raw)
	}
	status, raw = do(t, in.Admin, "POST", in.URL+"/v1/nodes/evict", map[string]any{"spiffe_id": node1}, nil)
	if e := wantError(t, status, raw, http.StatusNotFound, "not_found"); !strings.Contains(e.Error.Message, node1) {
		t.Errorf("message %q does not name the node", e.Error.Message)
	}
	for _, body := range []any{map[string]any{}, map[string]any{"spiffe_id": "n1"}, map[string]any{"spiffe_id": "spiffe://other.internal/node/n1"}} {
		status, raw = do(t, in.Admin, "POST", in.URL+"/v1/nodes/evict", body, nil)
		wantError(t, status, raw, http.StatusBadRequest, "bad_request")
	}

	// A node as the node API records it at attestation, with its SVID.
	now := time.Now()
	res, err := in.Server.Store().CommitIssuances(context.Background(), []store.Issuance{{Certificate: &store.Certificate{Serial: "5f0c",
		Issuer: "default", Names: []string{node1}, NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour), DER: []byte{0x30, 0}}}})
	if err != nil || res[0] != nil {
		t.Fatal(err, res)
	}
	n := store.Node{SPIFFEID: node1, Attestation: "join_token", Selectors: []string{"join_token:" + node1}, CertSerial: "5f0c", CreatedAt: now, UpdatedAt: now}
	if err := in.Server.Store().PutNode(context.Background(), n, audit.Event{Time: now, Type: audit.TypeNodeAttested, Actor: "test", Subject: node1, Outcome: "success"}); err != nil {
		t.Fatal(err)
	}
	do(t, in.Admin, "GET", in.URL+"/v1/nodes", nil, &list)
	if len(list.Nodes) != 1 || list.Nodes[0].SPIFFEID != node1 || list.Nodes[0].Attestation != "join_token" || list.Nodes[0].CertSerial != "5f0c" || list.Nodes[0].Evicted {
		t.Fatalf("node list %+v", list.Nodes)
	}
	var evicted struct {
		Evicted string `json:"evicted"`
	}
	if status, raw := do(t, in.Admin, "POST", in.URL+"/v1/nodes/evict", map[string]any{"spiffe_id": node1}, &evicted); status != http.StatusOK || evicted.Evicted != node1 {
		t.Fatalf("evict: %d %s", status, raw)
	}
	// The eviction, then the revocation of the node's SVID.
	if ev := lastEvent(t, in); ev.Type != audit.TypeCertificateRevoked || ev.Subject != "5f0c" || ev.Detail["reason"] != "privilegeWithdrawn" || !strings.HasPrefix(ev.Actor, "admin:") {
		t.Errorf("last audit event %+v", ev)
	}
	if c, err := in.Server.Store().GetCertificate(context.Background(), "5f0c"); err != nil || c.Status != store.StatusRevoked {
		t.Errorf("the evicted node's SVID: %+v %v", c, err)
	}
	do(t, in.Admin, "GET", in.URL+"/v1/nodes", nil, &list)
	if len(list.Nodes) != 1 || !list.Nodes[0].Evicted {
		t.Fatalf("node list after eviction %+v", list.Nodes)
	}
}

func TestSPIFFEProvisionerPolicyDecidesEntries(t *testing.T) {
	in := servertest.Start(t, servertest.Options{})
	status, raw := do(t, in.Admin, "POST", in.URL+"/v1/provisioners", provisioner{Name: "apps", Type: "spiffe", Policy: map[string]any{
		"allow_uri":   []string{"spiffe://test.internal/app/"},
		"allow_dns":   []string{"*.apps.example.internal"},
		"default_ttl": "1h",
		"max_ttl":     "4h",
	}}, nil)
	if status != http.StatusCreated {
		t.Fatalf("add spiffe provisioner: %d %s", status, raw)
	}

	createEntry(t, in, map[string]any{"spiffe_id": "spiffe://test.internal/app/web", "parent": node1, "selectors": []string{"unix:uid:1000"},
		"dns_names": []string{"web.apps.example.internal"}, "x509_ttl": "2h"})

	for _, tc := range []struct {
		name string
		body map[string]any
	}{
		{"bad-spiffe-id-outside-allow-uri", map[string]any{"spiffe_id": "spiffe://test.internal/db/main", "parent": node1, "selectors": []string{"unix:uid:1000"}}},
		{"bad-dns-name-outside-allow-dns", map[string]any{"spiffe_id": "spiffe://test.internal/app/api", "parent": node1, "selectors": []string{"unix:uid:1000"},
			"dns_names": []string{"api.example.internal"}}},
		{"bad-x509-ttl-over-max-ttl", map[string]any{"spiffe_id": "spiffe://test.internal/app/api", "parent": node1, "selectors": []string{"unix:uid:1000"}, "x509_ttl": "8h"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, raw := do(t, in.Admin, "POST", in.URL+"/v1/entries", tc.body, nil)
			if e := wantError(t, status, raw, http.StatusForbidden, "forbidden"); !strings.Contains(e.Error.Message, "apps") {
				t.Errorf("message %q does not name the provisioner", e.Error.Message)
			}
			ev := lastEvent(t, in)
			if ev.Type != audit.TypeRequestDenied || ev.Outcome != "denied" || ev.Subject != tc.body["spiffe_id"] || !strings.HasPrefix(ev.Actor, "admin:") || ev.Detail["reason"] == "" {
				t.Errorf("last audit event %+v", ev)
			}
		})
	}

	// An update is decided the same way.
	var list entryList
	do(t, in.Admin, "GET", in.URL+"/v1/entries", nil, &list)
	if len(list.Entries) != 1 {
		t.Fatalf("entries: %+v", list.Entries)
	}
	status, raw = do(t, in.Admin, "PUT", in.URL+"/v1/entries/"+list.Entries[0].ID,
		map[string]any{"spiffe_id": "spiffe://test.internal/db/main", "parent": node1, "selectors": []string{"unix:uid:1000"}}, nil)
	wantError(t, status, raw, http.StatusForbidden, "forbidden")
}
