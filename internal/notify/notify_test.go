package notify

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshpki/meshpki/internal/monitor"
	"github.com/meshpki/meshpki/internal/netguard"
	"github.com/meshpki/meshpki/internal/policy"
	"github.com/meshpki/meshpki/internal/store"
)

func addWebhook(t *testing.T, e *env, name, url string, isDefault bool) {
	t.Helper()
	if _, err := e.svc.AddChannel(context.Background(), "admin:test", name, KindWebhook, isDefault, Config{URL: url}); err != nil {
		t.Fatal(err)
	}
}

func addRule(t *testing.T, e *env, name, channel string, spec RuleSpec) {
	t.Helper()
	if _, err := e.svc.AddRule(context.Background(), "admin:test", name, channel, spec); err != nil {
		t.Fatal(err)
	}
}

// One alert per certificate, check and threshold: fired once, not sent
// again on the next evaluation, moved on to a nearer threshold without a
// resolved notice, and resolved (after the hysteresis) once renewed.
func TestAlertLifecycle(t *testing.T) {
	e := newEnv(t, "")
	rcv := newReceiver(t)
	addWebhook(t, e, "ops", rcv.srv.URL+"/hook?token=x", false)
	addRule(t, e, "expiry", "ops", RuleSpec{Checks: []string{monitor.CheckExpiresSoon, monitor.CheckExpired}, Names: []string{"*.example.test"},
		Labels: map[string]string{"team": "web"}})
	addRule(t, e, "db-team", "ops", RuleSpec{Labels: map[string]string{"team": "db"}})
	ctx := context.Background()

	now := e.clock.now()
	old, _ := e.ca.leaf(t, "web.example.test", now.Add(-87*24*time.Hour), now.Add(3*24*time.Hour))
	e.see(t, "10.0.0.5:443", old)
	other, _ := e.ca.leaf(t, "db.elsewhere.test", now.Add(-87*24*time.Hour), now.Add(3*24*time.Hour))
	e.see(t, "10.0.0.6:443", other)

	o := e.evaluate(t)
	if o.Fired != 1 || o.Messages != 1 {
		t.Fatalf("first evaluation: %+v, want one alert (the rule's names glob leaves the other out)", o)
	}
	if d, f := e.deliver.DeliverDue(ctx); d != 1 || f != 0 {
		t.Fatalf("delivered %d, failed %d", d, f)
	}
	msgs := rcv.messages(t)
	if len(msgs) != 1 {
		t.Fatalf("receiver got %d messages", len(msgs))
	}
	m := msgs[0]
	a := m.Alerts[0]
	if m.Version != "4" || m.Status != "firing" || m.Receiver != "ops" || m.GroupKey == "" || m.ExternalURL != "https://ca.test" || len(m.Alerts) != 1 ||
		a.Status != "firing" || a.Labels["alertname"] != "CertificateExpiresSoon" || a.Labels["threshold"] != "7d" ||
		a.Labels["severity"] != "error" || a.Labels["name"] != "web.example.test" || a.Labels["team"] != "web" || !strings.Contains(a.Annotations["summary"], "expires in 3d") ||
		a.StartsAt.IsZero() || !a.EndsAt.IsZero() || a.Fingerprint == "" || !strings.HasPrefix(a.GeneratorURL, "https://ca.test/v1/inventory/") ||
		m.CommonLabels["alertname"] != "CertificateExpiresSoon" {
		t.Fatalf("Alertmanager body: %+v", m)
	}

	// The next scan and evaluation: nothing new is sent.
	e.clock.advance(time.Hour)
	e.see(t, "10.0.0.5:443", old)
	if o := e.evaluate(t); o.Fired+o.Resolved+o.Repeated+o.Messages != 0 {
		t.Fatalf("second evaluation sent something: %+v", o)
	}

	// Two days on, the 1d threshold: a new alert, and the 7d one moves on
	// silently.
	e.clock.advance(2*24*time.Hour + time.Hour)
	e.see(t, "10.0.0.5:443", old)
	if o := e.evaluate(t); o.Fired != 1 || o.Superseded != 1 || o.Resolved != 0 || o.Messages != 1 {
		t.Fatalf("threshold crossed: %+v", o)
	}
	e.deliver.DeliverDue(ctx)
	msgs = rcv.messages(t)
	if len(msgs) != 1 || msgs[0].Alerts[0].Labels["threshold"] != "1d" || msgs[0].Alerts[0].Labels["severity"] != "critical" {
		t.Fatalf("after the 1d threshold: %+v", msgs)
	}

	// Renewed: the endpoint presents a new certificate. The alert is not
	// resolved at once (hysteresis), then is, with one resolved notice.
	renewed, _ := e.ca.leaf(t, "web.example.test", e.clock.now(), e.clock.now().Add(90*24*time.Hour))
	e.see(t, "10.0.0.5:443", renewed)
	if o := e.evaluate(t); o.Resolved != 0 || o.Messages != 0 {
		t.Fatalf("resolved before the hysteresis: %+v", o)
	}
	e.clock.advance(11 * time.Minute)
	e.see(t, "10.0.0.5:443", renewed)
	if o := e.evaluate(t); o.Resolved != 1 || o.Messages != 1 || o.Firing != 0 {
		t.Fatalf("after the hysteresis: %+v", o)
	}
	e.deliver.DeliverDue(ctx)
	msgs = rcv.messages(t)
	if len(msgs) != 1 || msgs[0].Status != "resolved" || msgs[0].Alerts[0].EndsAt.IsZero() || msgs[0].Alerts[0].Labels["threshold"] != "1d" {
		t.Fatalf("resolved notice: %+v", msgs)
	}
	if o := e.evaluate(t); o.Messages != 0 {
		t.Fatalf("resolved twice: %+v", o)
	}
}

// A condition that comes back within the hysteresis never resolves, and a
// firing alert is sent again after its repeat interval.
func TestAlertHysteresisAndRepeat(t *testing.T) {
	e := newEnv(t, "")
	rcv := newReceiver(t)
	addWebhook(t, e, "ops", rcv.srv.URL, false)
	addRule(t, e, "all", "ops", RuleSpec{Repeat: policy.Duration(6 * time.Hour)})
	now := e.clock.now()
	old, _ := e.ca.leaf(t, "cdn.example.test", now.Add(-80*24*time.Hour), now.Add(5*24*time.Hour))
	e.see(t, "cdn:443", old)
	if o := e.evaluate(t); o.Fired != 1 {
		t.Fatalf("%+v", o)
	}
	// A flap: the location presents nothing current for a moment (a run
	// covering it without the certificate, after the hold).
	e.clock.advance(2 * time.Hour)
	if err := e.st.RecordScan(context.Background(), store.ScanRun{At: e.clock.now(), Scopes: []string{"cdn:443"}, Hold: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if o := e.evaluate(t); o.Resolved != 0 || o.Messages != 0 {
		t.Fatalf("gone: %+v", o)
	}
	e.clock.advance(5 * time.Minute)
	e.see(t, "cdn:443", old)
	if o := e.evaluate(t); o.Fired+o.Resolved+o.Messages != 0 {
		t.Fatalf("back within the hysteresis: %+v", o)
	}
	e.clock.advance(4 * time.Hour)
	e.see(t, "cdn:443", old)
	if o := e.evaluate(t); o.Repeated != 1 || o.Messages != 1 {
		t.Fatalf("after the repeat interval: %+v", o)
	}
}

// A receiver that is down is retried with backoff, and nothing is lost
// when the server restarts in between.
func TestAlertRetriedAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	e := newEnv(t, dir)
	rcv := newReceiver(t)
	rcv.down.Store(true)
	addWebhook(t, e, "ops", rcv.srv.URL, false)
	addRule(t, e, "all", "ops", RuleSpec{})
	now := e.clock.now()
	c, _ := e.ca.leaf(t, "api.example.test", now.Add(-80*24*time.Hour), now.Add(2*24*time.Hour))
	e.see(t, "api:443", c)
	e.evaluate(t)
	if d, f := e.deliver.DeliverDue(context.Background()); d != 0 || f != 1 {
		t.Fatalf("delivered %d, failed %d with the receiver down", d, f)
	}
	history, err := e.st.ListNotifications(context.Background(), 10)
	if err != nil || len(history) != 1 || !strings.Contains(history[0].LastError, "503") || history[0].NextAttempt.Sub(e.clock.now()) != Backoff(1) {
		t.Fatalf("after a failed attempt: %+v %v", history, err)
	}
	e.st.Close()

	// The restarted server: a new store, evaluator and deliverer on the
	// same data; the receiver is back.
	again := newEnv(t, dir)
	again.clock = e.clock
	again.deliver.Clock = e.clock.now
	rcv.down.Store(false)
	if d, _ := again.deliver.DeliverDue(context.Background()); d != 0 {
		t.Fatal("retried before its backoff")
	}
	e.clock.advance(Backoff(1))
	if d, f := again.deliver.DeliverDue(context.Background()); d != 1 || f != 0 {
		t.Fatalf("after the restart: delivered %d, failed %d", d, f)
	}
	if msgs := rcv.messages(t); len(msgs) != 1 || msgs[0].Alerts[0].Labels["name"] != "api.example.test" {
		t.Fatalf("receiver got %+v", msgs)
	}
	history, _ = again.st.ListNotifications(context.Background(), 10)
	if history[0].Attempts != 2 || history[0].DeliveredAt.IsZero() {
		t.Fatalf("history: %+v", history[0])
	}
	// Both attempts carried one Idempotency-Key, a structured-field string.
	if keys := rcv.idempotencyKeys(); len(keys) != 2 || keys[0] != keys[1] || keys[0] != strconv.Quote(NotificationKey(history[0])) {
		t.Fatalf("Idempotency-Keys %q", keys)
	}
}

// A notification claimed by a leader that died before it finished is
// sent at once by the next leader's Deliverer (not after the claim's two
// minutes), with the same Idempotency-Key.
func TestDeliveryLeftUnfinishedIsSentByTheNextLeader(t *testing.T) {
	dir := t.TempDir()
	e := newEnv(t, dir)
	rcv := newReceiver(t)
	addWebhook(t, e, "ops", rcv.srv.URL, false)
	addRule(t, e, "all", "ops", RuleSpec{})
	now := e.clock.now()
	c, _ := e.ca.leaf(t, "api.example.test", now.Add(-80*24*time.Hour), now.Add(2*24*time.Hour))
	e.see(t, "api:443", c)
	e.evaluate(t)
	// The dying leader claims it and is gone.
	claimed, err := e.st.ClaimNotification(context.Background(), e.clock.now(), 2*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := e.deliver.DeliverDue(context.Background()); d != 0 {
		t.Fatal("a claimed notification was sent by another before its claim ran out")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.deliver.Run(ctx) }() // the next leader's term
	deadline := time.Now().Add(5 * time.Second)
	for len(rcv.idempotencyKeys()) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if keys := rcv.idempotencyKeys(); len(keys) != 1 || keys[0] != strconv.Quote(NotificationKey(claimed)) {
		t.Fatalf("the next leader sent %q, want the claimed notification once", keys)
	}
	history, _ := e.st.ListNotifications(context.Background(), 10)
	if history[0].DeliveredAt.IsZero() || history[0].Attempts != 1 {
		t.Fatalf("history: %+v", history[0])
	}
}

// The built-in rule alerts every default channel on the CA's own
// certificates, with no rule configured.
func TestBuiltinRuleWatchesTheCA(t *testing.T) {
	e := newEnv(t, "")
	rcv := newReceiver(t)
	addWebhook(t, e, "pager", rcv.srv.URL, true)
	addWebhook(t, e, "quiet", rcv.srv.URL+"/quiet", false)
	now := e.clock.now()
	inter, _ := e.ca.leaf(t, "Example Intermediate", now.Add(-360*24*time.Hour), now.Add(5*24*time.Hour))
	e.caCerts = append(e.caCerts, e.ca.cert, inter)
	if o := e.evaluate(t); o.Fired != 1 {
		t.Fatalf("%+v", o)
	}
	e.deliver.DeliverDue(context.Background())
	msgs := rcv.messages(t)
	if len(msgs) != 1 || msgs[0].Receiver != "pager" || msgs[0].Alerts[0].Labels["source"] != "ca" || msgs[0].Alerts[0].Labels["rule"] != "builtin" {
		t.Fatalf("built-in alert: %+v", msgs)
	}
}

// Slack and e-mail channels, and the test message.
func TestChannelsAndTest(t *testing.T) {
	e := newEnv(t, "")
	ctx := context.Background()
	rcv := newReceiver(t)
	if _, err := e.svc.AddChannel(ctx, "admin:test", "chat", KindSlack, false, Config{URL: rcv.srv.URL + "/services/T000/B000/XXXX"}); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Test(ctx, "chat"); err != nil {
		t.Fatal(err)
	}
	raw := rcv.raw()
	var slack map[string]string
	if len(raw) != 1 || json.Unmarshal(raw[0], &slack) != nil || !strings.Contains(slack["text"], "[FIRING] meshpki test alert") {
		t.Fatalf("slack body: %q", raw)
	}
	chat, _ := e.st.GetChannel(ctx, "chat")
	if strings.Contains(string(chat.Public), "XXXX") || strings.Contains(string(chat.Sealed), "XXXX") {
		t.Fatalf("the Slack URL's token is stored in the clear: %s", chat.Public)
	}

	ms := newMailServer(t, e.ca, true)
	cfg := Config{SMTP: ms.addr, From: "meshpki <ca@example.test>", To: []string{"ops@example.test", "sre@example.test"},
		Username: "alerts", Password: "s3cret-pass", RootPEM: e.ca.pem}
	if _, err := e.svc.AddChannel(ctx, "admin:test", "mail", KindEmail, false, cfg); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Test(ctx, "mail"); err != nil {
		t.Fatal(err)
	}
	got := ms.received()
	if len(got) != 1 || !strings.Contains(got[0], "Subject: [FIRING] meshpki test alert") || !strings.Contains(got[0], "To: <ops@example.test>, <sre@example.test>") ||
		!strings.Contains(got[0], "this channel works") {
		t.Fatalf("mail: %q", got)
	}
	if len(ms.auth) != 1 {
		t.Fatal("the mail was sent without AUTH")
	}
	mailCh, _ := e.st.GetChannel(ctx, "mail")
	if strings.Contains(string(mailCh.Public)+string(mailCh.Sealed), "s3cret-pass") {
		t.Fatal("the SMTP password is stored in the clear")
	}

	plain := newMailServer(t, e.ca, false)
	cfg.SMTP, cfg.Username, cfg.Password = plain.addr, "", ""
	if _, err := e.svc.AddChannel(ctx, "admin:test", "cleartext", KindEmail, false, cfg); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Test(ctx, "cleartext"); err == nil || !strings.Contains(err.Error(), "does not offer STARTTLS") {
		t.Fatalf("a server without STARTTLS: %v", err)
	}
	if len(plain.received()) != 0 {
		t.Fatal("mailed in the clear")
	}
}

// The server's own requests never reach loopback unless allowed; bad
// channel and rule definitions are refused and change nothing.
func TestGuardAndBadInput(t *testing.T) {
	e := newEnv(t, "")
	ctx := context.Background()
	rcv := newReceiver(t)
	addWebhook(t, e, "local", rcv.srv.URL, false)
	e.svc.Sender = &Sender{Guard: netguard.Guard{}}
	if err := e.svc.Test(ctx, "local"); err == nil || !strings.Contains(err.Error(), "loopback address, which the server does not connect to") {
		t.Fatalf("webhook to loopback: %v", err)
	}
	if len(rcv.raw()) != 0 {
		t.Fatal("the guard let a request through")
	}
	for _, c := range []struct {
		kind string
		cfg  Config
		want string
	}{
		{KindWebhook, Config{URL: "ftp://x"}, "http:// or https:// URL"},
		{KindSlack, Config{}, "URL"},
		{KindEmail, Config{SMTP: "mail", From: "a@b", To: []string{"c@d"}}, "HOST:PORT"},
		{KindEmail, Config{SMTP: "mail:25", From: "nope", To: []string{"c@d"}}, "not an e-mail address"},
		{KindEmail, Config{SMTP: "mail:25", From: "a@b"}, "at least one recipient"},
		{KindEmail, Config{SMTP: "mail:25", From: "a@b", To: []string{"c@d"}, Username: "u"}, "go together"},
		{"pager", Config{URL: "https://x"}, "use webhook, slack or email"},
	} {
		if _, err := e.svc.AddChannel(ctx, "admin:test", "bad", c.kind, false, c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s %+v: %v, want %q", c.kind, c.cfg, err, c.want)
		}
	}
	for _, c := range []struct {
		name, channel string
		spec          RuleSpec
		want          string
	}{
		{"r", "local", RuleSpec{Checks: []string{"expiry"}}, "not one of"},
		{"r", "local", RuleSpec{Names: []string{"[bad"}}, "glob"},
		{"r", "local", RuleSpec{Source: "elsewhere"}, "issued or scanned"},
		{"r", "local", RuleSpec{MinSeverity: "loud"}, "severity"},
		{"r", "nowhere", RuleSpec{}, "no channel"},
		{"builtin", "local", RuleSpec{}, "reserved"},
		{"bad name", "local", RuleSpec{}, "rule name"},
	} {
		if _, err := e.svc.AddRule(ctx, "admin:test", c.name, c.channel, c.spec); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("rule %q %+v: %v, want %q", c.name, c.spec, err, c.want)
		}
	}
	if rules, _ := e.st.ListRules(ctx); len(rules) != 0 {
		t.Fatalf("refused rules stored: %+v", rules)
	}
	if chans, _ := e.st.ListChannels(ctx); len(chans) != 1 {
		t.Fatalf("refused channels stored: %+v", chans)
	}
}

func TestBackoff(t *testing.T) {
	want := []time.Duration{30 * time.Second, time.Minute, 2 * time.Minute, 4 * time.Minute}
	for i, w := range want {
		if got := Backoff(i + 1); got != w {
			t.Errorf("Backoff(%d) = %v, want %v", i+1, got, w)
		}
	}
	if Backoff(30) != time.Hour {
		t.Errorf("Backoff(30) = %v, want the 1h cap", Backoff(30))
	}
}
