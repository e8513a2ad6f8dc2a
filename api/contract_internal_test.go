package api

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/parleychat/parley/internal/chat"
)

// openAPIDoc is the part of the document these tests read.
type openAPIDoc struct {
	Paths      map[string]map[string]json.RawMessage `json:"paths"`
	Components struct {
		Responses map[string]struct {
			Description string `json:"description"`
			Content     map[string]struct {
				Schema struct {
					Ref string `json:"$ref"`
				} `json:"schema"`
			} `json:"content"`
		} `json:"responses"`
		Schemas struct {
			Error struct {
				Properties struct {
					Error struct {
						Properties struct {
							Code struct {
								Enum []string `json:"enum"`
							} `json:"code"`
						} `json:"properties"`
					} `json:"error"`
				} `json:"properties"`
			} `json:"Error"`
		} `json:"schemas"`
	} `json:"components"`
}

type operation struct {
	Security  *[]map[string][]string `json:"security"`
	Responses map[string]struct {
		Ref string `json:"$ref"`
	} `json:"responses"`
}

func loadOpenAPI(t *testing.T) openAPIDoc {
	t.Helper()
	var doc openAPIDoc
	if err := json.Unmarshal(OpenAPI(), &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	return doc
}

// chatCodes reads the Code constants out of package chat's source, so that
// a new code cannot be left out of the document.
func chatCodes(t *testing.T) []chat.Code {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "../internal/chat/errors.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var codes []chat.Code
	for _, decl := range f.Decls {
		gd, ok := decl.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, id := range vs.Names {
				if lit, ok := vs.Values[i].(*ast.BasicLit); ok && strings.HasPrefix(id.Name, "Code") {
					v, _ := strconv.Unquote(lit.Value)
					codes = append(codes, chat.Code(v))
				}
			}
		}
	}
	if len(codes) == 0 {
		t.Fatal("no Code constants in internal/chat/errors.go")
	}
	return codes
}

// TestErrorCodesAreDocumented: the Error schema lists exactly the codes of
// package chat, and each code's status (httpStatus, the one mapping) is a
// shared error response that names the code and carries the Error body.
func TestErrorCodesAreDocumented(t *testing.T) {
	doc := loadOpenAPI(t)
	enum := doc.Components.Schemas.Error.Properties.Error.Properties.Code.Enum
	codes := chatCodes(t)
	for _, c := range codes {
		if !slices.Contains(enum, string(c)) {
			t.Errorf("code %q is not in the Error schema's enum", c)
		}
		status := strconv.Itoa(httpStatus(c))
		found := false
		for _, r := range doc.Components.Responses {
			if strings.Contains(r.Description, string(c)) && r.Content["application/json"].Schema.Ref == "#/components/schemas/Error" {
				found = true
				if !strings.Contains(responseStatus(t, doc, r.Description), status) {
					t.Errorf("code %q answers %s, but its response is documented for another status", c, status)
				}
			}
		}
		if !found {
			t.Errorf("no shared error response (components.responses) names code %q", c)
		}
	}
	for _, e := range enum {
		if !slices.Contains(codes, chat.Code(e)) {
			t.Errorf("the Error schema lists %q, which package chat does not define", e)
		}
	}
}

// responseStatus is the status under which operations use the shared
// response with this description.
func responseStatus(t *testing.T, doc openAPIDoc, description string) string {
	t.Helper()
	for name, r := range doc.Components.Responses {
		if r.Description != description {
			continue
		}
		var statuses []string
		eachOperation(t, doc, func(_ string, op operation) {
			for status, ref := range op.Responses {
				if ref.Ref == "#/components/responses/"+name && !slices.Contains(statuses, status) {
					statuses = append(statuses, status)
				}
			}
		})
		return strings.Join(statuses, ",")
	}
	return ""
}

func eachOperation(t *testing.T, doc openAPIDoc, f func(name string, op operation)) {
	t.Helper()
	for path, item := range doc.Paths {
		for method, raw := range item {
			if method == "parameters" {
				continue
			}
			var op operation
			if err := json.Unmarshal(raw, &op); err != nil {
				t.Fatalf("%s %s: %v", method, path, err)
			}
			f(strings.ToUpper(method)+" "+path, op)
		}
	}
}

// TestErrorResponsesAreShared: every chat operation refers its error statuses
// to components.responses (one Error schema, documented once; /health
// keeps its own 503 body), and every
// operation behind a token says 401.
func TestErrorResponsesAreShared(t *testing.T) {
	doc := loadOpenAPI(t)
	eachOperation(t, doc, func(name string, op operation) {
		for status, r := range op.Responses {
			if n, _ := strconv.Atoi(status); n >= 400 && strings.Contains(name, Prefix) && !strings.HasPrefix(r.Ref, "#/components/responses/") {
				t.Errorf("%s: response %s is not one of components.responses", name, status)
			}
		}
		public := op.Security != nil && len(*op.Security) == 0
		if _, ok := op.Responses["401"]; !public && !ok {
			t.Errorf("%s needs a token but does not document 401", name)
		}
		if public == strings.Contains(name, Prefix) {
			t.Errorf("%s: only the endpoints outside %s are public", name, Prefix)
		}
	})
}
