package cli

import (
	"strings"
	"testing"
)

// meshpki proxy refuses what it cannot run with one line and exit 2.
func TestProxyUsage(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"proxy", "inbound", "--to", "127.0.0.1:1"}, "--listen and --to are required"},
		{[]string{"proxy", "inbound", "--listen", ":0", "--to", "127.0.0.1:1"}, "--allow is required"},
		{[]string{"proxy", "outbound", "--listen", ":0", "--to", "a:1"}, "--expect is required"},
		{[]string{"proxy", "inbound", "--listen", ":0", "--to", "127.0.0.1:1", "--allow", "web"}, "--allow \"web\" is not a SPIFFE ID"},
		{[]string{"proxy", "inbound", "--listen", ":0", "--to", "127.0.0.1:1", "--allow", "spiffe://td", "--cert", "a.pem"}, "go together"},
		{[]string{"proxy", "inbound", "--listen", ":0", "--to", "127.0.0.1:1", "--allow", "spiffe://td", "--cert", "a", "--key", "b", "--bundle", "c", "--workload-api", "unix:///x"}, "not both"},
		{[]string{"proxy", "inbound", "--listen", ":0", "--to", "127.0.0.1:1", "--allow", "spiffe://td", "--handshake-timeout", "0s"}, "timeouts must be positive"},
	} {
		code, _, errOut := invokeCLI(t, "", c.args...)
		if code != exitUsage || !strings.Contains(errOut, c.want) || strings.Count(strings.TrimSpace(errOut), "\n") > 0 {
			t.Errorf("%v: exit %d, stderr %q; want 2 and one line saying %q", c.args, code, errOut, c.want)
		}
	}
}
