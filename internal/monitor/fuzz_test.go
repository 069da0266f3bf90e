package monitor

import (
	"testing"
)

// FuzzParseCertificates: any bytes give certificates or an error, never a
// panic.
func FuzzParseCertificates(f *testing.F) {
	p := newPKI(f)
	f.Add(p.root.Raw)
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"))
	f.Add([]byte{0x30, 0x82, 0x01, 0x00, 0x02, 0x01, 0x03})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		certs, err := ParseCertificates(data, "pw")
		if err == nil && len(certs) == 0 {
			t.Fatal("no error and no certificate")
		}
		for _, chain := range SplitChains(certs) {
			if len(chain) == 0 {
				t.Fatal("an empty chain")
			}
		}
	})
}

// FuzzParseTargets: any argument gives targets or an error, never a panic,
// and never more endpoints than the range limit allows.
func FuzzParseTargets(f *testing.F) {
	for _, s := range []string{"web.test:443", "https://web.test:8443/x", "10.0.0.0/28:443,8443", "[::1]:443", "fd00::/120:443", "a/b:c", "/:", "1.2.3.4/33:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, arg string) {
		if len(arg) > 0 && (arg[0] == '/' || arg[0] == '.') {
			return // a path on this machine: walking it is not the parser's business
		}
		ts, err := ParseTargets([]string{arg}, TargetOptions{})
		if err != nil {
			return
		}
		if len(ts) > MaxRangeAddresses*65535 {
			t.Fatalf("%d targets", len(ts))
		}
		for _, tg := range ts {
			if tg.Kind == KindEndpoint && tg.Addr == "" {
				t.Fatalf("endpoint without an address: %+v", tg)
			}
		}
	})
}

// FuzzParseLabels: never a panic; accepted labels pass CheckLabels.
func FuzzParseLabels(f *testing.F) {
	f.Add("team=payments", "env=prod")
	f.Add("9x=1", "=")
	f.Add("a", "b=c=d")
	f.Fuzz(func(t *testing.T, a, b string) {
		labels, err := ParseLabels([]string{a, b})
		if err == nil {
			if cerr := CheckLabels(labels); cerr != nil {
				t.Fatalf("ParseLabels accepted %v that CheckLabels refuses: %v", labels, cerr)
			}
		}
	})
}
