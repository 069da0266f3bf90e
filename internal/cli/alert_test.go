package cli

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshpki/meshpki/internal/client"
	"github.com/meshpki/meshpki/internal/servertest"
)

// The alert commands against a real server: a webhook channel on the
// test's receiver, a rule, a scan report that makes it fire; the alert and
// the delivered notification are listed; bad input is refused.
func TestAlertCommands(t *testing.T) {
	clearConnectEnv(t)
	var (
		mu   sync.Mutex
		got  []map[string]any
		raws [][]byte
	)
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		mu.Lock()
		got, raws = append(got, m), append(raws, b)
		mu.Unlock()
	}))
	defer rcv.Close()
	in := servertest.Start(t, servertest.Options{AllowEgress: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	data := []string{"--data", in.DataDir, "--password-file", in.PasswordFile}

	out, _ := mustRun(t, append([]string{"alert", "channel", "add", "webhook", "am", "--url", rcv.URL + "/hook?secret=k"}, data...)...)
	if !strings.Contains(out, "Added webhook channel am ("+rcv.URL+"/hook)") {
		t.Fatalf("channel add: %s", out)
	}
	t.Setenv("TEST_SLACK_URL", rcv.URL+"/services/T0/B0/TOKEN")
	mustRun(t, append([]string{"alert", "channel", "add", "slack", "chat", "--url-from", "env:TEST_SLACK_URL"}, data...)...)
	listed, _ := mustRun(t, append([]string{"alert", "channel", "list", "--json"}, data...)...)
	if strings.Contains(listed, "TOKEN") || strings.Contains(listed, "secret=k") || !strings.Contains(listed, `"endpoint"`) {
		t.Fatalf("channel list shows a secret or no endpoint: %s", listed)
	}
	out, _ = mustRun(t, append([]string{"alert", "test", "chat"}, data...)...)
	if !strings.Contains(out, "Delivered a test alert to chat") {
		t.Fatalf("alert test: %s", out)
	}
	mu.Lock()
	if len(raws) != 1 || !strings.Contains(string(raws[0]), `"text"`) {
		t.Fatalf("slack test body: %q", raws)
	}
	got, raws = nil, nil
	mu.Unlock()

	mustRun(t, append([]string{"alert", "rule", "add", "overdue", "--channel", "am", "--check", "renewal_overdue", "--repeat", "1h", "--label", "team=api"}, data...)...)
	mustRun(t, append([]string{"alert", "rule", "add", "other-team", "--channel", "am", "--label", "team=db"}, data...)...)
	rules, _ := mustRun(t, append([]string{"alert", "rule", "list"}, data...)...)
	if !strings.Contains(rules, "overdue") || !strings.Contains(rules, "renewal_overdue") {
		t.Fatalf("rule list: %s", rules)
	}

	p := newTestPKI(t)
	key := newTestKey(t)
	dir := t.TempDir()
	overdue := filepath.Join(dir, "overdue.pem")
	writeTestFile(t, overdue, p.chainPEM(p.issue(t, key.Public(), "api", []string{"api.test"}, nil, nil, 10*time.Minute)), 0o644)
	invokeCLI(t, "", append([]string{"scan", overdue, "--root", p.rootFile, "--report", in.URL, "--label", "team=api"}, data...)...)

	deadline := time.Now().Add(15 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	mu.Lock()
	if len(got) != 1 || got[0]["version"] != "4" || got[0]["status"] != "firing" || got[0]["receiver"] != "am" {
		t.Fatalf("receiver got %+v", got)
	}
	alerts := got[0]["alerts"].([]any)
	labels := alerts[0].(map[string]any)["labels"].(map[string]any)
	if len(alerts) != 1 || labels["alertname"] != "CertificateRenewalOverdue" || labels["name"] != "api" || labels["team"] != "api" {
		t.Fatalf("alert: %+v", alerts)
	}
	mu.Unlock()

	var list client.AlertList
	out, _ = mustRun(t, append([]string{"alert", "list", "--json", "--state", "firing"}, data...)...)
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list.Alerts) != 1 || list.Alerts[0].Check != "renewal_overdue" || list.Alerts[0].Rule != "overdue" {
		t.Fatalf("alert list: %v %s", err, out)
	}
	table, _ := mustRun(t, append([]string{"alert", "list"}, data...)...)
	if !strings.Contains(table, "firing") || !strings.Contains(table, "renewal_overdue") {
		t.Fatalf("alert list table: %s", table)
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		hist, _ := mustRun(t, append([]string{"alert", "list", "--history"}, data...)...)
		if strings.Contains(hist, "delivered") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("history never shows the delivery:\n%s", hist)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The next report of the same certificate sends nothing new.
	invokeCLI(t, "", append([]string{"scan", overdue, "--root", p.rootFile, "--report", in.URL, "--label", "team=api"}, data...)...)
	time.Sleep(700 * time.Millisecond)
	mu.Lock()
	if len(got) != 1 {
		t.Errorf("a second scan sent %d more notifications", len(got)-1)
	}
	mu.Unlock()

	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"alert", "channel", "add", "slack", "x", "--url", "https://hooks.slack.test/T/B/C"}, exitUsage, "is a secret"},
		{[]string{"alert", "channel", "add", "pager", "x"}, exitUsage, "use webhook, slack or email"},
		{[]string{"alert", "channel", "add", "webhook", "x", "--url", "ftp://x"}, exitError, "http:// or https://"},
		{[]string{"alert", "channel", "add", "webhook", "am", "--url", "https://x.test"}, exitError, "exists"},
		{[]string{"alert", "channel", "remove", "am"}, exitError, "used by rules"},
		{[]string{"alert", "rule", "add", "r"}, exitUsage, "--channel is required"},
		{[]string{"alert", "rule", "add", "r", "--channel", "nowhere"}, exitError, "no channel"},
		{[]string{"alert", "rule", "add", "r", "--channel", "am", "--check", "expiry"}, exitError, "not one of"},
		{[]string{"alert", "test", "nowhere"}, exitError, "no channel"},
		{[]string{"alert", "list", "--state", "angry"}, exitUsage, "use firing or resolved"},
		{[]string{"alert", "rule", "add", "r", "--channel", "am", "--label", "9team=x"}, exitUsage, "label name"},
		{[]string{"scan", overdue, "--report", in.URL, "--label", "team"}, exitUsage, "NAME=VALUE"},
	} {
		code, _, errOut := invokeCLI(t, "", append(c.args, data...)...)
		if code != c.code || !strings.Contains(errOut, c.want) || strings.Count(strings.TrimSpace(errOut), "\n") > 0 {
			t.Errorf("%v: exit %d, stderr %q; want %d and one line saying %q", c.args, code, errOut, c.code, c.want)
		}
	}
	mustRun(t, append([]string{"alert", "rule", "remove", "overdue"}, data...)...)
	mustRun(t, append([]string{"alert", "rule", "remove", "other-team"}, data...)...)
	mustRun(t, append([]string{"alert", "channel", "remove", "am"}, data...)...)
}

// A receiver that is down when an alert fires gets it once it is back,
// after the server restarted in between: the notification waited in the
// store's outbox.
func TestAlertSurvivesServerRestart(t *testing.T) {
	clearConnectEnv(t)
	var (
		mu   sync.Mutex
		down = true
		got  int
	)
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if down {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		got++
	}))
	defer rcv.Close()
	allow := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	in := servertest.Start(t, servertest.Options{AllowEgress: allow})
	data := []string{"--data", in.DataDir, "--password-file", in.PasswordFile}
	mustRun(t, append([]string{"alert", "channel", "add", "webhook", "am", "--url", rcv.URL}, data...)...)
	mustRun(t, append([]string{"alert", "rule", "add", "overdue", "--channel", "am", "--check", "renewal_overdue"}, data...)...)
	p := newTestPKI(t)
	overdue := filepath.Join(t.TempDir(), "overdue.pem")
	writeTestFile(t, overdue, p.chainPEM(p.issue(t, newTestKey(t).Public(), "api", []string{"api.test"}, nil, nil, 10*time.Minute)), 0o644)
	invokeCLI(t, "", append([]string{"scan", overdue, "--root", p.rootFile, "--report", in.URL}, data...)...)

	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitFor("a failed delivery attempt", func() bool {
		out, _ := mustRun(t, append([]string{"alert", "list", "--history", "--json"}, data...)...)
		return strings.Contains(out, "503 Service Unavailable")
	})
	in.Stop()
	mu.Lock()
	down = false
	mu.Unlock()

	again := servertest.Start(t, servertest.Options{DataDir: in.DataDir, AllowEgress: allow})
	waitFor("delivery after the restart", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return got > 0
	})
	time.Sleep(500 * time.Millisecond)
	mu.Lock()
	if got != 1 {
		t.Errorf("the receiver got %d notifications, want 1", got)
	}
	mu.Unlock()
	out, _ := mustRun(t, "alert", "list", "--history", "--json", "--data", again.DataDir, "--password-file", again.PasswordFile)
	var hist struct{ Notifications []client.Notification }
	if err := json.Unmarshal([]byte(out), &hist); err != nil || len(hist.Notifications) != 1 || hist.Notifications[0].DeliveredAt.IsZero() || hist.Notifications[0].Attempts < 2 {
		t.Fatalf("history after the restart: %v %s", err, out)
	}
}
