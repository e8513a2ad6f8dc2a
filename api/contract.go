package api

import (
	_ "embed"
	"net/http"

	"github.com/parleychat/parley/internal/wsproto"
)

// openAPI is the OpenAPI 3.1 description of every route NewREST
// registers. To add an endpoint, add its path (or method) under "paths",
// its shapes under components.schemas, and its error statuses from
// components.responses; the contract tests fail until route and document
// agree, and every test request is checked against it.
//
//go:embed openapi.json
var openAPI []byte

// OpenAPI returns the OpenAPI document as served at GET /openapi.json.
func OpenAPI() []byte { return openAPI }

// registerContracts serves the machine-readable contracts, without auth:
// GET /openapi.json (REST) and GET /asyncapi.json (WebSocket frames).
func registerContracts(r *REST) {
	r.Handle("GET /openapi.json", serveDocument(openAPI))
	r.Handle("GET /asyncapi.json", serveDocument(wsproto.AsyncAPI()))
}

func serveDocument(doc []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		// The document changes only with a deploy.
		w.Header().Set("Cache-Control", "public, max-age=300")
		_, _ = w.Write(doc)
	})
}
