package token

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/meshpki/meshpki/internal/keys"
)

const testAudience = "https://ca.example/v1/sign"

var (
	testSecret = []byte("0123456789abcdef0123456789abcdef")
	testNow    = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
)

func testKeyring(t testing.TB) *Keyring {
	t.Helper()
	k, err := NewKeyring(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func goodClaims() Claims {
	return Claims{
		ID:          "tok-1",
		Provisioner: "admin",
		Subject:     "web.example",
		SANs:        []string{"web.example", "10.0.0.1"},
		Audience:    testAudience,
		Purpose:     PurposeSign,
		IssuedAt:    testNow,
		NotBefore:   testNow,
		Expiry:      testNow.Add(5 * time.Minute),
	}
}

func mint(t testing.TB, k *Keyring, edit func(c *Claims)) string {
	t.Helper()
	c := goodClaims()
	if edit != nil {
		edit(&c)
	}
	raw, err := k.Mint(c)
	if err != nil {
		t.Fatalf("Mint: %v", err)
	}
	return raw
}

// signRaw signs an arbitrary payload, bypassing Mint's checks.
func signRaw(t testing.TB, alg jose.SignatureAlgorithm, key any, payload any) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jwt.Signed(signer).Claims(payload).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func goodPayload() map[string]any {
	return map[string]any{
		"iss": Issuer, "jti": "tok-1", "aud": testAudience, "purpose": PurposeSign,
		"sub": "web.example", "exp": testNow.Add(5 * time.Minute).Unix(),
	}
}

func wantReason(t *testing.T, err error, reason Reason) *Error {
	t.Helper()
	var tokErr *Error
	if !errors.As(err, &tokErr) {
		t.Fatalf("err = %v (%T), want *Error with reason %s", err, err, reason)
	}
	if tokErr.Reason != reason {
		t.Fatalf("reason = %s (%v), want %s", tokErr.Reason, err, reason)
	}
	return tokErr
}

func TestMintVerifyRoundTrip(t *testing.T) {
	k := testKeyring(t)
	want := goodClaims()
	want.IssuedAt = want.IssuedAt.Add(700 * time.Millisecond) // sent as whole seconds
	raw, err := k.Mint(want)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(raw, ".") != 2 {
		t.Fatalf("not a compact JWS: %d dots", strings.Count(raw, "."))
	}
	got, err := k.Verify(raw, testAudience, PurposeSign, testNow)
	if err != nil {
		t.Fatal(err)
	}
	want.IssuedAt = testNow
	if got.ID != want.ID || got.Provisioner != want.Provisioner || got.Subject != want.Subject ||
		strings.Join(got.SANs, ",") != strings.Join(want.SANs, ",") || got.Audience != want.Audience ||
		got.Purpose != want.Purpose || !got.IssuedAt.Equal(want.IssuedAt) ||
		!got.NotBefore.Equal(want.NotBefore) || !got.Expiry.Equal(want.Expiry) {
		t.Fatalf("claims differ:\n got %+v\nwant %+v", got, want)
	}

	// The header is HS256 and the issuer is meshpki.
	header, _ := base64.RawURLEncoding.DecodeString(strings.Split(raw, ".")[0])
	if !strings.Contains(string(header), `"alg":"HS256"`) {
		t.Errorf("header = %s", header)
	}
	payload, _ := base64.RawURLEncoding.DecodeString(strings.Split(raw, ".")[1])
	var m map[string]any
	if err := json.Unmarshal(payload, &m); err != nil {
		t.Fatal(err)
	}
	if m["iss"] != "meshpki" || m["aud"] != testAudience || m["prov"] != "admin" {
		t.Errorf("payload = %s", payload)
	}
}

func TestMintFillsRandomID(t *testing.T) {
	k := testKeyring(t)
	ids := map[string]bool{}
	for range 3 {
		raw := mint(t, k, func(c *Claims) { c.ID = "" })
		c, err := k.Verify(raw, testAudience, PurposeSign, testNow)
		if err != nil {
			t.Fatal(err)
		}
		if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(c.ID) {
			t.Fatalf("ID %q is not 128-bit hex", c.ID)
		}
		ids[c.ID] = true
	}
	if len(ids) != 3 {
		t.Fatal("random IDs repeat")
	}
}

func TestMintRequiresClaims(t *testing.T) {
	k := testKeyring(t)
	for name, edit := range map[string]func(c *Claims){
		"no expiry":           func(c *Claims) { c.Expiry = time.Time{} },
		"no audience":         func(c *Claims) { c.Audience = "" },
		"no purpose":          func(c *Claims) { c.Purpose = "" },
		"long ID":             func(c *Claims) { c.ID = strings.Repeat("x", 65) },
		"expiry before nbf":   func(c *Claims) { c.Expiry = c.NotBefore },
		"expiry before 1970":  func(c *Claims) { c.Expiry = time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC); c.NotBefore = time.Time{} },
		"expiry far too late": func(c *Claims) { c.Expiry = time.Date(99999, 1, 1, 0, 0, 0, 0, time.UTC) },
	} {
		c := goodClaims()
		edit(&c)
		if _, err := k.Mint(c); err == nil {
			t.Errorf("%s: Mint succeeded", name)
		}
	}
}

func TestNewKeyringNeedsLongSecret(t *testing.T) {
	if _, err := NewKeyring(make([]byte, 31)); err == nil {
		t.Fatal("31-byte secret accepted")
	}
	// The keyring copies the secret.
	secret := append([]byte(nil), testSecret...)
	k, err := NewKeyring(secret)
	if err != nil {
		t.Fatal(err)
	}
	raw := mint(t, k, nil)
	clear(secret)
	if _, err := k.Verify(raw, testAudience, PurposeSign, testNow); err != nil {
		t.Fatalf("after the caller wiped its secret: %v", err)
	}
}

func TestVerifyRejections(t *testing.T) {
	k := testKeyring(t)
	other, err := NewKeyring([]byte("another secret of at least 32 bytes!"))
	if err != nil {
		t.Fatal(err)
	}
	withPayload := func(edit func(p map[string]any)) string {
		p := goodPayload()
		edit(p)
		return signRaw(t, jose.HS256, testSecret, p)
	}
	good := mint(t, k, nil)
	parts := strings.Split(good, ".")

	for _, tc := range []struct {
		name     string
		raw      string
		audience string
		purpose  string
		now      time.Time
		reason   Reason
		msg      string
	}{
		{name: "bad-other-key", raw: mint(t, other, nil), reason: ReasonSignature},
		{name: "bad-tampered-payload", raw: parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"meshpki","jti":"x","aud":"`+testAudience+`","purpose":"sign","exp":9999999999}`)) + "." + parts[2], reason: ReasonSignature},
		{name: "bad-truncated-signature", raw: good[:len(good)-4], reason: ReasonSignature},
		{name: "bad-expired", now: testNow.Add(8 * time.Minute), reason: ReasonExpired, msg: "token: expired 3m0s ago"},
		{name: "bad-expired-exactly-now", now: testNow.Add(5 * time.Minute), reason: ReasonExpired, msg: "token: expired 0s ago"},
		{name: "bad-expired-sub-second", now: testNow.Add(5*time.Minute + 500*time.Millisecond), reason: ReasonExpired},
		{name: "bad-not-yet-valid", now: testNow.Add(-31 * time.Second), reason: ReasonNotYetValid, msg: "token: not valid for another 31s"},
		{name: "bad-audience", audience: "https://b/v1/sign", raw: mint(t, k, func(c *Claims) { c.Audience = "https://a/v1/sign" }), reason: ReasonAudience,
			msg: `token: issued for audience "https://a/v1/sign", not "https://b/v1/sign"`},
		{name: "bad-audience-prefix", audience: testAudience + "/", reason: ReasonAudience},
		{name: "bad-purpose", purpose: PurposeJoin, reason: ReasonPurpose, msg: `token: issued for purpose "sign", not "join"`},
		{name: "bad-issuer", raw: withPayload(func(p map[string]any) { p["iss"] = "step-ca" }), reason: ReasonMalformed},
		{name: "bad-no-issuer", raw: withPayload(func(p map[string]any) { delete(p, "iss") }), reason: ReasonMalformed},
		{name: "bad-no-jti", raw: withPayload(func(p map[string]any) { delete(p, "jti") }), reason: ReasonMalformed},
		{name: "bad-long-jti", raw: withPayload(func(p map[string]any) { p["jti"] = strings.Repeat("j", 65) }), reason: ReasonMalformed},
		{name: "bad-no-exp", raw: withPayload(func(p map[string]any) { delete(p, "exp") }), reason: ReasonMalformed},
		{name: "bad-fractional-exp", raw: withPayload(func(p map[string]any) { p["exp"] = 1.5e9 + 0.5 }), reason: ReasonMalformed},
		{name: "bad-huge-exp", raw: withPayload(func(p map[string]any) { p["exp"] = int64(1) << 62 }), reason: ReasonMalformed},
		{name: "bad-audience-array", raw: withPayload(func(p map[string]any) { p["aud"] = []string{testAudience} }), reason: ReasonMalformed},
		{name: "bad-empty", raw: "", reason: ReasonMalformed},
		{name: "bad-garbage", raw: "not.a.token", reason: ReasonMalformed},
		{name: "bad-json-serialization", raw: `{"payload":"e30","signatures":[]}`, reason: ReasonMalformed},
		{name: "bad-oversize", raw: strings.Repeat("a", MaxTokenSize+1), reason: ReasonMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw, audience, purpose, now := tc.raw, tc.audience, tc.purpose, tc.now
			if raw == "" && tc.name != "bad-empty" {
				raw = good
			}
			if audience == "" {
				audience = testAudience
			}
			if purpose == "" {
				purpose = PurposeSign
			}
			if now.IsZero() {
				now = testNow
			}
			c, err := k.Verify(raw, audience, purpose, now)
			tokErr := wantReason(t, err, tc.reason)
			if tc.msg != "" && err.Error() != tc.msg {
				t.Errorf("err = %q, want %q", err, tc.msg)
			}
			if raw != "" && strings.Contains(tokErr.Error(), raw) {
				t.Error("error contains the token")
			}
			if c.ID != "" {
				t.Error("claims returned with an error")
			}
		})
	}
}

func TestVerifyAllowsClockSkewOnNotBeforeOnly(t *testing.T) {
	k := testKeyring(t)
	raw := mint(t, k, nil)
	if _, err := k.Verify(raw, testAudience, PurposeSign, testNow.Add(-30*time.Second)); err != nil {
		t.Errorf("nbf 30s ahead: %v", err)
	}
	if _, err := k.Verify(raw, testAudience, PurposeSign, testNow.Add(5*time.Minute-time.Millisecond)); err != nil {
		t.Errorf("1ms before exp: %v", err)
	}
	noNBF := mint(t, k, func(c *Claims) { c.NotBefore = time.Time{}; c.IssuedAt = time.Time{} })
	c, err := k.Verify(noNBF, testAudience, PurposeSign, testNow.Add(-time.Hour))
	if err != nil || !c.NotBefore.IsZero() || !c.IssuedAt.IsZero() {
		t.Errorf("token without nbf: %+v, %v", c, err)
	}
}

func TestVerifyRefusesOtherAlgorithms(t *testing.T) {
	k := testKeyring(t)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	longSecret := append(append([]byte(nil), testSecret...), testSecret...)
	payload := base64.RawURLEncoding.EncodeToString(mustJSON(t, goodPayload()))
	noneHeader := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
	hsHeader := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))

	for _, tc := range []struct {
		name, raw string
	}{
		{"bad-alg-none", noneHeader + "." + payload + "."},
		{"bad-alg-none-with-signature", noneHeader + "." + payload + ".c2ln"},
		{"bad-hs256-no-signature", hsHeader + "." + payload + "."},
		{"bad-rs256", signRaw(t, jose.RS256, rsaKey, goodPayload())},
		{"bad-ps256", signRaw(t, jose.PS256, rsaKey, goodPayload())},
		{"bad-es256", signRaw(t, jose.ES256, ecKey, goodPayload())},
		// The right secret under another HMAC algorithm is still refused.
		{"bad-hs384-same-secret", signRaw(t, jose.HS384, longSecret, goodPayload())},
		{"bad-hs512-same-secret", signRaw(t, jose.HS512, longSecret, goodPayload())},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := k.Verify(tc.raw, testAudience, PurposeSign, testNow)
			if err == nil {
				t.Fatal("accepted")
			}
			var tokErr *Error
			if !errors.As(err, &tokErr) || (tokErr.Reason != ReasonSignature && tokErr.Reason != ReasonMalformed) {
				t.Fatalf("err = %v, want a signature or malformed *Error", err)
			}
		})
	}
	_, err = k.Verify(signRaw(t, jose.ES256, ecKey, goodPayload()), testAudience, PurposeSign, testNow)
	if e := wantReason(t, err, ReasonSignature); !strings.Contains(e.Msg, "ES256") {
		t.Errorf("err = %q does not name the algorithm", err)
	}
}

func TestVerifyRejectsOversizeSignedToken(t *testing.T) {
	k := testKeyring(t)
	p := goodPayload()
	p["sans"] = []string{strings.Repeat("a", MaxTokenSize)}
	raw := signRaw(t, jose.HS256, testSecret, p)
	_, err := k.Verify(raw, testAudience, PurposeSign, testNow)
	wantReason(t, err, ReasonMalformed)

	if _, err := k.Mint(Claims{Audience: testAudience, Purpose: PurposeSign, Expiry: testNow, SANs: []string{strings.Repeat("a", MaxTokenSize)}}); err == nil {
		t.Error("Mint made a token Verify would refuse")
	}
}

func TestKeyringIsSafeForConcurrentUse(t *testing.T) {
	k := testKeyring(t)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 20 {
				raw, err := k.Mint(Claims{Audience: testAudience, Purpose: PurposeSign, Expiry: testNow.Add(time.Minute)})
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := k.Verify(raw, testAudience, PurposeSign, testNow); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func FuzzVerify(f *testing.F) {
	k := testKeyring(f)
	good := mint(f, k, nil)
	f.Add(good)
	f.Add(good[:len(good)-1])
	f.Add(mint(f, k, func(c *Claims) { c.SANs = nil; c.NotBefore = time.Time{} }))
	f.Add(signRaw(f, jose.HS256, testSecret, map[string]any{"iss": 1, "exp": "x"}))
	f.Add(base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none"}`)) + ".e30.")
	f.Add("")
	f.Add("..")
	f.Add(`{"payload":"e30","signatures":[{"protected":"e30","signature":""}]}`)
	f.Fuzz(func(t *testing.T, raw string) {
		c, err := k.Verify(raw, testAudience, PurposeSign, testNow)
		if err == nil {
			if c.ID == "" || c.Audience != testAudience || c.Purpose != PurposeSign || !c.Expiry.After(testNow) {
				t.Fatalf("accepted claims %+v", c)
			}
			return
		}
		tokErr, ok := err.(*Error)
		if !ok || tokErr == nil {
			t.Fatalf("err %v is %T, not *Error", err, err)
		}
		if tokErr.Reason == "" || tokErr.Msg == "" {
			t.Fatalf("empty reason or message: %#v", tokErr)
		}
		if len(raw) >= 16 && strings.Contains(err.Error(), raw) {
			t.Fatal("error contains the token")
		}
	})
}

func BenchmarkVerify(b *testing.B) {
	k := testKeyring(b)
	raw := mint(b, k, nil)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.Verify(raw, testAudience, PurposeSign, testNow); err != nil {
			b.Fatal(err)
		}
	}
}

type failingMAC struct{}

func (failingMAC) MAC([]byte) ([]byte, error) {
	return nil, fmt.Errorf("%w: the HSM is gone", keys.ErrMACUnavailable)
}

// A key whose device cannot compute the MAC fails minting, and fails
// verification as unavailable, not as a bad token.
func TestKeyringMACUnavailable(t *testing.T) {
	k, err := NewKeyringMAC(failingMAC{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if _, err := k.Mint(Claims{Audience: "https://ca/v1/sign", Purpose: PurposeSign, Expiry: now.Add(time.Minute)}); err == nil {
		t.Error("minted without the key")
	}
	good, err := NewKeyring(make([]byte, MinSecretSize))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := good.Mint(Claims{Audience: "https://ca/v1/sign", Purpose: PurposeSign, Expiry: now.Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = k.Verify(raw, "https://ca/v1/sign", PurposeSign, now)
	var te *Error
	if !errors.Is(err, keys.ErrMACUnavailable) || errors.As(err, &te) {
		t.Fatalf("verify without the key: %v", err)
	}
}
