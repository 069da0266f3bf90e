package server_test

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshpki/meshpki/internal/ca"
	"github.com/meshpki/meshpki/internal/server"
	"github.com/meshpki/meshpki/internal/servertest"
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
	return ca.SerialString(leaf.SerialNumber), leaf.NotAfter
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
	if st.Mode().Perm() != 0o600 || !strings.Contains(string(key), "MESHPKI ENCRYPTED PRIVATE KEY") {
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
