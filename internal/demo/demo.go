// Package demo holds the small web client `chat dev` serves at / (plain
// HTML, one script, one style sheet, embedded: no build step, nothing
// fetched from elsewhere) and the development token endpoint it signs in
// with. It is wired only into `chat dev`: no other command serves it.
package demo

import (
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"strings"

	"github.com/parleychat/parley/api"
	"github.com/parleychat/parley/internal/chat"
)

//go:embed static
var static embed.FS

// TokenPath is the development token endpoint: POST {"user_id":N} answers
// {"token":"…","user_id":N}.
const TokenPath = "/dev/token"

// maxTokenBody bounds the token request: {"user_id":N} is a few bytes.
const maxTokenBody = 1 << 10

// Issuer mints a token for a user.
type Issuer func(user int64) (string, error)

// Handler serves the client's files and, when it has an Issuer, the token
// endpoint.
type Handler struct {
	files fs.FS
	issue Issuer
}

// New returns the client. issue is nil unless the server verifies tokens
// with the published development secret: anyone can sign tokens with it
// anyway, so minting one on request gives nobody anything new. With a real
// secret the endpoint is absent and the page asks for a token made with
// `chat token`.
func New(issue Issuer) *Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil { // the embedded tree is fixed at build time
		panic(fmt.Sprintf("demo: embedded files: %v", err))
	}
	return &Handler{files: sub, issue: issue}
}

// Register adds the client's routes to mux: the page at /, its files under
// /demo/, and the token endpoint.
func (h *Handler) Register(mux *http.ServeMux) {
	mux.Handle("GET /{$}", h.page())
	mux.Handle("GET /demo/", h.page())
	mux.HandleFunc("POST "+TokenPath, h.token)
}

func (h *Handler) page() http.Handler {
	files := http.FileServerFS(h.files)
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		// Everything the page loads is its own; user content never becomes
		// markup (the script sets text, not HTML), and this says so again.
		w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' http: https: blob:; connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Cache-Control", "no-cache")
		if req.URL.Path == "/" {
			http.ServeFileFS(w, req, h.files, "index.html")
			return
		}
		r := req.Clone(req.Context())
		r.URL.Path = strings.TrimPrefix(req.URL.Path, "/demo")
		files.ServeHTTP(w, r)
	})
}

type tokenRequest struct {
	UserID *int64 `json:"user_id"`
}

type tokenReply struct {
	Token  string `json:"token"`
	UserID int64  `json:"user_id"`
}

// errorBody is the REST API's error shape, so the page reads one kind.
type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func (h *Handler) token(w http.ResponseWriter, req *http.Request) {
	if h.issue == nil {
		fail(w, http.StatusNotFound, chat.CodeNotFound, "no development token endpoint: this server does not use the development secret; make a token with `chat token --user N` and paste it")
		return
	}
	user, err := decodeToken(http.MaxBytesReader(w, req.Body, maxTokenBody))
	if err != nil {
		fail(w, http.StatusBadRequest, chat.CodeBadRequest, err.Error())
		return
	}
	t, err := h.issue(user)
	if err != nil {
		fail(w, http.StatusInternalServerError, chat.CodeInternal, "could not sign a token")
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	api.WriteJSON(w, http.StatusOK, tokenReply{Token: t, UserID: user})
}

// decodeToken reads {"user_id":N}, N a positive integer, and nothing else.
func decodeToken(r io.Reader) (int64, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var in tokenRequest
	if err := dec.Decode(&in); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return 0, fmt.Errorf("request body over %d bytes", maxTokenBody)
		}
		return 0, fmt.Errorf(`request body must be {"user_id":N}: %w`, err)
	}
	if dec.More() {
		return 0, errors.New("request body has data after the JSON object")
	}
	if in.UserID == nil {
		return 0, errors.New("user_id is required")
	}
	if *in.UserID <= 0 {
		return 0, fmt.Errorf("user_id must be a positive integer, not %d", *in.UserID)
	}
	return *in.UserID, nil
}

func fail(w http.ResponseWriter, status int, code chat.Code, message string) {
	var b errorBody
	b.Error.Code, b.Error.Message = string(code), message
	api.WriteJSON(w, status, b)
}
