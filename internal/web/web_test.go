package web_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/meshpki/meshpki/internal/servertest"
	"github.com/meshpki/meshpki/internal/store"
)

type page struct {
	status int
	header http.Header
	body   string
}

func get(t testing.TB, c *http.Client, u string) page {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	return read(t, resp)
}

func post(t testing.TB, c *http.Client, u string, form url.Values) page {
	t.Helper()
	resp, err := c.PostForm(u, form)
	if err != nil {
		t.Fatal(err)
	}
	return read(t, resp)
}

func read(t testing.TB, resp *http.Response) page {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return page{resp.StatusCode, resp.Header, string(b)}
}

var hidden = regexp.MustCompile(`name="(token|csrf)" value="([^"]+)"`)

func field(t testing.TB, p page, name string) string {
	t.Helper()
	for _, m := range hidden.FindAllStringSubmatch(p.body, -1) {
		if m[1] == name {
			return m[2]
		}
	}
	t.Fatalf("no %s field in:\n%s", name, p.body)
	return ""
}

// Sign in through a one-time URL, see the inventory, revoke a certificate
// with the session's CSRF token, sign out; every refusal on the way is a
// page with the right status, and the headers hold the policy.
func TestDashboardSignInInventoryRevokeSignOut(t *testing.T) {
	in := servertest.Start(t, servertest.Options{})
	now := time.Now()
	c := &store.Certificate{Serial: "5f0c3a9e01", Provisioner: "web", Issuer: "default", IssuerGeneration: 1, Subject: "svc.example.internal",
		Names: []string{"svc.example.internal"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(48 * time.Hour), DER: []byte{0x30, 0}}
	older := *c
	older.Serial, older.NotAfter = "5f0c3a9e00", now.Add(time.Hour)
	c.RenewedFrom = older.Serial
	if res, err := in.Server.Store().CommitIssuances(t.Context(), []store.Issuance{{Certificate: &older}, {Certificate: c}}); err != nil || res[0] != nil || res[1] != nil {
		t.Fatal(err, res)
	}

	resp, err := in.Admin.Post(in.URL+"/v1/ui/logins", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	var login struct {
		URL     string
		Expires time.Time
	}
	if err := json.NewDecoder(resp.Body).Decode(&login); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("mint: %d %v", resp.StatusCode, err)
	}
	resp.Body.Close()
	if !strings.HasPrefix(login.URL, in.URL+"/ui/login?token=") || time.Until(login.Expires) > 6*time.Minute {
		t.Fatalf("login %+v", login)
	}
	if r, _ := in.Anonymous.Post(in.URL+"/v1/ui/logins", "application/json", strings.NewReader("{}")); r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("minted without an admin credential: %d", r.StatusCode)
	}

	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Transport: in.Anonymous.Transport, Jar: jar}
	if p := get(t, browser, in.URL+"/ui/"); p.status != http.StatusUnauthorized || !strings.Contains(p.body, "meshpki ui login") {
		t.Fatalf("without a session: %d", p.status)
	}
	loginPage := get(t, browser, login.URL)
	if loginPage.status != http.StatusOK || !strings.Contains(loginPage.header.Get("Content-Security-Policy"), "script-src 'self'") ||
		strings.Contains(loginPage.body, "<script>") {
		t.Fatalf("sign-in page: %d %v", loginPage.status, loginPage.header)
	}
	token := field(t, loginPage, "token")
	noRedirect := &http.Client{Transport: in.Anonymous.Transport, Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	signedIn := post(t, noRedirect, in.URL+"/ui/login", url.Values{"token": {token}})
	cookie := signedIn.header.Get("Set-Cookie")
	if signedIn.status != http.StatusSeeOther || !strings.Contains(cookie, "Secure") || !strings.Contains(cookie, "HttpOnly") || !strings.Contains(cookie, "SameSite=Strict") {
		t.Fatalf("sign in: %d, cookie %q", signedIn.status, cookie)
	}
	if again := post(t, &http.Client{Transport: in.Anonymous.Transport}, in.URL+"/ui/login", url.Values{"token": {token}}); again.status != http.StatusUnauthorized {
		t.Fatalf("the one-time URL worked twice: %d", again.status)
	}

	overview := get(t, browser, in.URL+"/ui/")
	// The certificate above and the server's own TLS certificate.
	if overview.status != http.StatusOK || !strings.Contains(overview.body, `id="within-7d">2<`) || !strings.Contains(overview.body, `id="firing">0<`) ||
		!strings.Contains(overview.body, `id="expired">0<`) || !strings.Contains(overview.body, `id="issued-day">4<`) || !strings.Contains(overview.body, `<svg class="timeline"`) {
		t.Fatalf("overview: %d\n%s", overview.status, overview.body)
	}
	inv := get(t, browser, in.URL+"/ui/inventory?name=svc.example.internal")
	if inv.status != http.StatusOK || !strings.Contains(inv.body, "5f0c3a9e01") || !strings.Contains(inv.body, "expires in") || !strings.Contains(inv.body, "admin:spiffe://") {
		t.Fatalf("inventory: %d\n%s", inv.status, inv.body)
	}
	for query, want := range map[string]bool{"serial=5F:0C:3A:9E:01": true, "serial=77": false, "issuer=default&provisioner=web": true,
		"provisioner=acme": false, "status=revoked": false, "status=valid&issuer=default": true} {
		p := get(t, browser, in.URL+"/ui/inventory?"+query)
		if p.status != http.StatusOK || strings.Contains(p.body, "5f0c3a9e01") != want {
			t.Errorf("inventory?%s: %d, lists it: %v", query, p.status, !want)
		}
	}
	// The server's own certificates expire later than the one above (its
	// TLS certificate in a day, its admin credential in 30): latest first
	// turns the order round, and the header's link says how.
	soonest := get(t, browser, in.URL+"/ui/inventory?source=issued")
	latest := get(t, browser, in.URL+"/ui/inventory?source=issued&sort=latest")
	if i, j := strings.Index(soonest.body, "5f0c3a9e00"), strings.Index(soonest.body, "meshpki/admin/bootstrap</a>"); i < 0 || j < 0 || i > j {
		t.Fatalf("soonest first:\n%s", soonest.body)
	}
	if i, j := strings.Index(latest.body, "5f0c3a9e00"), strings.Index(latest.body, "meshpki/admin/bootstrap</a>"); latest.status != http.StatusOK || i < 0 || j < 0 || i < j ||
		!strings.Contains(latest.body, `id="sort" href="/ui/inventory?source=issued"`) || !strings.Contains(soonest.body, `id="sort" href="/ui/inventory?sort=latest&amp;source=issued"`) {
		t.Fatalf("latest first:\n%s", latest.body)
	}
	for _, query := range []string{"within=soonish", "status=lost", "serial=xyz", "sort=sideways"} {
		if bad := get(t, browser, in.URL+"/ui/inventory?"+query); bad.status != http.StatusBadRequest || !strings.Contains(bad.body, `class="error"`) {
			t.Errorf("inventory?%s: %d", query, bad.status)
		}
	}
	if bad := get(t, browser, in.URL+"/ui/inventory?within=soonish"); bad.status != http.StatusBadRequest || !strings.Contains(bad.body, "give a duration") {
		t.Fatalf("a bad filter: %d", bad.status)
	}
	if old := get(t, browser, in.URL+"/ui/certificates/5f0c3a9e00"); !strings.Contains(old.body, "Renewed as") || !strings.Contains(old.body, `href="/ui/certificates/5f0c3a9e01"`) {
		t.Fatalf("the renewed certificate's page:\n%s", old.body)
	}
	detail := get(t, browser, in.URL+"/ui/certificates/5f0c3a9e01")
	if detail.status != http.StatusOK || !strings.Contains(detail.body, `id="status">valid`) || !strings.Contains(detail.body, "No scan has seen it.") {
		t.Fatalf("detail: %d\n%s", detail.status, detail.body)
	}
	csrf := field(t, detail, "csrf")
	revokeURL := in.URL + "/ui/certificates/5f0c3a9e01/revoke"
	for name, form := range map[string]url.Values{
		"no csrf":    {"reason": {"superseded"}, "confirm": {"yes"}},
		"stale csrf": {"reason": {"superseded"}, "confirm": {"yes"}, "csrf": {"x" + csrf}},
	} {
		if p := post(t, browser, revokeURL, form); p.status != http.StatusForbidden {
			t.Fatalf("%s: %d", name, p.status)
		}
	}
	if p := post(t, browser, revokeURL, url.Values{"reason": {"superseded"}, "csrf": {csrf}}); p.status != http.StatusBadRequest {
		t.Fatalf("without confirmation: %d", p.status)
	}
	done := post(t, browser, revokeURL, url.Values{"reason": {"superseded"}, "confirm": {"yes"}, "csrf": {csrf}})
	if done.status != http.StatusOK || !strings.Contains(done.body, `id="status">revoked`) || !strings.Contains(done.body, "superseded") ||
		!strings.Contains(done.body, "<td>certificate.revoked</td>") || !strings.Contains(done.body, "reason=superseded") {
		t.Fatalf("after revoking: %d\n%s", done.status, done.body)
	}
	if rec, _ := in.Server.Store().GetCertificate(t.Context(), "5f0c3a9e01"); rec.Status != store.StatusRevoked {
		t.Fatal("not revoked in the store")
	}

	if out := post(t, browser, in.URL+"/ui/logout", url.Values{"csrf": {csrf}}); out.status != http.StatusOK || !strings.Contains(out.body, "signed out") {
		t.Fatalf("sign out: %d", out.status)
	}
	if p := get(t, browser, in.URL+"/ui/"); p.status != http.StatusUnauthorized {
		t.Fatalf("after signing out: %d", p.status)
	}
	events, err := in.Server.Store().ListAudit(t.Context(), 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{}
	for _, e := range events {
		seen[e.Type] = e.Actor
	}
	for _, typ := range []string{"ui.login_created", "ui.signed_in", "certificate.revoked", "ui.signed_out"} {
		if !strings.HasPrefix(seen[typ], "admin:spiffe://") {
			t.Errorf("audit: %s by %q, want the admin", typ, seen[typ])
		}
	}
}
