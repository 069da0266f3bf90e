package ca

import (
	"math/big"
	"testing"

	"github.com/meshpki/meshpki/internal/store"
)

func TestParseSerial(t *testing.T) {
	for in, want := range map[string]store.Serial{
		"5F0C3A9E": "5f0c3a9e", "5f:0c:3a:9e": "5f0c3a9e", "0x00ab": "ab", " 0001 ": "1",
	} {
		if got, err := ParseSerial(in); err != nil || got != want {
			t.Errorf("ParseSerial(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "0", "00:00", "xyz", "5f0g", "1123456789012345678901234567890123456789012"} {
		if got, err := ParseSerial(bad); err == nil {
			t.Errorf("ParseSerial(%q) = %q, want an error", bad, got)
		}
	}
}

// FuzzParseSerial: whatever it accepts is in SerialString's form and reads
// back unchanged.
func FuzzParseSerial(f *testing.F) {
	for _, s := range []string{"5F:0C", "0x01", "abc", "", "zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseSerial(s)
		if err != nil {
			return
		}
		n, ok := new(big.Int).SetString(string(got), 16)
		if !ok || store.SerialOf(n) != got {
			t.Fatalf("ParseSerial(%q) = %q, not in SerialString form", s, got)
		}
		if again, err := ParseSerial(string(got)); err != nil || again != got {
			t.Fatalf("ParseSerial(%q) = %q, %v", got, again, err)
		}
	})
}
