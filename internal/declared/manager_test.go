package declared_test

import (
	"context"
	"crypto"
	"crypto/x509"
	"database/sql"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshpki/meshpki/internal/acme/validation"
	"github.com/meshpki/meshpki/internal/audit"
	"github.com/meshpki/meshpki/internal/ca"
	"github.com/meshpki/meshpki/internal/declared"
	"github.com/meshpki/meshpki/internal/keys"
	"github.com/meshpki/meshpki/internal/manifest"
	"github.com/meshpki/meshpki/internal/nodeapi"
	"github.com/meshpki/meshpki/internal/policy"
	"github.com/meshpki/meshpki/internal/provisioner"
	"github.com/meshpki/meshpki/internal/servertest"
	"github.com/meshpki/meshpki/internal/store"
	"github.com/meshpki/meshpki/internal/store/sqlstore"
)

// env is a real server with a node provisioner "web-hosts" granting
// *.web.test.internal to node web/1, that node's node API client, a
// manifests directory and an allowed root for the files.
type env struct {
	in        *servertest.Instance
	node      *nodeapi.Client
	manifests string
	root      string
	// offset moves the managers' clock ahead of the real one.
	offset atomic.Int64
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{in: servertest.Start(t, servertest.Options{}), manifests: t.TempDir(), root: t.TempDir()}
	e.node = e.in.AttestNode(t, "spiffe://test.internal/node/web/1")
	_, err := e.in.Server.Provisioners().Add(context.Background(), provisioner.Change{Provisioner: store.Provisioner{
		Name: "web-hosts", Type: store.ProvisionerNode, Nodes: []string{"spiffe://test.internal/node/web/*"},
		Policy: policy.Policy{AllowDNS: []string{"*.web.test.internal"}, AllowIP: []string{"127.0.0.1"}, MaxTTL: policy.Duration(24 * time.Hour)}}, Actor: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) now() time.Time { return time.Now().Add(time.Duration(e.offset.Load())) }

func (e *env) config() declared.Config {
	return declared.Config{Dir: e.manifests, AllowedRoots: []string{e.root}, Node: declared.NodeIssuer{Client: func() *nodeapi.Client { return e.node }},
		Poll: 50 * time.Millisecond, Clock: e.now, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), StatusFile: filepath.Join(e.manifests, "..status.json")}
}

// run runs a Manager until the test ends.
func (e *env) run(t *testing.T, cfg declared.Config) *declared.Manager {
	t.Helper()
	m := declared.New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = m.Run(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait() })
	return m
}

func (e *env) write(t *testing.T, name, yaml string) {
	t.Helper()
	yaml = strings.ReplaceAll(yaml, "ROOT", e.root)
	// Write beside, then rename: the manager never reads half a file.
	tmp := filepath.Join(e.manifests, ".tmp-"+name)
	if err := os.WriteFile(tmp, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(e.manifests, name)); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls the manager's report until ok accepts the named
// certificate's status.
func waitFor(t *testing.T, m *declared.Manager, name string, what string, ok func(declared.CertificateStatus) bool) declared.CertificateStatus {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var last declared.CertificateStatus
	for time.Now().Before(deadline) {
		for _, c := range m.Report().Certificates {
			if c.Name == name {
				last = c
				if ok(c) {
					return c
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: %s never happened; last status %+v", name, what, last)
	return last
}

func readLeaf(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := ca.ParseCertificatesPEM(data)
	if err != nil {
		t.Fatal(err)
	}
	return certs[0]
}

const webManifest = `apiVersion: cert-manager.io/v1
kind: Certificate
metadata:
  name: web
spec:
  secretName: web-tls
  issuerRef: {name: web-hosts, kind: ClusterIssuer}
  commonName: www.web.test.internal
  dnsNames: [www.web.test.internal]
  duration: 10m
  renewBefore: 5m
  privateKey: {algorithm: ECDSA, encoding: PKCS8, rotationPolicy: Always}
  meshpki:
    dir: ROOT/web
    hooks:
      - name: reload
        http: {url: "HOOK"}
      - name: hangs
        command: [/bin/sleep, "30"]
        timeout: 300ms
`

// TestManagerIssuesRenewsAndApplies: a manifest dropped in the directory is
// issued through the node provisioner and written with its modes; its
// hooks run in order, and one that hangs is killed at its timeout with the
// certificate written; at its renewal time it is issued again with a new
// key; a change to the manifest applies without a restart; a manager
// started again over the same files adopts them instead of issuing.
func TestManagerIssuesRenewsAndApplies(t *testing.T) {
	e := newEnv(t)
	var reloads atomic.Int32
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reloads.Add(1) }))
	defer hook.Close()
	e.write(t, "web.yaml", strings.ReplaceAll(webManifest, "HOOK", hook.URL))
	cfg := e.config()
	m := e.run(t, cfg)

	st := waitFor(t, m, "web", "the first issuance", func(c declared.CertificateStatus) bool { return c.Ready && c.Revision == 1 })
	dir := filepath.Join(e.root, "web")
	leaf := readLeaf(t, filepath.Join(dir, "tls.crt"))
	if leaf.Subject.CommonName != "www.web.test.internal" || len(leaf.DNSNames) != 1 || st.Serial != string(store.SerialOf(leaf.SerialNumber)) {
		t.Fatalf("leaf %v %v, status serial %s", leaf.Subject, leaf.DNSNames, st.Serial)
	}
	if life := leaf.NotAfter.Sub(leaf.NotBefore); life < 10*time.Minute || life > 12*time.Minute {
		t.Errorf("lifetime %s, the manifest asked for 10m", life)
	}
	for name, want := range map[string]os.FileMode{"tls.key": 0o600, "tls.crt": 0o644, "ca.crt": 0o644} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: %v %v, want mode %o", name, fi, err, want)
		}
	}
	keyPEM, _ := os.ReadFile(filepath.Join(dir, "tls.key"))
	key, err := keys.ParsePrivateKeyPEM(keyPEM, nil)
	if err != nil || !samePublic(key.Public(), leaf.PublicKey) {
		t.Fatalf("tls.key does not match tls.crt: %v", err)
	}
	root := readLeaf(t, filepath.Join(dir, "ca.crt"))
	if !root.Equal(e.in.Server.Authority().Hierarchy().Root()) {
		t.Error("ca.crt is not the CA's root")
	}
	if reloads.Load() != 1 || len(st.Hooks) != 2 || !st.Hooks[0].OK || st.Hooks[1].OK || !strings.Contains(st.Hooks[1].Error, "300ms") {
		t.Fatalf("hooks: %d reloads, %+v", reloads.Load(), st.Hooks)
	}
	if st.Hooks[1].Duration > 5*time.Second {
		t.Errorf("the hanging hook ran %s", st.Hooks[1].Duration)
	}
	if c, _ := st.Condition(declared.ConditionHooks); c.Status != "False" {
		t.Errorf("HooksSucceeded %+v", c)
	}
	if want := leaf.NotAfter.Add(-5 * time.Minute); st.RenewalTime.After(want) || st.RenewalTime.Before(want.Add(-31*time.Second)) {
		t.Errorf("renewal time %s, want renewBefore (5m) before %s less up to 30s of jitter", st.RenewalTime, leaf.NotAfter)
	}

	// Renewal: the clock reaches the renewal time.
	e.offset.Store(int64(6 * time.Minute))
	st = waitFor(t, m, "web", "the renewal", func(c declared.CertificateStatus) bool { return c.Revision == 2 })
	renewed := readLeaf(t, filepath.Join(dir, "tls.crt"))
	if renewed.SerialNumber.Cmp(leaf.SerialNumber) == 0 || samePublic(renewed.PublicKey, leaf.PublicKey) {
		t.Fatal("the renewal kept the serial or the key (rotationPolicy Always)")
	}
	if reloads.Load() != 2 {
		t.Errorf("reload hook ran %d times after the renewal, want 2", reloads.Load())
	}
	if _, err := os.Readlink(filepath.Join(dir, "..previous")); err != nil {
		t.Errorf("the previous set is not kept: %v", err)
	}

	// A change to the manifest applies without a restart.
	changed := strings.ReplaceAll(webManifest, "HOOK", hook.URL)
	changed = strings.Replace(changed, "dnsNames: [www.web.test.internal]", "dnsNames: [www.web.test.internal, api.web.test.internal]", 1)
	e.write(t, "web.yaml", changed)
	waitFor(t, m, "web", "the reissue for the changed manifest", func(c declared.CertificateStatus) bool { return c.Revision == 3 && c.Ready })
	if got := readLeaf(t, filepath.Join(dir, "tls.crt")).DNSNames; len(got) != 2 {
		t.Fatalf("after the change the certificate names %v", got)
	}
	ev := lastIssued(t, e.in)
	if ev.Actor != "node:spiffe://test.internal/node/web/1" || !strings.HasSuffix(ev.Detail["manifest"], "web.yaml: web") {
		t.Errorf("audit of the issuance: %+v", ev)
	}

	// A second manager over the same files and status adopts them (the
	// clock back to now, when they are not yet due).
	e.offset.Store(0)
	serial := readLeaf(t, filepath.Join(dir, "tls.crt")).SerialNumber
	cfg2 := cfg
	cfg2.StatusFile = cfg.StatusFile
	m2 := declared.New(cfg2)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = m2.Run(ctx) }()
	st2 := waitFor(t, m2, "web", "adoption", func(c declared.CertificateStatus) bool { return c.Ready })
	cancel()
	<-done
	if st2.Revision != 0 || readLeaf(t, filepath.Join(dir, "tls.crt")).SerialNumber.Cmp(serial) != 0 {
		t.Errorf("a restart issued again (revision %d)", st2.Revision)
	}
}

func samePublic(a, b crypto.PublicKey) bool {
	return a.(interface{ Equal(crypto.PublicKey) bool }).Equal(b)
}

func lastIssued(t *testing.T, in *servertest.Instance) audit.Event {
	t.Helper()
	head, _, err := in.Server.Store().AuditHead(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	evs, err := in.Server.Store().ListAudit(context.Background(), max(head-20, 0), 20)
	if err != nil {
		t.Fatal(err)
	}
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i].Type == audit.TypeCertificateIssued && evs[i].Detail["manifest"] != "" {
			return evs[i]
		}
	}
	t.Fatal("no issuance of a manifest in the audit log")
	return audit.Event{}
}

func manifestFor(name, dns, dir string) string {
	return `apiVersion: cert-manager.io/v1
kind: Certificate
metadata:
  name: ` + name + `
spec:
  secretName: ` + name + `
  issuerRef: {name: web-hosts, kind: ClusterIssuer}
  dnsNames: [` + dns + `]
  duration: 1h
  privateKey: {algorithm: ECDSA}
  meshpki:
    dir: ` + dir + `
`
}

// TestManagerRefuses: a name outside the node's grant, a directory outside
// the allowed roots (directly or by climbing out with ..), a directory
// reached through a symlink and a file name that is a symlink to elsewhere
// each leave nothing written and say why in the status; a malformed
// manifest is reported with its file and line while the others apply; the
// same certificate declared twice is reported; an expired certificate is
// issued again with the node's identity alone.
func TestManagerRefuses(t *testing.T) {
	e := newEnv(t)
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(e.root, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(e.root, "evil"), 0o755); err != nil {
		t.Fatal(err)
	}
	victim := filepath.Join(outside, "victim")
	if err := os.WriteFile(victim, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(e.root, "evil", "tls.crt")); err != nil {
		t.Fatal(err)
	}
	e.write(t, "a.yaml", manifestFor("ungranted", "db.internal", e.root+"/ungranted")+"---\n"+
		manifestFor("escape", "a.web.test.internal", e.root+"/../escaped")+"---\n"+
		manifestFor("outside", "b.web.test.internal", outside+"/x")+"---\n"+
		manifestFor("via-link", "c.web.test.internal", e.root+"/link/x")+"---\n"+
		manifestFor("evil", "d.web.test.internal", e.root+"/evil"))
	e.write(t, "b.yaml", manifestFor("good", "good.web.test.internal", e.root+"/good"))
	e.write(t, "c.yaml", "apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata:\n  name: broken\nspec:\n  dnsNames: [a\n")
	e.write(t, "d.yaml", manifestFor("good", "other.web.test.internal", e.root+"/other"))
	m := e.run(t, e.config())

	waitFor(t, m, "good", "the good manifest", func(c declared.CertificateStatus) bool { return c.Ready })
	for name, want := range map[string]string{
		"ungranted": "denies",
		"escape":    "outside the allowed roots",
		"outside":   "outside the allowed roots",
		"via-link":  "symlink",
		"evil":      "symlink",
	} {
		st := waitFor(t, m, name, "a refusal", func(c declared.CertificateStatus) bool { return c.FailedIssuanceAttempts > 0 })
		c, _ := st.Condition(declared.ConditionIssuing)
		if st.Ready || !strings.Contains(st.LastFailure, want) || c.Status != "True" || c.Reason != "Refused" {
			t.Errorf("%s: ready %v, failure %q (want %q), Issuing %+v", name, st.Ready, st.LastFailure, want, c)
		}
		if r := time.Until(st.RenewalTime); r < 4*time.Minute {
			t.Errorf("%s: retried in %s, want the longest backoff for a refusal", name, r)
		}
	}
	for _, p := range []string{filepath.Join(e.root, "ungranted"), filepath.Join(filepath.Dir(e.root), "escaped"), filepath.Join(outside, "x")} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s was written", p)
		}
	}
	if b, _ := os.ReadFile(victim); string(b) != "keep me" {
		t.Error("a certificate was written through a symlinked file name")
	}
	r := m.Report()
	var sawBroken, sawDup bool
	for _, me := range r.Errors {
		if strings.HasSuffix(me.File, "c.yaml") && me.Line > 0 && me.Message != "" {
			sawBroken = true
		}
		if strings.HasSuffix(me.File, "d.yaml") && strings.Contains(me.Message, "already declared") {
			sawDup = true
		}
	}
	if !sawBroken || !sawDup {
		t.Errorf("manifest errors %+v: want c.yaml with its line and d.yaml's duplicate", r.Errors)
	}

	// Expired: the clock passes the certificate's end; the node's identity
	// is all it takes to have it issued again.
	first := readLeaf(t, filepath.Join(e.root, "good", "tls.crt"))
	e.offset.Store(int64(2 * time.Hour))
	waitFor(t, m, "good", "the reissue after expiry", func(c declared.CertificateStatus) bool { return c.Revision == 2 })
	if again := readLeaf(t, filepath.Join(e.root, "good", "tls.crt")); again.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Fatal("not reissued")
	}
}

// TestManagerACMEIssuer: an ACMEIssuer manifest, and a ClusterIssuer one
// given an ACME URL, are ordered from an ACME server — meshpki's own here,
// through lego — with the http-01 answer
// served on the configured address; a second manager finds the same
// account again by its key.
func TestManagerACMEIssuer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	in := servertest.Start(t, servertest.Options{ACMEValidation: validation.Config{HTTPPort: port, Timeout: 5 * time.Second}})
	if _, err := in.Server.Provisioners().Add(context.Background(), provisioner.Change{Provisioner: store.Provisioner{Name: "acme", Type: store.ProvisionerACME,
		Policy: policy.Policy{AllowIP: []string{"127.0.0.1"}, MaxTTL: policy.Duration(48 * time.Hour)}}, Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	dir, root, accounts := t.TempDir(), t.TempDir(), t.TempDir()
	yaml := `apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {name: by-acme}
spec:
  secretName: by-acme
  issuerRef: {name: meshpki, kind: ACMEIssuer}
  ipAddresses: [127.0.0.1]
  duration: 6h
  privateKey: {algorithm: ECDSA, size: 384}
  meshpki:
    dir: ` + root + `/acme
    acme: ` + in.URL + `/acme/acme/directory
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {name: cluster-issuer-acme}
spec:
  secretName: cluster-issuer-acme
  issuerRef: {name: letsencrypt-prod, kind: ClusterIssuer}
  ipAddresses: [127.0.0.1]
  privateKey: {algorithm: ECDSA}
  meshpki:
    acme: ` + in.URL + `/acme/acme/directory
`
	if err := os.WriteFile(filepath.Join(dir, "acme.yaml"), []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := declared.Config{Dir: dir, AllowedRoots: []string{root}, Poll: 50 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		ACME: declared.NewACMEIssuers(declared.ACMEConfig{AccountDir: accounts, Passphrase: []byte("account-passphrase"), Roots: in.Roots, HTTP01Address: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))})}
	m := declared.New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Run(ctx) }()
	st := waitFor(t, m, "by-acme", "the ACME order", func(c declared.CertificateStatus) bool { return c.Ready || c.FailedIssuanceAttempts > 0 })
	st2 := waitFor(t, m, "cluster-issuer-acme", "the ClusterIssuer's ACME order", func(c declared.CertificateStatus) bool { return c.Ready || c.FailedIssuanceAttempts > 0 })
	cancel()
	<-done
	if !st.Ready || !st2.Ready {
		t.Fatalf("ACME issuance failed: %s / %s", st.LastFailure, st2.LastFailure)
	}
	if st2.Issuer != "ACME/"+in.URL+"/acme/acme/directory" || st2.Dir != filepath.Join(root, "cluster-issuer-acme") {
		t.Errorf("a ClusterIssuer with an ACME URL: issuer %q dir %q", st2.Issuer, st2.Dir)
	}
	leaf := readLeaf(t, filepath.Join(root, "acme", "tls.crt"))
	if len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) {
		t.Fatalf("leaf names %v", leaf.IPAddresses)
	}
	if life := leaf.NotAfter.Sub(leaf.NotBefore); life < 6*time.Hour-time.Minute || life > 6*time.Hour+2*time.Minute {
		t.Errorf("lifetime %s, the manifest asked for 6h", life)
	}
	if kt, _ := keys.TypeOf(leaf.PublicKey); kt != keys.ECP384 {
		t.Errorf("key type %s, the manifest asked for ECDSA 384", kt)
	}
	if fi, err := os.ReadDir(accounts); err != nil || len(fi) != 1 {
		t.Fatalf("account keys: %v %v", fi, err)
	}

	// The same account again: a forced apply orders with the stored key.
	before := countAccounts(t, in)
	res := declared.New(cfg).Apply(context.Background(), mustParse(t, filepath.Join(dir, "acme.yaml"))[:1], true)
	if !res[0].Ready || res[0].Revision != 1 {
		t.Fatalf("forced apply: %+v", res[0])
	}
	if after := countAccounts(t, in); after != before {
		t.Errorf("a second ACME account was made (%d → %d)", before, after)
	}
}

func countAccounts(t *testing.T, in *servertest.Instance) int {
	t.Helper()
	db, err := sql.Open("sqlite", filepath.Join(in.DataDir, sqlstore.DefaultFile)+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM acme_accounts`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func mustParse(t *testing.T, path string) []manifest.Certificate {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	certs, _, err := manifest.Parse(path, f)
	if err != nil {
		t.Fatal(err)
	}
	return certs
}

// TestCertManagerDocsExampleApplies: cert-manager's short example from its
// Certificate page is issued with cert-manager's defaults (RSA 2048, the
// issuer's lifetime); its own exhaustive example Certificate, unchanged, is
// issued through a node provisioner named as its
// issuerRef, into ROOT/SECRET-NAME (the manifest names no directory), as
// an RSA key in PKCS#1 with every name it lists.
func TestCertManagerDocsExampleApplies(t *testing.T) {
	e := newEnv(t)
	if _, err := e.in.Server.Provisioners().Add(context.Background(), provisioner.Change{Provisioner: store.Provisioner{
		Name: "ca-issuer", Type: store.ProvisionerNode, Nodes: []string{"spiffe://test.internal/node/web/1"},
		Policy: policy.Policy{AllowDNS: []string{"example.com", "www.example.com"}, AllowIP: []string{"192.168.0.5"},
			AllowURI: []string{"spiffe://cluster.local/ns/sandbox/sa/example"}, MaxTTL: policy.Duration(2160 * time.Hour)}}, Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.in.Server.Provisioners().Add(context.Background(), provisioner.Change{Provisioner: store.Provisioner{
		Name: "letsencrypt-prod", Type: store.ProvisionerNode, Nodes: []string{"spiffe://test.internal/node/web/*"},
		Policy: policy.Policy{AllowDNS: []string{"*.example.com"}}}, Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	cfg := e.config()
	cfg.StatusFile = ""
	short := declared.New(cfg).Apply(context.Background(), mustParse(t, "../manifest/testdata/cert-manager-docs-acme-crt.yaml"), false)
	if len(short) != 1 || !short[0].Ready || short[0].Dir != filepath.Join(e.root, "acme-crt-secret") {
		t.Fatalf("the concept page's example: %+v", short)
	}
	if got := readLeaf(t, filepath.Join(e.root, "acme-crt-secret", "tls.crt")).DNSNames; len(got) != 2 {
		t.Errorf("the concept page's example names %v", got)
	}
	if kt, _ := keys.TypeOf(readLeaf(t, filepath.Join(e.root, "acme-crt-secret", "tls.crt")).PublicKey); kt != keys.RSA2048 {
		t.Errorf("key %s, cert-manager's default is RSA 2048", kt)
	}

	certs := mustParse(t, "../manifest/testdata/cert-manager-docs.yaml")
	res := declared.New(cfg).Apply(context.Background(), certs, false)
	if len(res) != 1 || !res[0].Ready || res[0].Name != "sandbox/example-com" {
		t.Fatalf("apply: %+v", res)
	}
	dir := filepath.Join(e.root, "example-com-tls")
	leaf := readLeaf(t, filepath.Join(dir, "tls.crt"))
	if len(leaf.DNSNames) != 2 || len(leaf.IPAddresses) != 1 || len(leaf.URIs) != 1 || leaf.Subject.CommonName != "example.com" {
		t.Errorf("leaf names %v %v %v cn %q", leaf.DNSNames, leaf.IPAddresses, leaf.URIs, leaf.Subject.CommonName)
	}
	if life := leaf.NotAfter.Sub(leaf.NotBefore); life < 2160*time.Hour {
		t.Errorf("lifetime %s, the manifest asked for 2160h", life)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, "tls.key"))
	if err != nil || !strings.HasPrefix(string(keyPEM), "-----BEGIN RSA PRIVATE KEY-----") {
		t.Errorf("tls.key is not PKCS#1 RSA: %v %.40q", err, keyPEM)
	}

	// Applying again changes nothing; --force issues again.
	again := declared.New(cfg).Apply(context.Background(), certs, false)
	if again[0].Revision != 0 || again[0].Serial != res[0].Serial {
		t.Errorf("a second apply issued again: %+v", again[0])
	}
	forced := declared.New(cfg).Apply(context.Background(), certs, true)
	if forced[0].Revision != 1 || forced[0].Serial == res[0].Serial {
		t.Errorf("a forced apply did not issue: %+v", forced[0])
	}
}
