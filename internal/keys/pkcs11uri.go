package keys

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
)

// pkcs11URI is what meshpki takes from an RFC 7512 PKCS#11 URI:
//
//	pkcs11:token=meshpki;object=int-2026?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/meshpki/pin
//
// The token is chosen by token (label), serial or slot-id; the key pair by
// object (CKA_LABEL) and/or id (CKA_ID, percent-encoded bytes). The module
// is module-path. The PIN comes from pin-source (a file, "file:PATH" or a
// plain path, whose first line is the PIN) or, when there is none, from
// MESHPKI_PKCS11_PIN; pin-value is refused, because the URI is recorded in
// ca.json and shown in the audit log.
type pkcs11URI struct {
	Token, Serial string
	Slot          *int
	Object        string
	ID            []byte
	ModulePath    string
	PINSource     string
}

// pkcs11PINEnv holds the token's PIN when the URI has no pin-source.
const pkcs11PINEnv = "MESHPKI_PKCS11_PIN"

func parsePKCS11URI(uri string) (pkcs11URI, error) {
	var u pkcs11URI
	rest, ok := strings.CutPrefix(uri, "pkcs11:")
	if !ok {
		return u, fmt.Errorf("keys: %q is not a pkcs11: URI", clip(uri))
	}
	path, query, _ := strings.Cut(rest, "?")
	attr := func(part string) (string, string, error) {
		name, raw, ok := strings.Cut(part, "=")
		if !ok || name == "" {
			return "", "", fmt.Errorf("keys: PKCS#11 URI attribute %q is not name=value", clip(part))
		}
		v, err := url.PathUnescape(raw)
		if err != nil {
			return "", "", fmt.Errorf("keys: PKCS#11 URI attribute %s: %w", name, err)
		}
		return name, v, nil
	}
	seen := map[string]bool{}
	for _, part := range strings.Split(path, ";") {
		if part == "" {
			continue
		}
		name, v, err := attr(part)
		if err != nil {
			return u, err
		}
		if seen[name] {
			return u, fmt.Errorf("keys: PKCS#11 URI repeats %s", name)
		}
		seen[name] = true
		switch name {
		case "token":
			u.Token = v
		case "serial":
			u.Serial = v
		case "slot-id":
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return u, fmt.Errorf("keys: PKCS#11 URI slot-id %q is not a slot number", clip(v))
			}
			u.Slot = &n
		case "object":
			u.Object = v
		case "id":
			u.ID = []byte(v)
		case "type":
			if v != "private" {
				return u, fmt.Errorf("keys: PKCS#11 URI type=%s: a CA key is type=private", clip(v))
			}
		case "manufacturer", "model", "library-description", "library-manufacturer", "library-version", "slot-description", "slot-manufacturer":
			// Describe the token or module further; the three above choose it.
		default:
			return u, fmt.Errorf("keys: PKCS#11 URI attribute %q is not one meshpki knows", clip(name))
		}
	}
	for _, part := range strings.Split(query, "&") {
		if part == "" {
			continue
		}
		name, v, err := attr(part)
		if err != nil {
			return u, err
		}
		switch name {
		case "module-path":
			u.ModulePath = v
		case "pin-source":
			u.PINSource = strings.TrimPrefix(v, "file:")
		case "pin-value":
			return u, errors.New("keys: a PKCS#11 URI with pin-value would put the PIN in ca.json: put it in a file (0600) and name it with pin-source=file:PATH, or set " + pkcs11PINEnv)
		case "module-name":
			return u, errors.New("keys: give the PKCS#11 module by module-path (its file), not module-name")
		default:
			return u, fmt.Errorf("keys: PKCS#11 URI query attribute %q is not one meshpki knows", clip(name))
		}
	}
	if u.ModulePath == "" {
		return u, errors.New("keys: the PKCS#11 URI needs module-path=/path/to/the/module.so")
	}
	choices := 0
	for _, set := range []bool{u.Token != "", u.Serial != "", u.Slot != nil} {
		if set {
			choices++
		}
	}
	if choices != 1 {
		return u, errors.New("keys: the PKCS#11 URI must choose the token by exactly one of token=, serial= or slot-id=")
	}
	if u.Object == "" && len(u.ID) == 0 {
		return u, errors.New("keys: the PKCS#11 URI must name the key by object= (its label) or id=")
	}
	return u, nil
}

// pin reads the token's PIN: the first line of the pin-source file, or
// MESHPKI_PKCS11_PIN. A pin-source readable by group or others is refused.
func (u pkcs11URI) pin() (string, error) {
	if u.PINSource == "" {
		if pin := os.Getenv(pkcs11PINEnv); pin != "" {
			return pin, nil
		}
		return "", fmt.Errorf("keys: no PIN for the PKCS#11 token: add pin-source=file:PATH to the URI or set %s", pkcs11PINEnv)
	}
	st, err := os.Stat(u.PINSource)
	if err != nil {
		return "", fmt.Errorf("keys: PKCS#11 pin-source: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("keys: PKCS#11 pin-source %s is readable by others (mode %v): chmod 600 it", u.PINSource, st.Mode().Perm())
	}
	data, err := os.ReadFile(u.PINSource)
	if err != nil {
		return "", fmt.Errorf("keys: PKCS#11 pin-source: %w", err)
	}
	pin, _, _ := strings.Cut(string(data), "\n")
	pin = strings.TrimSuffix(pin, "\r")
	if pin == "" {
		return "", fmt.Errorf("keys: PKCS#11 pin-source %s is empty", u.PINSource)
	}
	return pin, nil
}

// tokenKey identifies one token of one module, which one session pool
// serves.
func (u pkcs11URI) tokenKey() string {
	slot := ""
	if u.Slot != nil {
		slot = strconv.Itoa(*u.Slot)
	}
	return strings.Join([]string{u.ModulePath, u.Token, u.Serial, slot, u.PINSource}, "\x00")
}
