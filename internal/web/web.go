// Package web owns the dashboard the server serves at /ui/: sign-in by a
// one-time URL an admin mints, sessions held in the store (so any replica
// serves them), CSRF tokens on every change, a Content-Security-Policy
// that allows no inline script, and the pages, rendered on the server
// from the same services the JSON API calls (the inventory, revocation).
// Assets are embedded: nothing is fetched from a network at run time.
package web

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/meshpki/meshpki/internal/audit"
	"github.com/meshpki/meshpki/internal/ca"
	"github.com/meshpki/meshpki/internal/monitor"
	"github.com/meshpki/meshpki/internal/notify"
	"github.com/meshpki/meshpki/internal/provisioner"
	"github.com/meshpki/meshpki/internal/revocation"
	"github.com/meshpki/meshpki/internal/store"
)

// Defaults of sign-in and sessions.
const (
	DefaultLoginTTL   = 5 * time.Minute
	DefaultSessionTTL = 8 * time.Hour
	cookieName        = "meshpki_ui"
	// csp allows the page's own scripts, styles and images and nothing
	// else: no inline script, no framing, forms only to the dashboard.
	csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
		"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

//go:embed assets templates
var files embed.FS

// Config configures the dashboard.
type Config struct {
	Store      store.Store
	Inventory  *monitor.Inventory
	Revocation *revocation.Service
	// Hierarchy, if set, gives certificate pages their intermediate and
	// root.
	Hierarchy *ca.Hierarchy
	// Alerts sends channels' test notifications; Provisioners answers the
	// policy dry-run (either may be nil: those parts say so).
	Alerts       *notify.Service
	Provisioners *provisioner.Service
	// CheckpointKey verifies the audit log's signed checkpoints on the
	// audit page (nil: the chain alone).
	CheckpointKey crypto.PublicKey
	// ActiveAdmin, if set, is asked at every request whether the admin a
	// session belongs to (its admin URI) may still administer: a retired
	// operator's session ends at once.
	ActiveAdmin func(ctx context.Context, adminURI string) error
	// BaseURL is the server's public URL; one-time sign-in URLs start
	// with it.
	BaseURL    string
	LoginTTL   time.Duration // default DefaultLoginTTL
	SessionTTL time.Duration // default DefaultSessionTTL
	Clock      func() time.Time
	Logger     *slog.Logger
}

// Server serves the dashboard.
type Server struct {
	cfg   Config
	pages map[string]*template.Template
	mux   *http.ServeMux
	// overview holds the overview's counts (overviewNow); recounting is
	// set while a recount runs.
	overview   atomic.Pointer[overviewCounts]
	recounting atomic.Bool
}

// New returns the dashboard.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil || cfg.Inventory == nil || cfg.Revocation == nil {
		return nil, errors.New("web: Config needs Store, Inventory and Revocation")
	}
	if cfg.LoginTTL <= 0 {
		cfg.LoginTTL = DefaultLoginTTL
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = DefaultSessionTTL
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{cfg: cfg, pages: map[string]*template.Template{}}
	for _, page := range []string{"login", "overview", "inventory", "certificate", "alerts", "provisioners", "spiffe", "audit", "scanned", "message"} {
		t, err := template.New("layout.html").Funcs(funcs(cfg.Clock)).ParseFS(files, "templates/layout.html", "templates/"+page+".html")
		if err != nil {
			return nil, fmt.Errorf("web: template %s: %w", page, err)
		}
		s.pages[page] = t
	}
	assets, err := fs.Sub(files, "assets")
	if err != nil {
		return nil, err
	}
	s.mux = http.NewServeMux()
	s.mux.Handle("GET /ui/assets/", http.StripPrefix("/ui/assets/", http.FileServerFS(assets)))
	s.mux.HandleFunc("GET /ui/login", s.loginPage)
	s.mux.HandleFunc("POST /ui/login", s.login)
	s.mux.HandleFunc("POST /ui/logout", s.signedIn(s.logout))
	s.mux.HandleFunc("GET /ui/{$}", s.signedIn(s.overviewPage))
	s.mux.HandleFunc("GET /ui/inventory", s.signedIn(s.inventoryPage))
	s.mux.HandleFunc("GET /ui/inventory/{fingerprint}", s.signedIn(s.scannedPage))
	s.mux.HandleFunc("GET /ui/certificates/{serial}", s.signedIn(s.certificatePage))
	s.mux.HandleFunc("POST /ui/certificates/{serial}/revoke", s.signedIn(s.revoke))
	s.mux.HandleFunc("GET /ui/alerts", s.signedIn(s.alertsPage))
	s.mux.HandleFunc("POST /ui/alerts/channels/{name}/test", s.signedIn(s.testChannel))
	s.mux.HandleFunc("GET /ui/provisioners", s.signedIn(s.provisionersPage))
	s.mux.HandleFunc("GET /ui/spiffe", s.signedIn(s.spiffePage))
	s.mux.HandleFunc("GET /ui/audit", s.signedIn(s.auditPage))
	s.mux.HandleFunc("/ui/", func(w http.ResponseWriter, r *http.Request) {
		s.message(w, http.StatusNotFound, "Not found", "There is no page "+ca.Clip(r.URL.Path)+".")
	})
	return s, nil
}

// ServeHTTP serves /ui/… with the security headers every answer carries.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cache-Control", "no-store")
	s.mux.ServeHTTP(w, r)
}

// hashHex is the hex SHA-256 of a secret, as the store keeps it.
func hashHex(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand does not fail
	return base64.RawURLEncoding.EncodeToString(b)
}

// MintLogin records a one-time sign-in for admin (an actor such as
// "admin:spiffe://…") and returns its URL and expiry. The token is in the
// URL only; the store keeps its hash.
func (s *Server) MintLogin(ctx context.Context, admin string) (string, time.Time, error) {
	token := randomToken()
	expires := s.cfg.Clock().Add(s.cfg.LoginTTL)
	err := s.cfg.Store.CreateUILogin(ctx, store.UILogin{TokenHash: hashHex(token), Admin: admin, ExpiresAt: expires},
		audit.Event{Time: s.cfg.Clock(), Type: audit.TypeUILoginCreated, Actor: admin, Subject: admin, Outcome: "success",
			Detail: map[string]string{"expires": expires.UTC().Format(time.RFC3339)}})
	if err != nil {
		return "", time.Time{}, err
	}
	return strings.TrimRight(s.cfg.BaseURL, "/") + "/ui/login?token=" + token, expires, nil
}

// session is the signed-in admin of a request.
type session struct {
	store.UISession
}

type signedInHandler func(w http.ResponseWriter, r *http.Request, sess session)

// signedIn admits requests with a live session, and on POST with its CSRF
// token (compared in constant time); others get the sign-in page's
// message with 401, or 403 for a bad CSRF token.
func (s *Server) signedIn(h signedInHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie(cookieName)
		if err != nil || c.Value == "" || len(c.Value) > 100 {
			s.message(w, http.StatusUnauthorized, "Sign in", "Sign in with the one-time URL that `meshpki ui login` prints.")
			return
		}
		st, err := s.cfg.Store.GetUISession(r.Context(), hashHex(c.Value), s.cfg.Clock())
		if err != nil {
			if !errors.Is(err, store.ErrNotFound) {
				s.cfg.Logger.Error("web: read session", "error", err)
			}
			s.message(w, http.StatusUnauthorized, "Sign in", "Your session has ended. Sign in again with a new one-time URL from `meshpki ui login`.")
			return
		}
		if s.cfg.ActiveAdmin != nil {
			if err := s.cfg.ActiveAdmin(r.Context(), strings.TrimPrefix(st.Admin, "admin:")); err != nil {
				s.message(w, http.StatusForbidden, "Refused", "The operator this session belongs to may no longer administer the CA.")
				return
			}
		}
		if r.Method == http.MethodPost {
			if err := r.ParseForm(); err != nil {
				s.message(w, http.StatusBadRequest, "Bad request", "The form could not be read.")
				return
			}
			if subtle.ConstantTimeCompare([]byte(r.PostFormValue("csrf")), []byte(st.CSRF)) != 1 {
				s.message(w, http.StatusForbidden, "Refused", "The form's security token is missing or out of date. Reload the page and try again.")
				return
			}
		}
		h(w, r, session{st})
	}
}

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	token := r.URL.Query().Get("token")
	if token == "" || len(token) > 100 {
		s.message(w, http.StatusUnauthorized, "Sign in", "Sign in with the one-time URL that `meshpki ui login` prints.")
		return
	}
	// A page with a button rather than a sign-in on GET: link previews
	// and prefetches do not use the token up, and the session cookie
	// (SameSite=Strict) is set by a same-site request.
	s.render(w, http.StatusOK, "login", map[string]any{"Token": token})
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		s.message(w, http.StatusBadRequest, "Bad request", "The form could not be read.")
		return
	}
	token := r.PostFormValue("token")
	if token == "" || len(token) > 100 {
		s.message(w, http.StatusUnauthorized, "Sign in", "This sign-in URL is not valid.")
		return
	}
	now := s.cfg.Clock()
	id := randomToken()
	sess, err := s.cfg.Store.RedeemUILogin(r.Context(), hashHex(token),
		store.UISession{IDHash: hashHex(id), CSRF: randomToken(), CreatedAt: now, ExpiresAt: now.Add(s.cfg.SessionTTL)}, now,
		func(admin string) audit.Event {
			return audit.Event{Time: now, Type: audit.TypeUISignedIn, Actor: admin, Subject: admin, Outcome: "success",
				Detail: map[string]string{"client": ca.Clip(r.RemoteAddr)}}
		})
	if errors.Is(err, store.ErrNotFound) {
		s.message(w, http.StatusUnauthorized, "Sign in", "This sign-in URL was used already or has expired. Ask for a new one with `meshpki ui login`.")
		return
	}
	if err != nil {
		s.cfg.Logger.Error("web: sign in", "error", err)
		s.message(w, http.StatusInternalServerError, "Error", "Signing in failed; the server log says why.")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: id, Path: "/ui/", Expires: sess.ExpiresAt, MaxAge: int(s.cfg.SessionTTL.Seconds()),
		Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/ui/", http.StatusSeeOther)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request, sess session) {
	err := s.cfg.Store.DeleteUISession(r.Context(), sess.IDHash, audit.Event{Time: s.cfg.Clock(), Type: audit.TypeUISignedOut,
		Actor: sess.Admin, Subject: sess.Admin, Outcome: "success"})
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		s.cfg.Logger.Error("web: sign out", "error", err)
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: "/ui/", MaxAge: -1, Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	s.message(w, http.StatusOK, "Signed out", "You are signed out.")
}

// render writes a page; data reaches the template as .Data, with the
// session (if any) as .Session.
func (s *Server) render(w http.ResponseWriter, status int, page string, data any, sess ...session) {
	view := map[string]any{"Data": data}
	if len(sess) > 0 {
		view["Session"] = sess[0]
	}
	var buf strings.Builder
	if err := s.pages[page].Execute(&buf, view); err != nil {
		s.cfg.Logger.Error("web: render", "page", page, "error", err)
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(buf.String()))
}

// readFailed logs why a page could not read what it shows and says so,
// with a 500: the cause stays in the log.
func (s *Server) readFailed(w http.ResponseWriter, page, what string, err error) {
	s.cfg.Logger.Error("web: "+page, "error", err)
	s.message(w, http.StatusInternalServerError, "Error", what+" could not be read; the server log says why.")
}

func (s *Server) message(w http.ResponseWriter, status int, title, text string) {
	s.render(w, status, "message", map[string]any{"Title": title, "Text": text})
}
