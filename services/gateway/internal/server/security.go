package server

import (
	"mime"
	"net/http"
	"strings"
)

// DocumentPolicy is the Content-Security-Policy of a page, the chassis' (security_headers.py):
// the page's own origin only, no inline script or style, no plugins, no <base>, never framed.
const DocumentPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; " +
	"img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; " +
	"frame-ancestors 'none'"

// Media types a browser renders as a document that can run script.
var documentTypes = map[string]bool{"text/html": true, "application/xhtml+xml": true, "image/svg+xml": true}

// securityHeaders adds, as each response starts, X-Content-Type-Options: nosniff and, on
// documents, a Content-Security-Policy and X-Frame-Options (for browsers older than
// frame-ancestors) unless the response set its own.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(&securedWriter{ResponseWriter: w}, r)
	})
}

type securedWriter struct {
	http.ResponseWriter
	started bool
}

func (s *securedWriter) WriteHeader(status int) {
	if !s.started && status >= 200 {
		s.started = true
		header := s.Header()
		header.Set("X-Content-Type-Options", "nosniff")
		mediaType, _, _ := mime.ParseMediaType(header.Get("Content-Type"))
		if documentTypes[strings.ToLower(mediaType)] {
			if header.Get("Content-Security-Policy") == "" {
				header.Set("Content-Security-Policy", DocumentPolicy)
			}
			if header.Get("X-Frame-Options") == "" {
				header.Set("X-Frame-Options", "DENY")
			}
		}
	}
	s.ResponseWriter.WriteHeader(status)
}

func (s *securedWriter) Write(data []byte) (int, error) {
	if !s.started {
		if s.Header().Get("Content-Type") == "" {
			// What net/http would sniff, decided here so the policy sees it.
			s.Header().Set("Content-Type", http.DetectContentType(data))
		}
		s.WriteHeader(http.StatusOK)
	}
	return s.ResponseWriter.Write(data)
}

// Unwrap lets http.ResponseController reach the connection (flushes, deadlines).
func (s *securedWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }
