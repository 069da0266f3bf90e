// Package deploy holds what ships beside the binary: Prometheus rules, a
// Grafana dashboard, systemd units. Its tests check the rules with promtool
// against the metrics a real server serves, and the units with
// systemd-analyze.
package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshpki/meshpki/internal/servertest"
	"github.com/meshpki/meshpki/internal/wire"
)

// promtool returns the path of promtool; without it the tests fail in CI
// (.ci/run installs Debian's prometheus) and are skipped elsewhere.
func promtool(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("promtool is not installed (apt-get install prometheus)")
		}
		t.Skip("promtool is not installed (apt-get install prometheus)")
	}
	return path
}

func run(t *testing.T, stdin []byte, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestPrometheusRulesAreValid(t *testing.T) {
	out := run(t, nil, promtool(t), "check", "rules", filepath.Join("prometheus", "alerts.yml"))
	if !strings.Contains(out, "SUCCESS") {
		t.Fatalf("promtool: %s", out)
	}
}

type dashboard struct {
	UID    string `json:"uid"`
	Title  string `json:"title"`
	Panels []struct {
		ID      int    `json:"id"`
		Title   string `json:"title"`
		Type    string `json:"type"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("grafana", "meshpki.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("grafana/meshpki.json: %v", err)
	}
	return d
}

// Every panel's query parses (promtool checks each as a recording rule).
func TestDashboardQueriesParse(t *testing.T) {
	tool := promtool(t)
	d := loadDashboard(t)
	if d.UID == "" || len(d.Panels) == 0 {
		t.Fatalf("dashboard has no uid or no panels")
	}
	var rules strings.Builder
	rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	n := 0
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			n++
			expr, _ := json.Marshal(tg.Expr)
			fmt.Fprintf(&rules, "      - record: dashboard_query_%d\n        expr: %s\n", n, expr)
		}
	}
	file := filepath.Join(t.TempDir(), "dashboard-rules.yml")
	if err := os.WriteFile(file, []byte(rules.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := run(t, nil, tool, "check", "rules", file); !strings.Contains(out, fmt.Sprintf("%d rules found", n)) {
		t.Fatalf("promtool: %s", out)
	}
}

// The metrics a real server serves, with an inventory and alerting in
// use, pass promtool check metrics; and every metric the rules and the
// dashboard use is one the server serves.
func TestServerMetrics(t *testing.T) {
	tool := promtool(t)
	in := servertest.Start(t, servertest.Options{})
	// Put a scanned certificate in the inventory, with findings: the
	// server's root presented by an endpoint for another name.
	chain := in.Server.Authority().Hierarchy().Root().Raw
	report, _ := json.Marshal(wire.ScanReport{Results: []wire.ReportedResult{{Scope: "db:5432", Target: "db:5432", Kind: "endpoint",
		VerifyName: "db.example.test", Chain: [][]byte{chain}}}})
	resp, err := in.Admin.Post(in.URL+"/v1/inventory/reports", "application/json", bytes.NewReader(report))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("report: %d", resp.StatusCode)
	}
	// A refused request, for the error counter.
	if resp, err := in.Admin.Get(in.URL + "/v1/inventory?source=elsewhere"); err == nil {
		resp.Body.Close()
	}
	time.Sleep(300 * time.Millisecond) // one alert evaluation
	resp, err = in.Anonymous.Get(in.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"x509_cert_not_after{", "x509_cert_expired{", "meshpki_scans_total{", "meshpki_alert_delivery_failures_total{", "meshpki_alerts_firing"} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	cmd := exec.Command(tool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}

	served := map[string]bool{}
	for _, line := range strings.Split(string(body), "\n") {
		if name, ok := strings.CutPrefix(line, "# TYPE "); ok {
			fields := strings.Fields(name)
			served[fields[0]] = true
			if fields[1] == "histogram" {
				served[fields[0]+"_bucket"] = true
			}
		}
	}
	metric := regexp.MustCompile(`\b(x509_cert_[a-z_]+|meshpki_[a-z_]+)\b`)
	var used []string
	rules, _ := os.ReadFile(filepath.Join("prometheus", "alerts.yml"))
	used = append(used, metric.FindAllString(string(rules), -1)...)
	for _, p := range loadDashboard(t).Panels {
		for _, tg := range p.Targets {
			used = append(used, metric.FindAllString(tg.Expr, -1)...)
		}
	}
	slices.Sort(used)
	for _, name := range slices.Compact(used) {
		if !served[name] {
			t.Errorf("%s is used by the rules or the dashboard but not served", name)
		}
	}
}
