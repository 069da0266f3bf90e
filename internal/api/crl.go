package api

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
)

// handleCRLs routes the CRLs and the intermediates' DER certificates
// (what AIA caIssuers names) when a CRL publisher is configured.
func (s *Server) handleCRLs(handle func(string, endpoint)) {
	if s.crls == nil {
		return
	}
	crl := endpoint{"GET": s.handleCRL}
	handle("/crl", crl)
	handle("/crl.pem", crl)
	handle("/crl/", crl)
	handle("/intermediates/", endpoint{"GET": s.handleIssuerCertificate})
}

// crlMaxAge is how long shared caches may keep a CRL. Relying parties that
// poll revalidate with the ETag or Last-Modified and get 304 until the
// CRL changes.
const crlMaxAge = "public, max-age=60, no-transform"

// handleCRL serves GET /crl[.pem] and /crl/{issuer}[/{gen}[/{shard}]][.pem]:
// DER (application/pkix-crl, RFC 5280) or PEM, with an ETag of the CRL
// number, Last-Modified of thisUpdate, and conditional requests.
func (s *Server) handleCRL(w http.ResponseWriter, r *http.Request) error {
	c, asPEM, err := s.crls.Find(strings.TrimPrefix(r.URL.Path, "/crl"))
	if err != nil {
		return newError(http.StatusNotFound, "not_found", err.Error())
	}
	body, ctype, form := c.DER, "application/pkix-crl", "der"
	if asPEM {
		body, ctype, form = c.PEM(), "application/x-pem-file", "pem"
	}
	h := w.Header()
	h.Set("Content-Type", ctype)
	h.Set("ETag", fmt.Sprintf(`"%x-%s"`, c.Number, form))
	h.Set("Cache-Control", crlMaxAge)
	http.ServeContent(w, r, "", c.ThisUpdate, bytes.NewReader(body))
	return nil
}

// handleIssuerCertificate serves GET /intermediates/{issuer}/{gen}.der, one
// generation's certificate in DER (application/pkix-cert), as AIA
// caIssuers expects (RFC 5280, section 4.2.2.1).
func (s *Server) handleIssuerCertificate(w http.ResponseWriter, r *http.Request) error {
	der, err := s.crls.IssuerCertificate(strings.TrimPrefix(r.URL.Path, "/intermediates/"))
	if err != nil {
		return newError(http.StatusNotFound, "not_found", err.Error())
	}
	w.Header().Set("Content-Type", "application/pkix-cert")
	w.Header().Set("Cache-Control", "public, max-age=86400")
	_, err = w.Write(der)
	return err
}
