package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshpki/meshpki/internal/audit"
	"github.com/meshpki/meshpki/internal/client"
	"github.com/meshpki/meshpki/internal/servertest"
	"github.com/meshpki/meshpki/internal/store"
)

const testNode = "spiffe://test.internal/node/n1"

func TestEntryCommandsAgainstRealServer(t *testing.T) {
	clearConnectEnv(t)
	in := servertest.Start(t, servertest.Options{})
	data := []string{"--data", in.DataDir, "--password-file", in.PasswordFile}
	run := func(args ...string) (string, string) { t.Helper(); return mustRun(t, append(args, data...)...) }

	out, _ := run("entry", "create", "--spiffe-id", "spiffe://test.internal/app/web", "--parent", testNode,
		"--selector", "unix:uid:1000", "--selector", "unix:path:/usr/bin/web", "--x509-ttl", "2h", "--dns", "web.example.internal", "--hint", "frontend", "--json")
	var web client.Entry
	if err := json.Unmarshal([]byte(out), &web); err != nil || web.ID == "" {
		t.Fatalf("entry create --json: %v\n%s", err, out)
	}
	if web.X509TTL.Std() != 2*time.Hour || web.JWTTTL.Std() != 5*time.Minute || len(web.Selectors) != 2 || web.Hint != "frontend" {
		t.Errorf("created %+v", web)
	}
	out, _ = run("entry", "create", "--spiffe-id", "spiffe://test.internal/app/db", "--parent", "x509pop:subject:cn:db-1", "--selector", "unix:user:postgres")
	if !strings.HasPrefix(out, "created entry ") || !strings.Contains(out, "spiffe://test.internal/app/db") || !strings.Contains(out, "x509-svid ttl  1h") {
		t.Errorf("entry create:\n%s", out)
	}

	out, _ = run("entry", "list")
	if !strings.Contains(out, "SPIFFE ID") || !strings.Contains(out, web.ID) || !strings.Contains(out, "spiffe://test.internal/app/db") || !strings.Contains(out, "ago") {
		t.Errorf("entry list:\n%s", out)
	}
	out, _ = run("entry", "list", "--parent", testNode, "--json")
	var listed struct{ Entries []client.Entry }
	if err := json.Unmarshal([]byte(out), &listed); err != nil || len(listed.Entries) != 1 || listed.Entries[0].ID != web.ID {
		t.Errorf("entry list --parent --json: %v\n%s", err, out)
	}
	_, errOut := run("entry", "list", "--spiffe-id", "spiffe://test.internal/none")
	if !strings.Contains(errOut, "no entries match") {
		t.Errorf("empty list stderr %q", errOut)
	}

	out, _ = run("entry", "show", web.ID)
	for _, want := range []string{"spiffe://test.internal/app/web", testNode, "unix:path:/usr/bin/web, unix:uid:1000", "2h", "5m", "web.example.internal", "frontend"} {
		if !strings.Contains(out, want) {
			t.Errorf("entry show lacks %q:\n%s", want, out)
		}
	}

	// update replaces the whole entry.
	out, _ = run("entry", "update", web.ID, "--spiffe-id", "spiffe://test.internal/app/web", "--parent", testNode, "--selector", "unix:uid:1001")
	if !strings.HasPrefix(out, "updated entry "+web.ID) {
		t.Errorf("entry update:\n%s", out)
	}
	out, _ = run("entry", "show", web.ID, "--json")
	var updated client.Entry
	if err := json.Unmarshal([]byte(out), &updated); err != nil || len(updated.Selectors) != 1 || updated.Selectors[0] != "unix:uid:1001" ||
		updated.Hint != "" || len(updated.DNSNames) != 0 || updated.X509TTL.Std() != time.Hour || updated.Revision <= web.Revision {
		t.Errorf("after update: %v %+v", err, updated)
	}

	out, _ = run("entry", "delete", web.ID)
	if strings.TrimSpace(out) != "deleted entry "+web.ID {
		t.Errorf("entry delete: %q", out)
	}
	code, _, errOut := invokeCLI(t, "", append([]string{"entry", "show", web.ID}, data...)...)
	if code != 1 || !strings.Contains(errOut, "no entry "+web.ID) || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Errorf("show deleted: exit %d, %q", code, errOut)
	}
}

func TestEntryCommandsRefuseBadCalls(t *testing.T) {
	clearConnectEnv(t)
	in := servertest.Start(t, servertest.Options{})
	data := []string{"--data", in.DataDir, "--password-file", in.PasswordFile}
	good := []string{"--spiffe-id", "spiffe://test.internal/app/web", "--parent", testNode, "--selector", "unix:uid:1000"}
	for _, tc := range []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"create-without-selector", []string{"entry", "create", "--spiffe-id", "spiffe://test.internal/app/web", "--parent", testNode}, 2, "--selector is required"},
		{"create-without-spiffe-id", []string{"entry", "create", "--parent", testNode, "--selector", "unix:uid:1"}, 2, "--spiffe-id is required"},
		{"create-negative-ttl", append([]string{"entry", "create", "--x509-ttl", "-1h"}, good...), 2, "must be positive"},
		{"create-with-argument", append([]string{"entry", "create", "web"}, good...), 2, "unexpected argument"},
		{"update-without-id", append([]string{"entry", "update"}, good...), 2, "missing ID"},
		{"show-without-id", []string{"entry", "show"}, 2, "missing ID"},
		{"delete-unknown", []string{"entry", "delete", "nope"}, 1, "no entry nope"},
		{"create-unknown-selector-kind", []string{"entry", "create", "--spiffe-id", "spiffe://test.internal/app/web", "--parent", testNode, "--selector", "k8s:ns:default"}, 1, "unknown kind"},
		{"create-other-trust-domain", []string{"entry", "create", "--spiffe-id", "spiffe://other.internal/web", "--parent", testNode, "--selector", "unix:uid:1"}, 1, "trust domain"},
		{"create-reserved", []string{"entry", "create", "--spiffe-id", "spiffe://test.internal/meshpki/admin/x", "--parent", testNode, "--selector", "unix:uid:1"}, 1, "reserved"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := invokeCLI(t, "", append(tc.args, data...)...)
			if code != tc.wantCode || !strings.Contains(errOut, tc.wantErr) || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
				t.Errorf("exit %d, stderr %q; want exit %d mentioning %q", code, errOut, tc.wantCode, tc.wantErr)
			}
		})
	}
	mustRun(t, append(append([]string{"entry", "create"}, good...), data...)...)
	code, _, errOut := invokeCLI(t, "", append(append([]string{"entry", "create"}, good...), data...)...)
	if code != 1 || !strings.Contains(errOut, "conflict") {
		t.Errorf("duplicate: exit %d, %q", code, errOut)
	}
}

func TestTokenCreateJoin(t *testing.T) {
	clearConnectEnv(t)
	in := servertest.Start(t, servertest.Options{})
	data := []string{"--data", in.DataDir, "--password-file", in.PasswordFile}

	out, errOut := mustRun(t, append([]string{"token", "create", "--join", "--spiffe-id", testNode, "--ttl", "2h"}, data...)...)
	tok := lastLine(out)
	if !strings.Contains(errOut, "join token for node "+testNode) || !strings.Contains(errOut, "expires in 1h59m") && !strings.Contains(errOut, "expires in 2h") {
		t.Errorf("summary %q", errOut)
	}
	g, err := in.Server.Registration().VerifyJoinToken(context.Background(), tok)
	if err != nil || g.SPIFFEID != testNode {
		t.Fatalf("verify the printed token: %+v, %v", g, err)
	}

	out, _ = mustRun(t, append([]string{"token", "create", "--join", "--spiffe-id", testNode, "--json"}, data...)...)
	var jt client.Token
	if err := json.Unmarshal([]byte(out), &jt); err != nil || jt.Token == "" || jt.Provisioner != "" {
		t.Errorf("--json: %v\n%s", err, out)
	}

	// Certificate tokens are made as before.
	mustRun(t, append([]string{"provisioner", "add", "token", "web", "--allow-dns", "*.example.internal"}, data...)...)
	out, _ = mustRun(t, append([]string{"token", "create", "api", "--san", "api.example.internal"}, data...)...)
	if lastLine(out) == "" {
		t.Error("no certificate token printed")
	}
	// A batch: one per line, each single use and distinct; as JSON, an array.
	out, errOut = mustRun(t, append([]string{"token", "create", "api", "--san", "api.example.internal", "--count", "3"}, data...)...)
	if lines := strings.Fields(out); len(lines) != 3 || lines[0] == lines[1] || lines[1] == lines[2] || !strings.HasPrefix(errOut, "3 tokens for \"api\"") {
		t.Errorf("--count 3: stdout %q, stderr %q", out, errOut)
	}
	out, _ = mustRun(t, append([]string{"token", "create", "api", "--san", "api.example.internal", "--count", "2", "--json"}, data...)...)
	var batch []client.Token
	if err := json.Unmarshal([]byte(out), &batch); err != nil || len(batch) != 2 || batch[0].ID == batch[1].ID {
		t.Errorf("--count 2 --json: %v\n%s", err, out)
	}

	for _, tc := range []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"join-without-spiffe-id", []string{"token", "create", "--join"}, 2, "--spiffe-id is required"},
		{"join-with-name", []string{"token", "create", "n1", "--join", "--spiffe-id", testNode}, 2, "unexpected argument \"n1\""},
		{"join-with-san", []string{"token", "create", "--join", "--spiffe-id", testNode, "--san", "n1.example.internal"}, 2, "--san does not apply"},
		{"join-with-provisioner", []string{"token", "create", "--join", "--spiffe-id", testNode, "--provisioner", "web"}, 2, "--provisioner does not apply"},
		{"count-zero", []string{"token", "create", "api", "--san", "api.example.internal", "--count", "0"}, 2, "--count must be between 1 and 10000"},
		{"join-with-count", []string{"token", "create", "--join", "--spiffe-id", testNode, "--count", "2"}, 2, "--count does not apply"},
		{"spiffe-id-without-join", []string{"token", "create", "api", "--san", "api.example.internal", "--spiffe-id", testNode}, 2, "--spiffe-id needs --join"},
		{"no-name-no-join", []string{"token", "create"}, 2, "missing NAME, or --join"},
		{"name-without-san", []string{"token", "create", "api"}, 2, "--san is required"},
		{"join-other-trust-domain", []string{"token", "create", "--join", "--spiffe-id", "spiffe://other.internal/node/n1"}, 1, "trust domain"},
		{"join-ttl-too-long", []string{"token", "create", "--join", "--spiffe-id", testNode, "--ttl", "200h"}, 1, "lifetime"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := invokeCLI(t, "", append(tc.args, data...)...)
			if code != tc.wantCode || !strings.Contains(errOut, tc.wantErr) {
				t.Errorf("exit %d, stderr %q; want exit %d mentioning %q", code, errOut, tc.wantCode, tc.wantErr)
			}
		})
	}
}

// runUnregistered runs a command that is not (yet) in the command tree, as
// its own root, and returns its output and error.
func runUnregistered(t *testing.T, newCmd func(*streams) *cobra.Command, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := newCmd(&streams{in: strings.NewReader(""), out: &out, err: &errOut})
	cmd.SilenceErrors, cmd.SilenceUsage = true, true
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	err = cmd.Execute()
	return out.String(), errOut.String(), err
}

func TestAgentEvictAndListCommands(t *testing.T) {
	clearConnectEnv(t)
	in := servertest.Start(t, servertest.Options{})
	data := []string{"--data", in.DataDir, "--password-file", in.PasswordFile}

	_, errOut, err := runUnregistered(t, newAgentListCommand, data...)
	if err != nil || !strings.Contains(errOut, "no node has attested") {
		t.Fatalf("list with no nodes: %v, %q", err, errOut)
	}
	_, _, err = runUnregistered(t, newAgentEvictCommand, append([]string{testNode}, data...)...)
	var apiErr *client.APIError
	if !errors.As(err, &apiErr) || apiErr.Code != "not_found" || !strings.Contains(err.Error(), "no node "+testNode) {
		t.Fatalf("evict an unknown node: %v", err)
	}
	_, _, err = runUnregistered(t, newAgentEvictCommand, append([]string{"n1"}, data...)...)
	var ue usageError
	if !errors.As(err, &ue) {
		t.Errorf("evict n1: %v, want a usage error", err)
	}

	now := time.Now()
	n := store.Node{SPIFFEID: testNode, Attestation: "join_token", CertSerial: "5f0c", CreatedAt: now.Add(-3 * time.Hour), UpdatedAt: now}
	if err := in.Server.Store().PutNode(context.Background(), n, audit.Event{Time: now, Type: audit.TypeNodeAttested, Actor: "test", Subject: testNode, Outcome: "success"}); err != nil {
		t.Fatal(err)
	}
	out, _, err := runUnregistered(t, newAgentListCommand, data...)
	if err != nil || !strings.HasPrefix(out, "SPIFFE ID") {
		t.Fatalf("list: %v\n%s", err, out)
	}
	if row := strings.Fields(lastLine(out)); len(row) != 5 || row[0] != testNode || row[1] != "join_token" || row[2] != "no" || row[3] != "3h" || row[4] != "ago" {
		t.Errorf("list row %q", row)
	}
	out, _, err = runUnregistered(t, newAgentEvictCommand, append([]string{testNode}, data...)...)
	if err != nil || strings.TrimSpace(out) != "evicted node "+testNode+" : it can no longer sync or get SVIDs" {
		t.Fatalf("evict: %v, %q", err, out)
	}
	out, _, err = runUnregistered(t, newAgentListCommand, append([]string{"--json"}, data...)...)
	var listed struct{ Nodes []client.Node }
	if err != nil || json.Unmarshal([]byte(out), &listed) != nil || len(listed.Nodes) != 1 || !listed.Nodes[0].Evicted {
		t.Fatalf("list --json after eviction: %v\n%s", err, out)
	}
}

func TestSPIFFECommandsHaveHelpWithExamples(t *testing.T) {
	root := newRootCommand(nil, &strings.Builder{}, &strings.Builder{})
	s := &streams{out: &strings.Builder{}, err: &strings.Builder{}}
	cmds := []*cobra.Command{newAgentEvictCommand(s), newAgentListCommand(s)}
	for _, c := range root.Commands() {
		if c.Name() == "entry" || c.Name() == "token" {
			cmds = append(cmds, c)
			cmds = append(cmds, c.Commands()...)
		}
	}
	if len(cmds) != 2+2+5+1 {
		t.Fatalf("found %d commands", len(cmds))
	}
	for _, c := range cmds {
		if c.Short == "" || c.Long == "" || c.Example == "" {
			t.Errorf("%s: want Short, Long and Example", c.CommandPath())
		}
	}
	code, out, _ := invokeCLI(t, "", "entry")
	if code != 0 || !strings.Contains(out, "Available Commands:") {
		t.Errorf("bare entry: exit %d\n%s", code, out)
	}
}

// TestSPIFFEProvisionerDocExample runs the command docs/SPIFFE.md gives for
// restricting entries: a max TTL under the 24h package default lowers the
// default instead of being refused, and entries outside the prefix or longer
// than the max are then refused.
func TestSPIFFEProvisionerDocExample(t *testing.T) {
	clearConnectEnv(t)
	in := servertest.Start(t, servertest.Options{})
	data := []string{"--data", in.DataDir, "--password-file", in.PasswordFile}
	run := func(args ...string) (string, string) { t.Helper(); return mustRun(t, append(args, data...)...) }
	run("provisioner", "add", "spiffe", "workloads", "--allow-uri", "spiffe://test.internal/app/", "--max-ttl", "4h")
	out, _ := run("provisioner", "show", "workloads")
	if !regexp.MustCompile(`(?m)^default ttl +4h \(default\)$`).MatchString(out) {
		t.Errorf("provisioner show:\n%s", out)
	}
	run("entry", "create", "--spiffe-id", "spiffe://test.internal/app/web", "--parent", testNode, "--selector", "unix:uid:1000")
	for _, bad := range [][]string{
		{"entry", "create", "--spiffe-id", "spiffe://test.internal/other/web", "--parent", testNode, "--selector", "unix:uid:1000"},
		{"entry", "create", "--spiffe-id", "spiffe://test.internal/app/long", "--parent", testNode, "--selector", "unix:uid:1000", "--x509-ttl", "5h"},
	} {
		if code, _, errOut := invokeCLI(t, "", append(bad, data...)...); code == 0 || !strings.Contains(errOut, "meshpki: ") {
			t.Errorf("%v: exit %d %s", bad, code, errOut)
		}
	}
}

// TestDurationFlagsAcceptWhatIsPrinted: "7d" is printed, so "7d" (and "1w")
// is accepted by every duration flag and API field.
func TestDurationFlagsAcceptWhatIsPrinted(t *testing.T) {
	clearConnectEnv(t)
	in := servertest.Start(t, servertest.Options{})
	data := []string{"--data", in.DataDir, "--password-file", in.PasswordFile}
	run := func(args ...string) (string, string) { t.Helper(); return mustRun(t, append(args, data...)...) }
	run("provisioner", "add", "token", "week", "--allow-dns", "*.example.internal", "--default-ttl", "1d", "--max-ttl", "1w")
	p, err := in.Server.Store().GetProvisioner(context.Background(), "week")
	if err != nil || p.Policy.DefaultTTL.Std() != 24*time.Hour || p.Policy.MaxTTL.Std() != 7*24*time.Hour {
		t.Fatalf("provisioner week: %+v %v", p.Policy, err)
	}
	run("entry", "create", "--spiffe-id", "spiffe://test.internal/app/days", "--parent", testNode, "--selector", "unix:uid:1000", "--x509-ttl", "2d")
	out, _ := run("cert", "list", "--expiring-within", "3d")
	if !strings.Contains(out, "expires in") {
		t.Errorf("cert list --expiring-within 3d:\n%s", out)
	}
	if code, _, errOut := invokeCLI(t, "", append([]string{"provisioner", "add", "token", "bad", "--max-ttl", "7x"}, data...)...); code != exitUsage || !strings.Contains(errOut, "7x") {
		t.Errorf("--max-ttl 7x: exit %d %s", code, errOut)
	}
}
