//go:build cgo

package keystest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ThalesGroup/crypto11"
	"github.com/miekg/pkcs11"
)

// SoftHSMModule is where Debian's softhsm2 package puts its PKCS#11 module.
const SoftHSMModule = "/usr/lib/softhsm/libsofthsm2.so"

// SoftHSMToken is a SoftHSM v2 token initialised for one test, in a
// directory of its own (SOFTHSM2_CONF points the module at it for the
// rest of the test).
type SoftHSMToken struct {
	Label   string
	PIN     string
	PINFile string // 0600, holding PIN
	Dir     string // the directory of every token of the test process
}

// SoftHSM initialises a token labelled label-N (a number unique in the
// process) with a fresh PIN. Without
// softhsm2 installed the test is skipped, or fails under CI (CI=true),
// which installs it.
func SoftHSM(t testing.TB, label string) *SoftHSMToken {
	t.Helper()
	_, err := exec.LookPath("softhsm2-util") // Debian's softhsm2 installs both
	if _, statErr := os.Stat(SoftHSMModule); err != nil || statErr != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("softhsm2 is needed (.ci/run installs it)")
		}
		t.Skip("softhsm2 is not installed")
	}
	conf, tokens, err := softHSMConfig()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	t.Setenv("SOFTHSM2_CONF", conf)
	label = fmt.Sprintf("%s-%d", label, tokenCount.Add(1))
	tok := &SoftHSMToken{Label: label, PIN: "4417-meshpki-test", PINFile: filepath.Join(dir, "pin"), Dir: tokens}
	if err := os.WriteFile(tok.PINFile, []byte(tok.PIN+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if os.Getenv(SoftHSMFinalizeEnv) == "" {
		if err := keepInitialized(); err != nil {
			t.Fatalf("keep SoftHSM initialised: %v", err)
		}
	}
	if err := initToken(label, tok.PIN); err != nil {
		t.Fatalf("initialise SoftHSM token %s: %v", label, err)
	}
	return tok
}

var (
	tokenCount     atomic.Int64
	softHSMOnce    sync.Once
	softHSMConf    string
	softHSMTokens  string
	softHSMConfErr error
)

// softHSMConfig writes, once per test process, the configuration every
// token of the process lives under. SoftHSM keeps state between a
// module's finalize and the next initialize of the same process, and
// does not survive its configuration moving, so the tests of one process
// share one configuration and each makes a token of its own in it. The
// directory is the process's and small; tokens are deleted as their tests
// end.
func softHSMConfig() (string, string, error) {
	softHSMOnce.Do(func() {
		dir, err := os.MkdirTemp("", "meshpki-softhsm-")
		if err != nil {
			softHSMConfErr = err
			return
		}
		softHSMTokens = filepath.Join(dir, "tokens")
		if err := os.Mkdir(softHSMTokens, 0o700); err != nil {
			softHSMConfErr = err
			return
		}
		softHSMConf = filepath.Join(dir, "softhsm2.conf")
		softHSMConfErr = os.WriteFile(softHSMConf, []byte("directories.tokendir = "+softHSMTokens+"\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n"), 0o600)
	})
	return softHSMConf, softHSMTokens, softHSMConfErr
}

// URI is the key URI of object on the token, with the PIN from PINFile.
func (s *SoftHSMToken) URI(object string) string {
	return "pkcs11:token=" + s.Label + ";object=" + object + "?module-path=" + SoftHSMModule + "&pin-source=file:" + s.PINFile
}

// initToken initialises a token on SoftHSM's free slot from this process,
// through PKCS#11 itself (C_InitToken, then C_InitPIN as the security
// officer). SoftHSM keeps its token list in the process across a
// finalize, so a token that softhsm2-util made from another process after
// the first initialize would not be seen.
func initToken(label, pin string) error {
	const soPIN = "5820-so-test"
	p := pkcs11.New(SoftHSMModule)
	if p == nil {
		return errors.New("cannot load " + SoftHSMModule)
	}
	defer p.Destroy()
	err := p.Initialize()
	switch {
	case err == nil:
		defer p.Finalize()
	case errors.Is(err, pkcs11.Error(pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED)):
	default:
		return err
	}
	slots, err := p.GetSlotList(false)
	if err != nil {
		return err
	}
	for _, slot := range slots {
		info, err := p.GetTokenInfo(slot)
		if err != nil || info.Flags&pkcs11.CKF_TOKEN_INITIALIZED != 0 {
			continue
		}
		if err := p.InitToken(slot, soPIN, label); err != nil {
			return err
		}
		// InitToken moves the token to a slot of its own; find it by label.
		slots, err := p.GetSlotList(true)
		if err != nil {
			return err
		}
		for _, s := range slots {
			if info, err := p.GetTokenInfo(s); err == nil && info.Label == label {
				session, err := p.OpenSession(s, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
				if err != nil {
					return err
				}
				defer p.CloseSession(session)
				if err := p.Login(session, pkcs11.CKU_SO, soPIN); err != nil {
					return err
				}
				defer p.Logout(session)
				return p.InitPIN(session, pin)
			}
		}
		return errors.New("the initialised token is not listed")
	}
	return errors.New("SoftHSM has no free slot")
}

// SoftHSMFinalizeEnv, set, lets the module be finalized when its last user
// closes: for a test that runs alone in a child process to see a token
// leave and come back.
const SoftHSMFinalizeEnv = "MESHPKI_TEST_SOFTHSM_FINALIZE"

var (
	keeperOnce sync.Once
	keeperErr  error
	keeper     atomic.Pointer[crypto11.Context] // never closed
)

// keepInitialized holds a session on a token of its own for the rest of
// the process, so the module is never finalized between tests: SoftHSM
// 2.6, initialised again after C_Finalize, fails with CKR_GENERAL_ERROR
// within a few cycles. The token is the keeper's alone, so every test's
// token starts logged out and checks its PIN.
func keepInitialized() error {
	keeperOnce.Do(func() {
		const label, pin = "meshpki-keeper", "4417-meshpki-keeper"
		if keeperErr = initToken(label, pin); keeperErr != nil {
			return
		}
		c, err := crypto11.Configure(&crypto11.Config{Path: SoftHSMModule, TokenLabel: label, Pin: pin})
		keeper.Store(c)
		keeperErr = err
	})
	return keeperErr
}
