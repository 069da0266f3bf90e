package cli

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshpki/meshpki/internal/client"
	"github.com/meshpki/meshpki/internal/servertest"
)

// inventoryJSON runs inventory list --json with extra arguments.
func inventoryJSON(t *testing.T, data []string, args ...string) client.InventoryPage {
	t.Helper()
	out, _ := mustRun(t, append(append([]string{"inventory", "list", "--json", "--all"}, args...), data...)...)
	var page client.InventoryPage
	if err := json.Unmarshal([]byte(out), &page); err != nil {
		t.Fatalf("inventory list --json: %v\n%s", err, out)
	}
	return page
}

func hasCheck(fs []client.Finding, check string) bool {
	for _, f := range fs {
		if f.Check == check {
			return true
		}
	}
	return false
}

// serveLeaf serves leaf on a loopback TLS listener until the test ends.
func serveLeaf(t *testing.T, cert tls.Certificate) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				_, _ = io.Copy(io.Discard, c)
			}()
		}
	}()
	return ln.Addr().String()
}

// scan --report fills the server's inventory; inventory list and show read
// it; a certificate meshpki issued and then revoked carries the revoked
// finding.
func TestInventoryFromReports(t *testing.T) {
	clearConnectEnv(t)
	in := servertest.Start(t, servertest.Options{})
	data := []string{"--data", in.DataDir, "--password-file", in.PasswordFile}

	p := newTestPKI(t)
	key := newTestKey(t)
	dir := t.TempDir()
	healthy := filepath.Join(dir, "tls", "healthy.pem")
	writeTestFile(t, healthy, p.chainPEM(p.issue(t, key.Public(), "web", []string{"web.test"}, nil, nil, 20*time.Hour)), 0o644)
	overdue := filepath.Join(dir, "tls", "overdue.pem")
	writeTestFile(t, overdue, p.chainPEM(p.issue(t, key.Public(), "api", []string{"api.test"}, nil, nil, 10*time.Minute)), 0o644)

	// One issued by meshpki itself.
	mustRun(t, append([]string{"provisioner", "add", "token", "web", "--allow-dns", "*.example.internal"}, data...)...)
	tokOut, _ := mustRun(t, append([]string{"token", "create", "svc", "--san", "svc.example.internal", "--provisioner", "web"}, data...)...)
	certs := filepath.Join(dir, "certs")
	mustRun(t, "cert", "issue", "svc", "--san", "svc.example.internal", "--token", lastLine(tokOut),
		"--ca-url", in.URL, "--root", filepath.Join(in.DataDir, "ca", "root.crt"), "--out", certs)
	ours := filepath.Join(certs, "svc.crt")

	code, _, errOut := invokeCLI(t, "", append([]string{"scan", filepath.Join(dir, "tls"), ours, "--root", p.rootFile, "--report", in.URL}, data...)...)
	if code != exitChecked || !strings.Contains(errOut, "Reported 3 certificate chains to "+in.URL) {
		t.Fatalf("scan --report: exit %d\n%s", code, errOut)
	}

	scanned := inventoryJSON(t, data, "--source", "scanned")
	if len(scanned.Items) != 3 {
		t.Fatalf("scanned items: %+v", scanned.Items)
	}
	// Soonest expiry first: overdue (1h10m lifetime), then healthy (21h), then ours.
	first, second := scanned.Items[0], scanned.Items[1]
	if !strings.Contains(first.Subject, "CN=api") || !first.Active || !hasCheck(first.Findings, "renewal_overdue") {
		t.Errorf("overdue item: %+v", first)
	}
	// The server checks chains against its own roots, which do not
	// include the test PKI.
	if !strings.Contains(second.Subject, "CN=web") || !hasCheck(second.Findings, "untrusted_chain") || hasCheck(second.Findings, "renewal_overdue") {
		t.Errorf("healthy item: %+v", second)
	}
	issued := scanned.Items[2]
	if issued.IssuedSerial == "" || hasCheck(issued.Findings, "untrusted_chain") {
		t.Errorf("the certificate meshpki issued: %+v", issued)
	}
	// In the merged listing, meshpki's own certificate is its issued item.
	all := inventoryJSON(t, data, "--name", "svc.example.internal")
	if len(all.Items) != 1 || all.Items[0].Source != "issued" || all.Items[0].Serial != issued.IssuedSerial || all.Items[0].Provisioner != "web" {
		t.Errorf("by name: %+v", all.Items)
	}
	expiring := inventoryJSON(t, data, "--source", "scanned", "--expiring-within", "2h")
	if len(expiring.Items) != 1 || expiring.Items[0].Fingerprint != first.Fingerprint {
		t.Errorf("expiring within 2h: %+v", expiring.Items)
	}

	out, _ := mustRun(t, append([]string{"inventory", "show", strings.ToUpper(first.Fingerprint)}, data...)...)
	for _, want := range []string{"renewal_overdue", overdue, "(presents it now)", "BEGIN CERTIFICATE"} {
		if !strings.Contains(out, want) {
			t.Errorf("inventory show lacks %q:\n%s", want, out)
		}
	}
	table, _ := mustRun(t, append([]string{"inventory", "list", "--source", "scanned"}, data...)...)
	if !strings.Contains(table, "error: renewal_overdue") || !strings.Contains(table, "EXPIRES") {
		t.Errorf("inventory list:\n%s", table)
	}

	// Revoked by meshpki: the scanned copy says so.
	mustRun(t, append([]string{"cert", "revoke", string(issued.IssuedSerial), "--reason", "keyCompromise"}, data...)...)
	scanned = inventoryJSON(t, data, "--source", "scanned", "--name", "svc.example.internal")
	if len(scanned.Items) != 1 || !hasCheck(scanned.Items[0].Findings, "revoked") || scanned.Items[0].Findings[0].Severity != "critical" {
		t.Errorf("after revocation: %+v", scanned.Items)
	}
	if merged := inventoryJSON(t, data, "--name", "svc.example.internal"); merged.Items[0].Status != "revoked" || merged.Items[0].Active {
		t.Errorf("issued item after revocation: %+v", merged.Items[0])
	}
}

// Scan schedules run on the server and fill its inventory; bad input is
// refused with one line and nothing changes.
func TestScanSchedules(t *testing.T) {
	clearConnectEnv(t)
	in := servertest.Start(t, servertest.Options{AllowEgress: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	data := []string{"--data", in.DataDir, "--password-file", in.PasswordFile}
	p := newTestPKI(t)
	key := newTestKey(t)
	leaf := p.issue(t, key.Public(), "web", []string{"web.test"}, nil, nil, 20*time.Hour)
	addr := serveLeaf(t, tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key})

	out, _ := mustRun(t, append([]string{"scan", "schedule", "add", "edge", "--target", addr, "--sni", "web.test", "--every", "1h"}, data...)...)
	if !strings.Contains(out, "Added scan schedule edge: 1 targets every 1h") {
		t.Fatalf("schedule add: %s", out)
	}
	// The first run starts at once.
	deadline := time.Now().Add(15 * time.Second)
	var page client.InventoryPage
	for {
		page = inventoryJSON(t, data, "--source", "scanned")
		if len(page.Items) == 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(page.Items) != 1 || !strings.Contains(page.Items[0].Subject, "CN=web") || !page.Items[0].Active {
		t.Fatalf("inventory after the first run: %+v", page.Items)
	}
	var list struct{ Schedules []client.ScanSchedule }
	out, _ = mustRun(t, append([]string{"scan", "schedule", "list", "--json"}, data...)...)
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Schedules) != 1 || list.Schedules[0].LastRun.IsZero() || list.Schedules[0].LastError != "" || list.Schedules[0].SNI != "web.test" {
		t.Fatalf("schedule list: %+v", list.Schedules)
	}
	table, _ := mustRun(t, append([]string{"scan", "schedule", "list"}, data...)...)
	if !strings.Contains(table, "edge") || !strings.Contains(table, "in 59m") && !strings.Contains(table, "in 1h") {
		t.Errorf("schedule list table:\n%s", table)
	}

	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"scan", "schedule", "add", "edge", "--target", addr}, exitError, "exists"},
		{[]string{"scan", "schedule", "add", "files", "--target", "/etc/ssl"}, exitUsage, "scans endpoints only"},
		{[]string{"scan", "schedule", "add", "fast", "--target", addr, "--every", "10s"}, exitUsage, "shorter than 1m"},
		{[]string{"scan", "schedule", "add", "bad name", "--target", addr}, exitUsage, "schedule name"},
		{[]string{"scan", "schedule", "add", "none"}, exitUsage, "at least one target"},
		{[]string{"scan", "schedule", "remove", "nothing"}, exitError, "no scan schedule"},
		{[]string{"scan", "schedule", "run", "nothing"}, exitError, "no scan schedule"},
	} {
		code, _, errOut := invokeCLI(t, "", append(c.args, data...)...)
		if code != c.code || !strings.Contains(errOut, c.want) || strings.Count(strings.TrimSpace(errOut), "\n") > 0 {
			t.Errorf("%v: exit %d, stderr %q; want %d and one line saying %q", c.args, code, errOut, c.code, c.want)
		}
	}
	out, _ = mustRun(t, append([]string{"scan", "schedule", "run", "edge"}, data...)...)
	if !strings.Contains(out, "Started scan schedule edge") {
		t.Errorf("schedule run: %s", out)
	}
	mustRun(t, append([]string{"scan", "schedule", "remove", "edge"}, data...)...)
	out, _ = mustRun(t, append([]string{"scan", "schedule", "list", "--json"}, data...)...)
	if !strings.Contains(out, `"schedules": []`) {
		t.Errorf("after remove: %s", out)
	}
}

// The inventory API answers bad input with a 4xx JSON error and records
// nothing from a report that fails.
func TestInventoryAPIRefusesBadInput(t *testing.T) {
	in := servertest.Start(t, servertest.Options{})
	for _, c := range []struct {
		method, path, body string
		status             int
		want               string
	}{
		{"GET", "/v1/inventory?source=elsewhere", "", 400, "issued or scanned"},
		{"GET", "/v1/inventory?after=garbage", "", 400, "cursor"},
		{"GET", "/v1/inventory?active=maybe", "", 400, "true or false"},
		{"GET", "/v1/inventory?limit=0", "", 400, "limit"},
		{"GET", "/v1/inventory?expiring_before=soon", "", 400, "expiring_before"},
		{"GET", "/v1/inventory/abc", "", 400, "SHA-256"},
		{"GET", "/v1/inventory/" + strings.Repeat("ab", 32), "", 404, "no scanned certificate"},
		{"POST", "/v1/inventory/reports", `{"results":[{"target":"a:443","kind":"endpoint","chain":["AAAA"]}]}`, 400, "results[0]: chain[0] is not a certificate"},
		{"POST", "/v1/inventory/reports", `{"results":[{"target":"a:443","kind":"ftp","error":"x"}]}`, 400, "endpoint or file"},
		{"POST", "/v1/inventory/reports", `{"results":[{"target":"","kind":"file","error":"x"}]}`, 400, "target"},
		{"POST", "/v1/inventory/reports", `{"results":[{"target":"a:443","kind":"endpoint"}]}`, 400, "a chain, an error, or silent"},
		{"POST", "/v1/scan/schedules", `{"name":"x","targets":["169.254.169.254:80"],"every":"1s"}`, 400, "shorter than"},
	} {
		req, err := http.NewRequest(c.method, in.URL+c.path, strings.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		if c.body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := in.Admin.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var e struct {
			Error struct{ Code, Message string }
		}
		if resp.StatusCode != c.status || json.Unmarshal(body, &e) != nil || !strings.Contains(e.Error.Message, c.want) {
			t.Errorf("%s %s: %d %s; want %d saying %q", c.method, c.path, resp.StatusCode, body, c.status, c.want)
		}
	}
	listed, err := in.Admin.Get(in.URL + "/v1/inventory?source=scanned")
	if err != nil {
		t.Fatal(err)
	}
	var page client.InventoryPage
	err = json.NewDecoder(listed.Body).Decode(&page)
	listed.Body.Close()
	if err != nil || listed.StatusCode != 200 || len(page.Items) != 0 {
		t.Fatalf("after refused reports: %d %v %+v", listed.StatusCode, err, page)
	}
	// Without an admin credential, nothing is read.
	resp, err := in.Anonymous.Get(in.URL + "/v1/inventory")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusForbidden {
		t.Errorf("anonymous inventory: %d", resp.StatusCode)
	}
}
