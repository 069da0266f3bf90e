package web_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/meshpki/meshpki/internal/servertest"
	"github.com/meshpki/meshpki/internal/store"
)

// browser starts headless Chromium (Debian's chromium) for one test. CI
// installs it; elsewhere the test skips without it.
func browser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("chromium is needed (.ci/run installs it)")
		}
		t.Skip("chromium is not installed")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		// The test CA's root is not the browser's.
		chromedp.Flag("ignore-certificate-errors", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first call starts the browser, which lives as long as its
	// context: this one, without a timeout; steps get theirs (step).
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// step runs browser actions with a time limit.
func step(t *testing.T, ctx context.Context, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatal(err)
	}
}

// value runs one browser action that returns a value, with a time limit.
func value[T any](t *testing.T, ctx context.Context, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// screenshot saves the page as an artifact under the test's temp dir,
// and into MESHPKI_SCREENSHOTS (docs/dashboard when regenerating the
// pictures docs/DASHBOARD.md shows) when that is set.
func screenshot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	png := value(t, ctx, chromedp.FullScreenshot(100))
	for _, d := range []string{dir, os.Getenv("MESHPKI_SCREENSHOTS")} {
		if d == "" {
			continue
		}
		if err := os.WriteFile(filepath.Join(d, name), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("screenshot %s", filepath.Join(dir, name))
}

func mintLogin(t testing.TB, in *servertest.Instance) string {
	t.Helper()
	resp, err := in.Admin.Post(in.URL+"/v1/ui/logins", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var login struct{ URL string }
	if err := json.NewDecoder(resp.Body).Decode(&login); err != nil {
		t.Fatal(err)
	}
	return login.URL
}

// In headless Chromium: sign in through the one-time URL, read the
// overview, filter the inventory, open a certificate, revoke it and see it
// revoked, and see an alert fire.
func TestDashboardInChromium(t *testing.T) {
	ctx := browser(t)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }))
	defer hook.Close()
	in := servertest.Start(t, servertest.Options{AllowEgress: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	now := time.Now()
	var items []store.Issuance
	for i, name := range []string{"api", "web", "batch", "billing", "search"} {
		items = append(items, store.Issuance{Certificate: &store.Certificate{Serial: store.Serial("5f0c3a9e0" + string(rune('1'+i))), Provisioner: "web",
			Issuer: "default", IssuerGeneration: 1, Subject: name + ".example.internal", Names: []string{name + ".example.internal", "spiffe://test.internal/ns/" + name},
			NotBefore: now.Add(-20 * time.Hour), NotAfter: now.Add(time.Duration(i*40+3) * time.Hour)}})
		c := items[len(items)-1].Certificate
		c.DER = selfSigned(t, c.Subject, c.NotBefore, c.NotAfter)
	}
	if res, err := in.Server.Store().CommitIssuances(t.Context(), items); err != nil || res[0] != nil {
		t.Fatal(err, res)
	}
	shots := t.TempDir()

	step(t, ctx,
		chromedp.Navigate(mintLogin(t, in)),
		chromedp.WaitVisible("#signin"),
		chromedp.Click("#signin"),
		chromedp.WaitVisible("#within-7d"),
	)
	// api, web and batch expire within 3 days; the server's own TLS
	// certificate within a day too.
	if n := value(t, ctx, chromedp.Text("#within-7d")); n != "6" {
		t.Fatalf("expiring within 7 days: %q", n)
	}
	screenshot(t, ctx, shots, "overview.png")
	step(t, ctx,
		chromedp.Click(`//nav/a[contains(., "Inventory")]`),
		chromedp.WaitVisible("table.inventory"),
	)
	text := value(t, ctx, chromedp.Text("table.inventory"))
	if !strings.Contains(text, "billing.example.internal") || !strings.Contains(text, "expires in") {
		t.Fatalf("inventory:\n%s", text)
	}
	screenshot(t, ctx, shots, "inventory.png")
	// On a phone's width the table becomes one card per certificate, and
	// nothing is wider than the screen.
	step(t, ctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile))
	if width := value(t, ctx, chromedp.Evaluate[int]("document.documentElement.scrollWidth")); width > 390 {
		t.Errorf("at 390 px the page is %d px wide", width)
	}
	screenshot(t, ctx, shots, "inventory-phone.png")
	step(t, ctx, chromedp.EmulateViewport(1280, 900))

	// Latest expiry first: the admin credential (30 days) leads.
	step(t, ctx,
		chromedp.SetValue("#order", "latest"),
		chromedp.Submit("form.filters"),
		chromedp.WaitVisible(`//a[@id="sort" and contains(., "latest first")]`),
	)
	if first := value(t, ctx, chromedp.Text("table.inventory tbody tr")); !strings.Contains(first, "meshpki/admin/bootstrap") {
		t.Fatalf("latest first, the first row: %q", first)
	}
	step(t, ctx,
		chromedp.SetValue(`input[name="name"]`, "spiffe://test.internal/ns/batch"),
		chromedp.Submit("form.filters"),
		chromedp.WaitVisible(`//td[contains(., "batch.example.internal")]`),
	)
	if text := value(t, ctx, chromedp.Text("table.inventory tbody")); strings.Contains(text, "billing") || !strings.Contains(text, "batch") {
		t.Fatalf("filtered inventory:\n%s", text)
	}
	step(t, ctx,
		chromedp.Click(`//a[contains(., "batch.example.internal")]`),
		chromedp.WaitVisible("#status"),
	)
	if status := value(t, ctx, chromedp.Text("#status")); strings.TrimSpace(status) != "valid" {
		t.Fatalf("detail: %q", status)
	}
	if chain := value(t, ctx, chromedp.Text("#chain")); !strings.Contains(chain, "batch.example.internal (this certificate)") || !strings.Contains(chain, "Intermediate CA") {
		t.Fatalf("chain: %q", chain)
	}
	screenshot(t, ctx, shots, "certificate.png")
	step(t, ctx,
		chromedp.SetValue("#reason", "keyCompromise"),
		chromedp.Click("#confirm"),
		chromedp.Click("#revoke"),
		chromedp.WaitVisible(`//dd[@id="status" and contains(., "revoked")]`),
	)
	if status := value(t, ctx, chromedp.Text("#status")); !strings.Contains(status, "keyCompromise") {
		t.Fatalf("after revoking: %q", status)
	}
	screenshot(t, ctx, shots, "revoked.png")

	// api.example.internal is past two thirds of its life and not renewed.
	adminPost(t, in, "/v1/alerts/channels", `{"name":"ops","kind":"webhook","url":"`+hook.URL+`"}`)
	adminPost(t, in, "/v1/alerts/rules", `{"name":"soon","channel":"ops","names":["api.example.internal"],"checks":["renewal_overdue"]}`)
	deadline := time.Now().Add(20 * time.Second)
	for {
		step(t, ctx, chromedp.Navigate(in.URL+"/ui/alerts"), chromedp.WaitVisible("#firing"))
		if text := value(t, ctx, chromedp.Text("#firing tbody")); strings.Contains(text, "soon") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the alert did not fire")
		}
		time.Sleep(200 * time.Millisecond)
	}
	screenshot(t, ctx, shots, "alerts.png")
	if rec, _ := in.Server.Store().GetCertificate(t.Context(), "5f0c3a9e03"); rec.Status != store.StatusRevoked {
		t.Fatalf("the store says %s", rec.Status)
	}

	// The read-only pages: a provisioner's policy with the dry-run box,
	// SPIFFE entries, and the audit log verified.
	adminPost(t, in, "/v1/provisioners", `{"name":"web","type":"token","policy":{"allow_dns":["*.example.internal"],"deny_dns":["admin.example.internal"]}}`)
	adminPost(t, in, "/v1/entries", `{"spiffe_id":"spiffe://test.internal/ns/web","parent":"x509pop:subject:cn:web-1","selectors":["unix:uid:1000"],"x509_ttl":"1h"}`)
	step(t, ctx,
		chromedp.Click(`//nav/a[contains(., "Provisioners")]`),
		chromedp.WaitVisible(`input[name="names"]`),
		chromedp.SetValue(`input[name="names"]`, "admin.example.internal"),
		chromedp.Submit(`input[name="names"]`),
		chromedp.WaitVisible("#decision"),
	)
	if d := value(t, ctx, chromedp.Text("#decision")); !strings.Contains(d, "Denied") {
		t.Fatalf("dry run: %q", d)
	}
	screenshot(t, ctx, shots, "provisioners.png")
	step(t, ctx, chromedp.Click(`//nav/a[contains(., "SPIFFE")]`), chromedp.WaitVisible(`//td[contains(., "unix:uid:1000")]`))
	screenshot(t, ctx, shots, "spiffe.png")
	step(t, ctx,
		chromedp.Click(`//nav/a[contains(., "Audit")]`),
		chromedp.WaitVisible("#verify"),
		chromedp.Click("#verify"),
		chromedp.WaitVisible("#verified"),
	)
	if v := value(t, ctx, chromedp.Text("#verified")); !strings.HasPrefix(v, "Verified:") {
		t.Fatalf("audit verify: %q", v)
	}
	screenshot(t, ctx, shots, "audit.png")
}

// selfSigned is a certificate for name valid between the times: what the
// alert evaluator reads an issued certificate's expiry from.
func selfSigned(t *testing.T, name string, notBefore, notAfter time.Time) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: notBefore, NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}
