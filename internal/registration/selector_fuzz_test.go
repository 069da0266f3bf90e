package registration

import (
	"strings"
	"testing"
)

// FuzzCheckSelector: any string either is refused with an error or is a
// type:key:value selector of a known kind with a non-empty value.
func FuzzCheckSelector(f *testing.F) {
	for _, s := range []string{"unix:uid:1000", "unix:path:/usr/bin/x", "unix:sha256:" + strings.Repeat("a", 64), "x509pop:subject:cn:web", "unix:uid:", "a:b", "", "unix:gid:-1", "unix:path:relative"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if err := checkSelector(s); err != nil {
			return
		}
		typ, rest, _ := strings.Cut(s, ":")
		key, value, _ := strings.Cut(rest, ":")
		if !selectorTypes[typ][key] || value == "" {
			t.Fatalf("accepted %q", s)
		}
	})
}
