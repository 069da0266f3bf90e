package deploy

import (
	"bytes"
	"errors"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// helmBinary builds Helm from the Go module proxy (deploy/helm/tool, its own
// module: Debian ships no Helm) once per test run.
func helmBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "helm")
	cmd := exec.Command("go", "build", "-o", bin, "helm.sh/helm/v4/cmd/helm")
	cmd.Dir = "helm/tool"
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build helm: %v\n%s", err, out)
	}
	return bin
}

// TestHelmChart: 'helm lint --strict' passes; the chart renders a
// StatefulSet, its Service and the agent DaemonSet with the confinement
// the docs promise; several replicas need PostgreSQL (a clear failure
// otherwise, since SQLite serves one) and one shared claim for the data
// directory (else each would make a CA of its own); and x509pop
// attestation mounts each node's certificate.
func TestHelmChart(t *testing.T) {
	helm := helmBinary(t)
	if out, err := exec.Command(helm, "lint", "--strict", "helm/meshpki").CombinedOutput(); err != nil {
		t.Fatalf("helm lint: %v\n%s", err, out)
	}
	render := func(args ...string) ([]map[string]any, error) {
		out, err := exec.Command(helm, append([]string{"template", "t", "helm/meshpki", "--namespace", "pki"}, args...)...).CombinedOutput()
		if err != nil {
			return nil, errors.New(string(out))
		}
		var docs []map[string]any
		dec := yaml.NewDecoder(bytes.NewReader(out))
		for {
			var d map[string]any
			if err := dec.Decode(&d); err == io.EOF {
				break
			} else if err != nil {
				t.Fatalf("rendered YAML: %v", err)
			}
			if d != nil {
				docs = append(docs, d)
			}
		}
		return docs, nil
	}
	docs, err := render()
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]map[string]any{}
	for _, d := range docs {
		kinds[d["kind"].(string)] = d
	}
	for _, k := range []string{"StatefulSet", "Service", "DaemonSet"} {
		if kinds[k] == nil {
			t.Fatalf("no %s rendered", k)
		}
	}
	container := func(d map[string]any) map[string]any {
		return dig(d, "spec", "template", "spec", "containers").([]any)[0].(map[string]any)
	}
	server := container(kinds["StatefulSet"])
	if sc := server["securityContext"].(map[string]any); sc["readOnlyRootFilesystem"] != true || sc["allowPrivilegeEscalation"] != false ||
		!strings.Contains(strings.Join(toStrings(dig(sc, "capabilities", "drop")), ","), "ALL") {
		t.Errorf("server securityContext: %v", sc)
	}
	if dig(kinds["StatefulSet"], "spec", "template", "spec", "securityContext", "runAsNonRoot") != true {
		t.Error("the server may run as root")
	}
	args := strings.Join(toStrings(server["args"]), " ")
	if !strings.Contains(args, "--url=https://t-meshpki.pki.svc:8443") || !strings.Contains(args, "--password-file=/run/secrets/meshpki/password") {
		t.Errorf("server args: %s", args)
	}
	agentArgs := strings.Join(toStrings(container(kinds["DaemonSet"])["args"]), " ")
	if !strings.Contains(agentArgs, "--server=https://t-meshpki.pki.svc:8443") || !strings.Contains(agentArgs, "--join-token-file=") {
		t.Errorf("agent args: %s", agentArgs)
	}

	if _, err := render("--set", "server.replicas=3"); err == nil || !strings.Contains(err.Error(), "PostgreSQL") {
		t.Errorf("three replicas on SQLite: %v", err)
	}
	if _, err := render("--set", "server.replicas=3", "--set", "server.store.urlSecret=meshpki-pg"); err == nil || !strings.Contains(err.Error(), "existingClaim") {
		t.Errorf("three replicas each with a data directory of its own (three CAs): %v", err)
	}
	if d := kinds["StatefulSet"]; dig(d, "spec", "volumeClaimTemplates") == nil {
		t.Error("one replica has no claim of its own")
	}
	docs, err = render("--set", "server.replicas=3", "--set", "server.store.urlSecret=meshpki-pg", "--set", "server.persistence.existingClaim=meshpki-data",
		"--set", "agent.attestation=x509pop")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range docs {
		switch d["kind"] {
		case "StatefulSet":
			if env := container(d)["env"]; env == nil || !strings.Contains(toYAML(t, env), "meshpki-pg") {
				t.Errorf("the store URL does not come from the Secret: %v", env)
			}
			if dig(d, "spec", "volumeClaimTemplates") != nil || !strings.Contains(toYAML(t, dig(d, "spec", "template", "spec", "volumes")), "claimName: meshpki-data") ||
				dig(d, "spec", "podManagementPolicy") != "OrderedReady" {
				t.Errorf("replicas do not share the data directory's claim: %s", toYAML(t, d["spec"]))
			}
		case "DaemonSet":
			if a := strings.Join(toStrings(container(d)["args"]), " "); !strings.Contains(a, "--x509pop-cert=") || strings.Contains(a, "--join-token-file") {
				t.Errorf("x509pop agent args: %s", a)
			}
		}
	}
	if _, err := render("--set", "agent.attestation=psat"); err == nil {
		t.Error("an unknown attestation rendered")
	}
}

func dig(v any, path ...string) any {
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

func toStrings(v any) []string {
	var out []string
	list, _ := v.([]any)
	for _, x := range list {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func toYAML(t *testing.T, v any) string {
	b, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
