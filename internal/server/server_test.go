package server_test

import (
	"context"
	"crypto/tls"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshpki/meshpki/internal/server"
	"github.com/meshpki/meshpki/internal/servertest"
	"github.com/meshpki/meshpki/internal/store"
)

// fakeClock is a settable clock safe for concurrent use.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func servedCert(t *testing.T, addr string) (serial string, notAfter time.Time) {
	t.Helper()
	// Only reading the served certificate: its validity follows the fake
	// clock, so the real clock may not accept it.
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if v := conn.ConnectionState().Version; v != tls.VersionTLS13 {
		t.Errorf("negotiated TLS version %x, want TLS 1.3", v)
	}
	leaf := conn.ConnectionState().PeerCertificates[0]
	return string(store.SerialOf(leaf.SerialNumber)), leaf.NotAfter
}

func TestServerRenewsItsOwnCertificateAndAdminCredential(t *testing.T) {
	clock := &fakeClock{now: time.Now()}
	in := servertest.Start(t, servertest.Options{Clock: clock.Now})
	addr := in.Server.Addr().String()
	serial1, notAfter1 := servedCert(t, addr)
	if life := notAfter1.Sub(clock.Now()); life < 23*time.Hour || life > 25*time.Hour {
		t.Fatalf("server certificate lives %s, want 24h", life)
	}
	adminBefore, err := os.ReadFile(filepath.Join(in.DataDir, server.AdminCertFile))
	if err != nil {
		t.Fatal(err)
	}

	// Past two thirds of its life the server swaps in a new certificate.
	clock.Advance(17 * time.Hour)
	deadline := time.Now().Add(10 * time.Second)
	for {
		serial2, notAfter2 := servedCert(t, addr)
		if serial2 != serial1 {
			if !notAfter2.After(notAfter1) {
				t.Errorf("renewed certificate expires %s, not after %s", notAfter2, notAfter1)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("server certificate was not renewed")
		}
		time.Sleep(50 * time.Millisecond)
	}

	// The admin credential (30 days) is renewed past 20 days.
	clock.Advance(20 * 24 * time.Hour)
	for {
		after, err := os.ReadFile(filepath.Join(in.DataDir, server.AdminCertFile))
		if err == nil && string(after) != string(adminBefore) {
			break
		}
		if time.Now().After(deadline.Add(10 * time.Second)) {
			t.Fatal("admin credential was not renewed")
		}
		time.Sleep(50 * time.Millisecond)
	}
	st, _ := os.Stat(filepath.Join(in.DataDir, server.AdminKeyFile))
	key, _ := os.ReadFile(filepath.Join(in.DataDir, server.AdminKeyFile))
	if st.Mode().Perm() != 0o600 || !strings.Contains(string(key), "-----BEGIN ENCRYPTED PRIVATE KEY-----") {
		t.Errorf("admin key: mode %v, encrypted=%v", st.Mode().Perm(), strings.Contains(string(key), "ENCRYPTED"))
	}
}

func TestServerStateFileAndBanner(t *testing.T) {
	in := servertest.Start(t, servertest.Options{})
	b, err := os.ReadFile(filepath.Join(in.DataDir, server.StateFile))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), in.URL) || !strings.Contains(string(b), "root_fingerprint") {
		t.Errorf("server.json: %s", b)
	}
	for _, dir := range []string{in.DataDir, filepath.Join(in.DataDir, "secrets"), filepath.Join(in.DataDir, "ca", "keys")} {
		st, err := os.Stat(dir)
		if err != nil || st.Mode().Perm() != 0o700 {
			t.Errorf("%s: mode %v (%v), want 0700", dir, st.Mode().Perm(), err)
		}
	}
	st, err := os.Stat(filepath.Join(in.DataDir, "meshpki.db"))
	if err != nil || st.Mode().Perm()&0o077 != 0 {
		t.Errorf("meshpki.db readable by others: %v %v", st.Mode().Perm(), err)
	}
}

// TestSecondServerOnTheSameDataDirRefuses: a second server on a SQLite data
// directory refuses to start, naming the running one's pid and URL, and
// leaves its server.json alone; once the first stops, server.json is gone
// and a new server starts.
func TestSecondServerOnTheSameDataDirRefuses(t *testing.T) {
	in := servertest.Start(t, servertest.Options{})
	state := filepath.Join(in.DataDir, server.StateFile)
	before, err := os.ReadFile(state)
	if err != nil {
		t.Fatal(err)
	}
	_, err = server.Start(context.Background(), server.Options{DataDir: in.DataDir, Listen: "127.0.0.1:0", PasswordFile: in.PasswordFile})
	if err == nil || !strings.Contains(err.Error(), "another meshpki server is running") ||
		!strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) || !strings.Contains(err.Error(), in.URL) {
		t.Fatalf("second server: %v", err)
	}
	if after, _ := os.ReadFile(state); string(after) != string(before) {
		t.Fatal("the refused server changed server.json")
	}
	in.Stop()
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Fatalf("server.json after a clean stop: %v", err)
	}
	again := servertest.Start(t, servertest.Options{DataDir: in.DataDir})
	if _, err := os.Stat(filepath.Join(again.DataDir, server.StateFile)); err != nil {
		t.Fatal(err)
	}
}

// TestTLS12OffersOnlyAEADSuites: a TLS 1.2 client offering only CBC suites
// is refused; one offering AES-GCM is served.
func TestTLS12OffersOnlyAEADSuites(t *testing.T) {
	in := servertest.Start(t, servertest.Options{})
	addr := strings.TrimPrefix(in.URL, "https://")
	dial := func(suite uint16) error {
		conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: in.Roots, MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{suite}})
		if err == nil {
			conn.Close()
		}
		return err
	}
	if err := dial(tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA); err == nil {
		t.Error("a CBC suite was negotiated")
	}
	if err := dial(tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256); err != nil {
		t.Errorf("AES-GCM over TLS 1.2: %v", err)
	}
}
