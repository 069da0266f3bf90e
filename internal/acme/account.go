package acme

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/mail"
	"strings"

	"github.com/go-jose/go-jose/v4"

	"github.com/meshpki/meshpki/internal/audit"
	"github.com/meshpki/meshpki/internal/store"
)

// accountJSON is the account object (RFC 8555, section 7.1.2).
type accountJSON struct {
	Status                 string          `json:"status"`
	Contact                []string        `json:"contact,omitempty"`
	Orders                 string          `json:"orders"`
	ExternalAccountBinding json.RawMessage `json:"externalAccountBinding,omitempty"`
}

func (s *Server) accountURL(p *provisioner, id string) string { return p.url("account", id) }

func (s *Server) accountView(p *provisioner, a store.ACMEAccount) accountJSON {
	return accountJSON{Status: a.Status, Contact: a.Contact, Orders: p.url("account", a.ID, "orders")}
}

type newAccountPayload struct {
	Contact                []string        `json:"contact"`
	TermsOfServiceAgreed   bool            `json:"termsOfServiceAgreed"`
	OnlyReturnExisting     bool            `json:"onlyReturnExisting"`
	ExternalAccountBinding json.RawMessage `json:"externalAccountBinding"`
}

func (s *Server) handleNewAccount(w http.ResponseWriter, r *http.Request, p *provisioner) error {
	req, err := s.authenticate(r, p, jwkOnly)
	if err != nil {
		return err
	}
	var in newAccountPayload
	if err := decodePayload(req, &in); err != nil {
		return err
	}
	tp, err := thumbprint(req.key)
	if err != nil {
		return problem(http.StatusBadRequest, probBadPublicKey, "cannot compute the key thumbprint: %v", err)
	}
	existing, err := s.st.GetACMEAccountByThumbprint(r.Context(), p.name, tp)
	switch {
	case err == nil:
		// RFC 8555, section 7.3.1: the existing account, 200 and its URL.
		w.Header().Set("Location", s.accountURL(p, existing.ID))
		return writeJSON(w, http.StatusOK, s.accountView(p, existing))
	case !errors.Is(err, store.ErrNotFound):
		return storeProblem(err)
	}
	if in.OnlyReturnExisting {
		return problem(http.StatusBadRequest, probAccountDoesNotExist, "no account exists for this key")
	}
	contact, prob := checkContact(in.Contact)
	if prob != nil {
		return prob
	}
	acct := store.ACMEAccount{
		ID:          store.NewID(),
		Provisioner: p.name,
		Thumbprint:  tp,
		Status:      store.ACMEValid,
		Contact:     contact,
		CreatedAt:   s.now(),
	}
	acct.KeyJWK, err = req.key.MarshalJSON()
	if err != nil {
		return problem(http.StatusBadRequest, probBadPublicKey, "cannot encode the key: %v", err)
	}
	var eabRaw json.RawMessage
	if len(in.ExternalAccountBinding) > 0 && string(in.ExternalAccountBinding) != "null" {
		keyID, err := s.verifyEAB(r, p, req, in.ExternalAccountBinding)
		if err != nil {
			return err
		}
		acct.EABKeyID = keyID
		eabRaw = in.ExternalAccountBinding
	} else if p.requireEAB {
		// 403, not 401: RFC 8555 names no status for this problem, and a
		// 401 would need a WWW-Authenticate challenge ACME does not have.
		return problem(http.StatusForbidden, probExternalAccountRequired, "provisioner %q requires an external account binding: create one with 'meshpki acme eab create --provisioner %s'", p.name, p.name)
	}
	detail := map[string]string{"provisioner": p.name, "thumbprint": tp}
	if acct.EABKeyID != "" {
		detail["eab_key_id"] = acct.EABKeyID
	}
	ev := audit.Event{Time: acct.CreatedAt, Type: "acme.account.created", Actor: "acme:" + acct.ID, Subject: acct.ID, Outcome: "success", Detail: detail}
	if err := s.st.CreateACMEAccount(r.Context(), acct, ev); err != nil {
		switch {
		case errors.Is(err, store.ErrConflict):
			// Created by a concurrent request with the same key.
			existing, gerr := s.st.GetACMEAccountByThumbprint(r.Context(), p.name, tp)
			if gerr != nil {
				return storeProblem(gerr)
			}
			w.Header().Set("Location", s.accountURL(p, existing.ID))
			return writeJSON(w, http.StatusOK, s.accountView(p, existing))
		case errors.Is(err, store.ErrNotFound):
			return unauthorized("the external account binding key %q does not exist", acct.EABKeyID)
		case errors.Is(err, store.ErrStateChanged):
			return unauthorized("the external account binding key %q is already bound to an account", acct.EABKeyID)
		}
		return storeProblem(err)
	}
	s.metrics.accounts.Inc()
	view := s.accountView(p, acct)
	view.ExternalAccountBinding = eabRaw
	w.Header().Set("Location", s.accountURL(p, acct.ID))
	return writeJSON(w, http.StatusCreated, view)
}

// checkContact accepts mailto: URLs with one plain address each.
func checkContact(in []string) ([]string, *Problem) {
	if len(in) > 8 {
		return nil, malformed("at most 8 contacts")
	}
	for _, c := range in {
		addr, ok := strings.CutPrefix(c, "mailto:")
		if !ok {
			return nil, problem(http.StatusBadRequest, "unsupportedContact", "contact %q is not a mailto: URL", c)
		}
		if a, err := mail.ParseAddress(addr); err != nil || a.Address != addr || strings.ContainsAny(addr, ",?") {
			return nil, problem(http.StatusBadRequest, "invalidContact", "contact %q is not a plain email address", c)
		}
	}
	return in, nil
}

type accountUpdatePayload struct {
	Contact *[]string `json:"contact"`
	Status  string    `json:"status"`
}

// handleAccount answers POST-as-GET with the account, and updates the
// contact or deactivates it (RFC 8555, sections 7.3.2 and 7.3.6).
func (s *Server) handleAccount(w http.ResponseWriter, r *http.Request, p *provisioner) error {
	req, err := s.authenticate(r, p, kidLoose)
	if err != nil {
		return err
	}
	acct := *req.account
	if acct.ID != r.PathValue("id") {
		return unauthorized("the request is signed by account %s, not %s", acct.ID, r.PathValue("id"))
	}
	if acct.Status != store.ACMEValid {
		return unauthorized("account %s is %s", acct.ID, acct.Status)
	}
	if !req.postAsGet {
		var in accountUpdatePayload
		if err := decodePayload(req, &in); err != nil {
			return err
		}
		// RFC 8555, section 7.3.2: the server MUST ignore a status other
		// than "deactivated" (section 7.3.6); acmez, for one, sends "valid".
		changed := false
		if in.Status == store.ACMEDeactivated {
			acct.Status, changed = store.ACMEDeactivated, true
		}
		if in.Contact != nil {
			c, prob := checkContact(*in.Contact)
			if prob != nil {
				return prob
			}
			acct.Contact, changed = c, true
		}
		if changed {
			typ := "acme.account.updated"
			if acct.Status == store.ACMEDeactivated {
				typ = "acme.account.deactivated"
			}
			ev := audit.Event{Time: s.now(), Type: typ, Actor: "acme:" + acct.ID, Subject: acct.ID, Outcome: "success", Detail: map[string]string{"provisioner": p.name}}
			if err := s.st.UpdateACMEAccount(r.Context(), acct, ev); err != nil {
				return storeProblem(err)
			}
		}
	}
	return writeJSON(w, http.StatusOK, s.accountView(p, acct))
}

// ordersPage is how many order URLs one page of an account's orders lists.
const ordersPage = 100

func (s *Server) handleAccountOrders(w http.ResponseWriter, r *http.Request, p *provisioner) error {
	req, err := s.authenticate(r, p, kidOnly)
	if err != nil {
		return err
	}
	if req.account.ID != r.PathValue("id") {
		return unauthorized("the request is signed by account %s, not %s", req.account.ID, r.PathValue("id"))
	}
	after := r.URL.Query().Get("cursor")
	ids, err := s.st.ListACMEOrders(r.Context(), req.account.ID, after, ordersPage+1)
	if err != nil {
		return storeProblem(err)
	}
	if len(ids) > ordersPage {
		ids = ids[:ordersPage]
		w.Header().Add("Link", `<`+p.url("account", req.account.ID, "orders")+"?cursor="+ids[len(ids)-1]+`>;rel="next"`)
	}
	urls := make([]string, len(ids))
	for i, id := range ids {
		urls[i] = p.url("order", id)
	}
	return writeJSON(w, http.StatusOK, map[string][]string{"orders": urls})
}

type keyChangePayload struct {
	Account string          `json:"account"`
	OldKey  json.RawMessage `json:"oldKey"`
}

// handleKeyChange rolls an account over to a new key (RFC 8555, section
// 7.3.5): the outer JWS is signed by the account's key, the inner one by the
// new key and names the account and the old key.
func (s *Server) handleKeyChange(w http.ResponseWriter, r *http.Request, p *provisioner) error {
	req, err := s.authenticate(r, p, kidOnly)
	if err != nil {
		return err
	}
	if req.postAsGet {
		return malformed("key change needs an inner JWS as payload")
	}
	inner, prob := parseJWS(req.payload)
	if prob != nil {
		prob.Detail = "inner JWS: " + prob.Detail
		return prob
	}
	if inner.jwk == nil {
		return malformed("inner JWS: the new key must be given as jwk")
	}
	if inner.header.Nonce != "" {
		return malformed("inner JWS: must not carry a nonce")
	}
	if inner.header.URL != req.header.URL {
		return malformed("inner JWS: url %q differs from the outer url %q", inner.header.URL, req.header.URL)
	}
	if prob := inner.verify(inner.jwk); prob != nil {
		prob.Detail = "inner JWS: " + prob.Detail
		return prob
	}
	var in keyChangePayload
	if err := json.Unmarshal(inner.payload, &in); err != nil {
		return malformed("inner JWS: payload is not a key change object: %v", err)
	}
	acct := *req.account
	if in.Account != s.accountURL(p, acct.ID) {
		return unauthorized("inner JWS: account %q is not the account that signed the outer JWS", in.Account)
	}
	var old jose.JSONWebKey
	if err := old.UnmarshalJSON(in.OldKey); err != nil {
		return malformed("inner JWS: oldKey is not a key: %v", err)
	}
	oldTP, err := thumbprint(&old)
	if err != nil || oldTP != acct.Thumbprint {
		return unauthorized("inner JWS: oldKey is not the account's current key")
	}
	newTP, err := thumbprint(inner.jwk)
	if err != nil {
		return problem(http.StatusBadRequest, probBadPublicKey, "cannot compute the new key's thumbprint: %v", err)
	}
	if other, err := s.st.GetACMEAccountByThumbprint(r.Context(), p.name, newTP); err == nil {
		prob := problem(http.StatusConflict, probConflict, "the new key already belongs to an account")
		prob.location = s.accountURL(p, other.ID)
		return prob
	}
	acct.KeyJWK, err = inner.jwk.MarshalJSON()
	if err != nil {
		return problem(http.StatusBadRequest, probBadPublicKey, "cannot encode the key: %v", err)
	}
	acct.Thumbprint = newTP
	ev := audit.Event{Time: s.now(), Type: "acme.account.key_changed", Actor: "acme:" + acct.ID, Subject: acct.ID, Outcome: "success",
		Detail: map[string]string{"provisioner": p.name, "old_thumbprint": oldTP, "new_thumbprint": newTP}}
	if err := s.st.UpdateACMEAccount(r.Context(), acct, ev); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return problem(http.StatusConflict, probConflict, "the new key already belongs to an account")
		}
		return storeProblem(err)
	}
	return writeJSON(w, http.StatusOK, s.accountView(p, acct))
}

// challengeToken is 128 random bits, base64url (RFC 8555, section 8.1,
// asks for at least 128 bits of entropy).
func challengeToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}
