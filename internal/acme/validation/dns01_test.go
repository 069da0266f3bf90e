package validation

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"testing"
	"time"
)

func keyAuthDigest(keyAuth string) string {
	sum := sha256.Sum256([]byte(keyAuth))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func TestDNS01(t *testing.T) {
	d := newTestDNS(t)
	digest := keyAuthDigest(testKeyAuth)
	d.TXT("_acme-challenge.good.test", digest)
	d.TXT("_acme-challenge.wrong.test", keyAuthDigest("some other key authorization"))
	d.TXT("_acme-challenge.several.test", "unrelated", keyAuthDigest("stale"), digest)
	d.CNAME("_acme-challenge.alias.test", "_acme-challenge.delegated.test")
	d.TXT("_acme-challenge.delegated.test", digest)
	d.CNAME("_acme-challenge.dangling.test", "_acme-challenge.nowhere.test")
	d.A("_acme-challenge.nodata.test", "127.0.0.1")
	d.ServFail("_acme-challenge.broken.test")
	v := newTestValidator(d, 0, 0)

	tests := []struct {
		name     string
		domain   string
		wantType string
	}{
		{"matching record", "good.test", ""},
		{"name compared case-insensitively", "GOOD.Test", ""},
		{"one matching record among several", "several.test", ""},
		{"CNAME is followed", "alias.test", ""},
		{"wrong digest", "wrong.test", TypeIncorrectResponse},
		{"missing record (NXDOMAIN)", "missing.test", TypeUnauthorized},
		{"no TXT record at an existing name", "nodata.test", TypeUnauthorized},
		{"CNAME to nothing", "dangling.test", TypeUnauthorized},
		{"resolver failure (SERVFAIL)", "broken.test", TypeDNS},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := v.DNS01(context.Background(), dnsID(tt.domain), testKeyAuth)
			checkResult(t, err, tt.wantType)
			if tt.wantType == TypeUnauthorized && !strings.Contains(err.Error(), "no TXT record at _acme-challenge."+tt.domain) {
				t.Errorf("detail %q does not name the missing record", err)
			}
		})
	}
}

func TestDNS01ResolverDown(t *testing.T) {
	v := New(Config{Resolver: "127.0.0.1:1", Timeout: time.Second}) // nothing listens there
	checkResult(t, v.DNS01(context.Background(), dnsID("good.test"), testKeyAuth), TypeDNS)
}
