package s3local

import (
	"net/http"
	"slices"
	"strings"
)

// CORS for browsers only: native apps ignore it. A web client uses the
// presigned URLs the API hands out, so it needs GET, HEAD and PUT with a
// Content-Type (and Range for seeking in video), from the origins allowed.
var (
	corsMethods = []string{http.MethodGet, http.MethodHead, http.MethodPut}
	corsHeaders = []string{"content-type", "range"}
)

const (
	corsAllowMethods  = "GET, HEAD, PUT"
	corsExposeHeaders = "ETag, Content-Length, Content-Range, Accept-Ranges"
	corsMaxAge        = "600"
)

// cors answers preflight requests and sets the CORS headers of every other
// response, replacing the permissive ones gofakes3 adds on its own.
type cors struct {
	origins []string
	next    http.Handler
}

func (c *cors) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	origin := r.Header.Get("Origin")
	w.Header().Add("Vary", "Origin")
	if r.Method == http.MethodOptions && origin != "" && r.Header.Get("Access-Control-Request-Method") != "" {
		c.preflight(w, r, origin)
		return
	}
	allow := origin != "" && slices.Contains(c.origins, origin) && slices.Contains(corsMethods, r.Method)
	cw := &corsWriter{ResponseWriter: w, origin: origin, allow: allow}
	c.next.ServeHTTP(cw, r)
	if !cw.wroteHeader {
		cw.WriteHeader(http.StatusOK) // what net/http would send, with our headers
	}
}

func (c *cors) preflight(w http.ResponseWriter, r *http.Request, origin string) {
	w.Header().Add("Vary", "Access-Control-Request-Method")
	w.Header().Add("Vary", "Access-Control-Request-Headers")
	method := r.Header.Get("Access-Control-Request-Method")
	var headers []string
	for h := range strings.SplitSeq(r.Header.Get("Access-Control-Request-Headers"), ",") {
		if h = strings.ToLower(strings.TrimSpace(h)); h != "" {
			headers = append(headers, h)
		}
	}
	forbidden := !slices.Contains(c.origins, origin) || !slices.Contains(corsMethods, method)
	for _, h := range headers {
		forbidden = forbidden || !slices.Contains(corsHeaders, h)
	}
	if forbidden {
		writeError(w, refuse(http.StatusForbidden, "AccessForbidden",
			"CORSResponse: This CORS request is not allowed: origin %q, method %q, headers %q (allowed: origins %q, methods %s, headers %s)",
			origin, method, headers, c.origins, corsAllowMethods, strings.Join(corsHeaders, ", ")))
		return
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	h.Set("Access-Control-Allow-Methods", corsAllowMethods)
	if len(headers) > 0 {
		h.Set("Access-Control-Allow-Headers", strings.Join(headers, ", "))
	}
	h.Set("Access-Control-Max-Age", corsMaxAge)
	w.WriteHeader(http.StatusOK)
}

// corsWriter sets the response's CORS headers when it is written.
type corsWriter struct {
	http.ResponseWriter
	origin      string
	allow       bool
	wroteHeader bool
}

func (w *corsWriter) WriteHeader(status int) {
	if !w.wroteHeader {
		w.wroteHeader = true
		h := w.Header()
		for k := range h {
			if strings.HasPrefix(k, "Access-Control-") {
				delete(h, k)
			}
		}
		if w.allow {
			h.Set("Access-Control-Allow-Origin", w.origin)
			h.Set("Access-Control-Expose-Headers", corsExposeHeaders)
		}
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *corsWriter) Write(b []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (w *corsWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
