package sqlstore

import "testing"

// FuzzInventoryCursor: a cursor either parses and prints back the same,
// or is refused; never a panic.
func FuzzInventoryCursor(f *testing.F) {
	f.Add("1700000000000000.issued.42")
	f.Add("-1.scanned.0")
	f.Add("x.y.z")
	f.Add("1..2")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := parseInventoryCursor(s)
		if err != nil {
			return
		}
		again, err := parseInventoryCursor(c.String())
		if err != nil || again != c {
			t.Fatalf("%q → %+v → %q → %+v, %v", s, c, c.String(), again, err)
		}
	})
}
