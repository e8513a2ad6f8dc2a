package api_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/parleychat/parley/api"
	"github.com/parleychat/parley/api/auth"
	"github.com/parleychat/parley/internal/pipelinetest"
	"github.com/parleychat/parley/internal/wsproto"
)

// contractREST is the REST handler with every route, over no database:
// enough to list routes and serve the documents.
func contractREST(t *testing.T) *api.REST {
	t.Helper()
	verifier, err := auth.NewVerifier(pipelinetest.Secret)
	if err != nil {
		t.Fatal(err)
	}
	return api.NewREST(nil, verifier, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// TestEveryRouteIsDocumented walks the route table: each route must be an
// operation of the OpenAPI document, and each operation a route. A route
// added without documenting it fails here.
func TestEveryRouteIsDocumented(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(api.OpenAPI(), &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	var documented []string
	for path, item := range doc.Paths {
		for method := range item {
			switch method {
			case "parameters", "summary", "description", "servers":
				continue
			}
			documented = append(documented, strings.ToUpper(method)+" "+path)
		}
	}
	routes := contractREST(t).Routes()
	if len(routes) == 0 {
		t.Fatal("the REST handler lists no routes")
	}
	for _, r := range routes {
		if !slices.Contains(documented, r) {
			t.Errorf("route %q is not in api/openapi.json: add its path and method there", r)
		}
	}
	for _, d := range documented {
		if !slices.Contains(routes, d) {
			t.Errorf("api/openapi.json documents %q, which no route serves", d)
		}
	}
}

// TestContractsAreServed: both documents are served without a token, as
// JSON, byte for byte what the binary embeds.
func TestContractsAreServed(t *testing.T) {
	srv := httptest.NewServer(contractREST(t))
	t.Cleanup(srv.Close)
	for path, want := range map[string][]byte{"/openapi.json": api.OpenAPI(), "/asyncapi.json": wsproto.AsyncAPI()} {
		t.Run(path, func(t *testing.T) {
			resp, err := http.Get(srv.URL + path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("GET %s: %d %q", path, resp.StatusCode, resp.Header.Get("Content-Type"))
			}
			if !bytes.Equal(body, want) || !json.Valid(body) {
				t.Fatalf("GET %s served %d bytes, not the embedded document (%d bytes)", path, len(body), len(want))
			}
		})
	}
}
