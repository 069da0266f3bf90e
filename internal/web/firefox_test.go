package web_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/meshpki/meshpki/internal/servertest"
	"github.com/meshpki/meshpki/internal/store"
)

// firefox is headless Firefox (Debian's firefox-esr) driven over WebDriver
// BiDi, the W3C protocol Firefox serves itself on --remote-debugging-port:
// no geckodriver. It has one browsing context, the first tab.
type firefox struct {
	t    *testing.T
	conn *websocket.Conn
	id   int
	tab  string
}

// startFirefox starts the browser for one test and opens a session that
// accepts the test CA's certificates. CI installs firefox-esr; elsewhere
// the test skips without it.
func startFirefox(t *testing.T) *firefox {
	t.Helper()
	path, err := exec.LookPath("firefox-esr")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("firefox-esr is needed (.ci/run installs it)")
		}
		t.Skip("firefox-esr is not installed")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, path, "--headless", "--no-remote", "--profile", t.TempDir(), "--remote-debugging-port", "0", "about:blank")
	cmd.Env = append(os.Environ(), "MOZ_CRASHREPORTER_DISABLE=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	// Firefox names the port it chose on stderr; the rest of stderr is
	// drained so it never blocks on a full pipe.
	listening := regexp.MustCompile(`WebDriver BiDi listening on (ws://\S+)`)
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := listening.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
			}
		}
	}()
	var ws string
	select {
	case ws = <-found:
	case <-time.After(60 * time.Second):
		t.Fatal("firefox did not open its WebDriver BiDi port within 60s")
	}
	conn, _, err := websocket.DefaultDialer.Dial(ws+"/session", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ff := &firefox{t: t, conn: conn}
	ff.call("session.new", map[string]any{"capabilities": map[string]any{"alwaysMatch": map[string]any{"acceptInsecureCerts": true}}}, nil)
	var tree struct {
		Contexts []struct{ Context string }
	}
	ff.call("browsingContext.getTree", map[string]any{}, &tree)
	if len(tree.Contexts) == 0 {
		t.Fatal("firefox has no browsing context")
	}
	ff.tab = tree.Contexts[0].Context
	ff.call("browsingContext.setViewport", map[string]any{"context": ff.tab, "viewport": map[string]int{"width": 1280, "height": 900}}, nil)
	return ff
}

// send sends one command and waits up to 30s for its answer, skipping
// events: the answer's result, or the protocol's error and its message.
func (ff *firefox) send(method string, params any) (json.RawMessage, error) {
	ff.id++
	if err := ff.conn.WriteJSON(map[string]any{"id": ff.id, "method": method, "params": params}); err != nil {
		ff.t.Fatalf("%s: %v", method, err)
	}
	ff.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		var msg struct {
			ID      int
			Type    string
			Error   string
			Message string
			Result  json.RawMessage
		}
		if err := ff.conn.ReadJSON(&msg); err != nil {
			ff.t.Fatalf("%s: %v", method, err)
		}
		if msg.Type == "event" || msg.ID != ff.id {
			continue
		}
		if msg.Type == "error" {
			return nil, fmt.Errorf("%s: %s: %s", method, msg.Error, msg.Message)
		}
		return msg.Result, nil
	}
}

// call is send that fails the test on an error answer and decodes the
// result into out (if not nil).
func (ff *firefox) call(method string, params any, out any) {
	ff.t.Helper()
	res, err := ff.send(method, params)
	if err != nil {
		ff.t.Fatal(err)
	}
	if out != nil {
		if err := json.Unmarshal(res, out); err != nil {
			ff.t.Fatalf("%s: %v", method, err)
		}
	}
}

// navigate loads url and waits for the page to be complete.
func (ff *firefox) navigate(url string) {
	ff.t.Helper()
	ff.call("browsingContext.navigate", map[string]any{"context": ff.tab, "url": url, "wait": "complete"}, nil)
}

// eval evaluates a JavaScript expression in the page and returns its
// value as JSON (strings, numbers, booleans, null).
func (ff *firefox) eval(expr string) json.RawMessage {
	ff.t.Helper()
	var res struct {
		Type   string
		Result struct {
			Type  string
			Value json.RawMessage
		}
		ExceptionDetails struct{ Text string }
	}
	ff.call("script.evaluate", map[string]any{"expression": expr, "target": map[string]string{"context": ff.tab}, "awaitPromise": false}, &res)
	if res.Type != "success" {
		ff.t.Fatalf("%s: %s", expr, res.ExceptionDetails.Text)
	}
	return res.Result.Value
}

// text is the text of the first element matching a CSS selector ("" if
// none does).
func (ff *firefox) text(selector string) string {
	ff.t.Helper()
	var s string
	v := ff.eval(fmt.Sprintf(`(document.querySelector(%q) || {}).innerText || ""`, selector))
	if err := json.Unmarshal(v, &s); err != nil {
		ff.t.Fatal(err)
	}
	return s
}

// waitFor polls until a JavaScript condition holds in the page, for up to
// 30s: a navigation started by a click has ended when it does.
func (ff *firefox) waitFor(cond string) {
	ff.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var res struct {
			Type   string
			Result struct{ Value bool }
		}
		// Evaluated while the old page unloads, the expression may find no
		// realm: that is not yet, not a failure.
		out, err := ff.send("script.evaluate", map[string]any{"expression": "document.readyState === 'complete' && !!(" + cond + ")",
			"target": map[string]string{"context": ff.tab}, "awaitPromise": false})
		ok := err == nil && json.Unmarshal(out, &res) == nil && res.Type == "success" && res.Result.Value
		if ok {
			return
		}
		if time.Now().After(deadline) {
			ff.t.Fatalf("waited 30s for %s", cond)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// click moves the pointer onto the first element matching a CSS selector
// and clicks it, as a person would: through the browser's input handling,
// so form validation and default actions run.
func (ff *firefox) click(selector string) {
	ff.t.Helper()
	var found struct {
		Nodes []struct{ SharedID string }
	}
	ff.call("browsingContext.locateNodes", map[string]any{"context": ff.tab, "locator": map[string]string{"type": "css", "value": selector}, "maxNodeCount": 1}, &found)
	if len(found.Nodes) == 0 {
		ff.t.Fatalf("nothing matches %s", selector)
	}
	ff.eval(fmt.Sprintf(`document.querySelector(%q).scrollIntoView({block: "center"})`, selector))
	ff.call("input.performActions", map[string]any{"context": ff.tab, "actions": []any{map[string]any{
		"type": "pointer", "id": "mouse", "parameters": map[string]string{"pointerType": "mouse"},
		"actions": []any{
			map[string]any{"type": "pointerMove", "x": 0, "y": 0, "origin": map[string]any{"type": "element", "element": map[string]string{"sharedId": found.Nodes[0].SharedID}}},
			map[string]any{"type": "pointerDown", "button": 0},
			map[string]any{"type": "pointerUp", "button": 0},
		},
	}}}, nil)
}

// fill sets a form control's value, as typing or choosing would.
func (ff *firefox) fill(selector, value string) {
	ff.t.Helper()
	ff.eval(fmt.Sprintf(`document.querySelector(%q).value = %q`, selector, value))
}

// screenshot saves the whole page as an artifact under dir, and into
// MESHPKI_SCREENSHOTS when that is set.
func (ff *firefox) screenshot(dir, name string) {
	ff.t.Helper()
	var shot struct{ Data string }
	ff.call("browsingContext.captureScreenshot", map[string]any{"context": ff.tab, "origin": "document"}, &shot)
	png, err := base64.StdEncoding.DecodeString(shot.Data)
	if err != nil || len(png) == 0 {
		ff.t.Fatalf("screenshot: %d bytes, %v", len(png), err)
	}
	for _, d := range []string{dir, os.Getenv("MESHPKI_SCREENSHOTS")} {
		if d == "" {
			continue
		}
		if err := os.WriteFile(filepath.Join(d, name), png, 0o644); err != nil {
			ff.t.Fatal(err)
		}
	}
	ff.t.Logf("screenshot %s", filepath.Join(dir, name))
}

// In headless Firefox: sign in through the one-time URL, read the
// overview, filter the inventory, read it at a phone's width, open a
// certificate and its chain, revoke it and see it revoked, sign out.
func TestDashboardInFirefox(t *testing.T) {
	ff := startFirefox(t)
	in := servertest.Start(t, servertest.Options{})
	now := time.Now()
	var items []store.Issuance
	for i, name := range []string{"api", "web", "batch"} {
		c := &store.Certificate{Serial: store.Serial("6a0c3a9e0" + string(rune('1'+i))), Provisioner: "web", Issuer: "default", IssuerGeneration: 1,
			Subject: name + ".example.internal", Names: []string{name + ".example.internal", "spiffe://test.internal/ns/" + name},
			NotBefore: now.Add(-20 * time.Hour), NotAfter: now.Add(time.Duration(i*40+3) * time.Hour)}
		c.DER = selfSigned(t, c.Subject, c.NotBefore, c.NotAfter)
		items = append(items, store.Issuance{Certificate: c})
	}
	if res, err := in.Server.Store().CommitIssuances(t.Context(), items); err != nil || res[0] != nil {
		t.Fatal(err, res)
	}
	shots := t.TempDir()

	ff.navigate(mintLogin(t, in))
	ff.click("#signin")
	ff.waitFor(`document.querySelector("#within-7d")`)
	// api, web and batch, and the server's own TLS certificate.
	if n := ff.text("#within-7d"); n != "4" {
		t.Fatalf("expiring within 7 days: %q", n)
	}
	ff.screenshot(shots, "firefox-overview.png")

	ff.click(`nav a[href="/ui/inventory"]`)
	ff.waitFor(`document.querySelector("table.inventory")`)
	if text := ff.text("table.inventory"); !strings.Contains(text, "batch.example.internal") || !strings.Contains(text, "expires in") {
		t.Fatalf("inventory:\n%s", text)
	}
	ff.call("browsingContext.setViewport", map[string]any{"context": ff.tab, "viewport": map[string]int{"width": 390, "height": 844}, "devicePixelRatio": 2}, nil)
	var width int
	if err := json.Unmarshal(ff.eval("document.documentElement.scrollWidth"), &width); err != nil || width > 390 {
		t.Errorf("at 390 px the page is %d px wide (%v)", width, err)
	}
	ff.screenshot(shots, "firefox-inventory-phone.png")
	ff.call("browsingContext.setViewport", map[string]any{"context": ff.tab, "viewport": map[string]int{"width": 1280, "height": 900}, "devicePixelRatio": 1}, nil)

	// The expiry column's header turns the order round.
	ff.click("#sort")
	ff.waitFor(`location.search.includes("sort=latest") && document.querySelector("table.inventory")`)
	if first := ff.text("table.inventory tbody tr"); !strings.Contains(first, "meshpki/admin/bootstrap") {
		t.Fatalf("latest first, the first row: %q", first)
	}
	ff.fill(`input[name="name"]`, "spiffe://test.internal/ns/batch")
	ff.click(`form.filters button[type="submit"]`)
	ff.waitFor(`location.search.includes("name=") && document.querySelector("table.inventory")`)
	if text := ff.text("table.inventory tbody"); strings.Contains(text, "api.example") || !strings.Contains(text, "batch.example.internal") {
		t.Fatalf("filtered inventory:\n%s", text)
	}
	ff.click(`table.inventory a[href="/ui/certificates/6a0c3a9e03"]`)
	ff.waitFor(`document.querySelector("#status")`)
	if status := strings.TrimSpace(ff.text("#status")); status != "valid" {
		t.Fatalf("detail: %q", status)
	}
	if chain := ff.text("#chain"); !strings.Contains(chain, "batch.example.internal (this certificate)") {
		t.Fatalf("chain: %q", chain)
	}
	ff.screenshot(shots, "firefox-certificate.png")

	// Without the confirmation ticked the browser itself refuses to
	// submit (the box is required): nothing is revoked.
	ff.fill("#reason", "keyCompromise")
	ff.click("#revoke")
	if missing := string(ff.eval(`document.querySelector("#confirm").validity.valueMissing`)); missing != "true" {
		t.Fatalf("the unticked confirmation is not reported missing: %s", missing)
	}
	time.Sleep(300 * time.Millisecond) // a submission, had there been one, would have landed
	if rec, _ := in.Server.Store().GetCertificate(t.Context(), "6a0c3a9e03"); rec.Status != store.StatusValid {
		t.Fatalf("revoked without the confirmation: %s", rec.Status)
	}
	ff.click("#confirm")
	ff.click("#revoke")
	ff.waitFor(`(document.querySelector("#status") || {}).innerText.includes("revoked")`)
	if status := ff.text("#status"); !strings.Contains(status, "keyCompromise") {
		t.Fatalf("after revoking: %q", status)
	}
	if trail := ff.text("#trail"); !strings.Contains(trail, "certificate.revoked") {
		t.Fatalf("trail: %q", trail)
	}
	ff.screenshot(shots, "firefox-revoked.png")
	if rec, _ := in.Server.Store().GetCertificate(t.Context(), "6a0c3a9e03"); rec.Status != store.StatusRevoked {
		t.Fatalf("the store says %s", rec.Status)
	}

	ff.click(`form[action="/ui/logout"] button`)
	ff.waitFor(`document.body.innerText.includes("signed out")`)
	ff.navigate(in.URL + "/ui/")
	if body := ff.text("body"); !strings.Contains(body, "meshpki ui login") {
		t.Fatalf("after signing out:\n%s", body)
	}
}
