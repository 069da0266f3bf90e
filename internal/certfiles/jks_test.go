package certfiles

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// keytool, the JDK's own, reads the JKS keystore: the store's digest
// verifies with the password, the entry is a private key with its chain,
// and the key decrypts (keytool converts it to PKCS#12, which needs it).
func TestJKSReadByKeytool(t *testing.T) {
	keytool, err := exec.LookPath("keytool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("keytool is needed (.ci/run installs default-jre-headless)")
		}
		t.Skip("keytool is not installed")
	}
	l := layout(t)
	l.JKS = "web.jks"
	if err := Write(l, newSet(t, "java.example.internal"), time.Now()); err != nil {
		t.Fatal(err)
	}
	store := filepath.Join(l.Dir, "web.jks")
	out, err := exec.Command(keytool, "-list", "-v", "-keystore", store, "-storepass", "changeit", "-storetype", "JKS").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "PrivateKeyEntry") || !strings.Contains(string(out), "CN=java.example.internal") {
		t.Fatalf("keytool -list: %v\n%s", err, out)
	}
	if out, err := exec.Command(keytool, "-list", "-keystore", store, "-storepass", "wrong-password", "-storetype", "JKS").CombinedOutput(); err == nil {
		t.Fatalf("keytool accepted a wrong password:\n%s", out)
	}
	p12 := filepath.Join(t.TempDir(), "converted.p12")
	out, err = exec.Command(keytool, "-importkeystore", "-srckeystore", store, "-srcstoretype", "JKS", "-srcstorepass", "changeit",
		"-destkeystore", p12, "-deststoretype", "PKCS12", "-deststorepass", "changeit", "-noprompt").CombinedOutput()
	if err != nil {
		t.Fatalf("keytool -importkeystore (decrypts the key): %v\n%s", err, out)
	}
}
