package wsproto_test

import (
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley/internal/wsproto"
)

// asyncAPI is the part of the document the tests read.
type asyncAPI struct {
	AsyncAPI string `json:"asyncapi"`
	Channels map[string]struct {
		Address     string                     `json:"address"`
		Description string                     `json:"description"`
		Messages    map[string]json.RawMessage `json:"messages"`
	} `json:"channels"`
	Operations map[string]struct {
		Action   string `json:"action"`
		Messages []ref  `json:"messages"`
	} `json:"operations"`
	Components struct {
		Messages map[string]struct {
			Payload schema `json:"payload"`
		} `json:"messages"`
	} `json:"components"`
}

type ref struct {
	Ref string `json:"$ref"`
}

func loadAsyncAPI(t *testing.T) asyncAPI {
	t.Helper()
	raw, err := os.ReadFile("asyncapi.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc asyncAPI
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("asyncapi.json: %v", err)
	}
	if doc.AsyncAPI != "3.0.0" {
		t.Fatalf("asyncapi.json is version %q, want 3.0.0", doc.AsyncAPI)
	}
	return doc
}

// TestGoldenFramesMatchAsyncAPI checks that every golden frame validates
// against its message's schema, and that the document and the golden files
// describe the same set of messages.
func TestGoldenFramesMatchAsyncAPI(t *testing.T) {
	doc := loadAsyncAPI(t)
	golden, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, path := range golden {
		name := strings.TrimSuffix(filepath.Base(path), ".json")
		names = append(names, name)
		t.Run(name, func(t *testing.T) {
			m, ok := doc.Components.Messages[name]
			if !ok {
				t.Fatalf("asyncapi.json has no message %q for %s", name, path)
			}
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var v any
			if err := json.Unmarshal(raw, &v); err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			for _, problem := range m.Payload.validate(v, "") {
				t.Errorf("%s does not match its schema: %s", path, problem)
			}
		})
	}
	for name := range doc.Components.Messages {
		if !slices.Contains(names, name) {
			t.Errorf("asyncapi.json documents %q, but testdata has no %s.json", name, name)
		}
	}
	ch, ok := doc.Channels["chat"]
	if !ok || ch.Address != "/ws" {
		t.Fatalf("asyncapi.json: want channel chat at /ws, got %+v", doc.Channels)
	}
	for name := range doc.Components.Messages {
		if _, ok := ch.Messages[name]; !ok {
			t.Errorf("channel /ws does not carry message %q", name)
		}
	}
	// Every message is received (a client action) or sent (a push or a
	// reply) by some operation.
	used := map[string]bool{}
	for _, op := range doc.Operations {
		for _, r := range op.Messages {
			used[r.Ref[strings.LastIndex(r.Ref, "/")+1:]] = true
		}
	}
	for name := range doc.Components.Messages {
		if !used[name] && !isReply(name) {
			t.Errorf("no operation sends or receives %q", name)
		}
	}
}

func isReply(name string) bool {
	switch name {
	case "frame.acknowledgment", "frame.pong", "frame.readAcknowledgment", "frame.changeAcknowledgment", "frame.error":
		return true
	}
	return false
}

// TestEveryConstantIsDocumented reads the Action* and Type* constants out
// of the package's source, so a new one cannot be forgotten, and checks
// that each names a documented message.
func TestEveryConstantIsDocumented(t *testing.T) {
	doc := loadAsyncAPI(t)
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "frames.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, decl := range f.Decls {
		gd, ok := decl.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, id := range vs.Names {
				var prefix string
				switch {
				case strings.HasPrefix(id.Name, "Action"):
					prefix = "action."
				case strings.HasPrefix(id.Name, "Type"):
					prefix = "frame."
				default:
					continue
				}
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok {
					t.Fatalf("%s is not a string literal", id.Name)
				}
				value, _ := strconv.Unquote(lit.Value)
				n++
				m, ok := doc.Components.Messages[prefix+value]
				if !ok {
					t.Errorf("%s = %q is not documented as message %q in asyncapi.json", id.Name, value, prefix+value)
					continue
				}
				key := map[string]string{"action.": "action", "frame.": "type"}[prefix]
				if c := m.Payload.Properties[key]; c == nil || c.Const != value {
					t.Errorf("message %q: its %s must be const %q", prefix+value, key, value)
				}
			}
		}
	}
	if n != len(doc.Components.Messages) {
		t.Errorf("%d frame constants in Go, %d messages in asyncapi.json", n, len(doc.Components.Messages))
	}
}

// TestSchemasAreStrict checks every object in the document refuses unknown
// properties, so that an undocumented field fails the golden check.
func TestSchemasAreStrict(t *testing.T) {
	doc := loadAsyncAPI(t)
	var walk func(s *schema, path string)
	walk = func(s *schema, path string) {
		if s == nil {
			return
		}
		if s.Type.name == "object" && (s.AdditionalProperties == nil || *s.AdditionalProperties) {
			t.Errorf("%s: an object schema needs additionalProperties: false", path)
		}
		for name, p := range s.Properties {
			walk(p, path+"."+name)
		}
		walk(s.Items, path+"[]")
	}
	for name, m := range doc.Components.Messages {
		walk(&m.Payload, name)
	}
}

// TestValidatorRefuses checks the validator itself catches what the other
// tests rely on it to catch.
func TestValidatorRefuses(t *testing.T) {
	doc := loadAsyncAPI(t)
	ack := doc.Components.Messages["frame.acknowledgment"].Payload
	for name, frame := range map[string]string{
		"an undocumented field": `{"type":"acknowledgment","messageId":"0195e4a2-7b3c-7d10-8a4b-9c2d3e4f5a6b","conversationId":"0195e4a2-7b3c-7d10-8a4b-9c2d3e4f5a6b","createdAt":"2026-03-14T15:09:26Z","extra":1}`,
		"a missing field":       `{"type":"acknowledgment","conversationId":"0195e4a2-7b3c-7d10-8a4b-9c2d3e4f5a6b","createdAt":"2026-03-14T15:09:26Z"}`,
		"a wrong type":          `{"type":"pong","messageId":"0195e4a2-7b3c-7d10-8a4b-9c2d3e4f5a6b","conversationId":"0195e4a2-7b3c-7d10-8a4b-9c2d3e4f5a6b","createdAt":"2026-03-14T15:09:26Z"}`,
		"a bad uuid":            `{"type":"acknowledgment","messageId":"42","conversationId":"0195e4a2-7b3c-7d10-8a4b-9c2d3e4f5a6b","createdAt":"2026-03-14T15:09:26Z"}`,
		"a bad date-time":       `{"type":"acknowledgment","messageId":"0195e4a2-7b3c-7d10-8a4b-9c2d3e4f5a6b","conversationId":"0195e4a2-7b3c-7d10-8a4b-9c2d3e4f5a6b","createdAt":"yesterday"}`,
		"a number for a string": `{"type":"acknowledgment","messageId":7,"conversationId":"0195e4a2-7b3c-7d10-8a4b-9c2d3e4f5a6b","createdAt":"2026-03-14T15:09:26Z"}`,
	} {
		var v any
		if err := json.Unmarshal([]byte(frame), &v); err != nil {
			t.Fatal(err)
		}
		if problems := ack.validate(v, ""); len(problems) == 0 {
			t.Errorf("%s: the validator accepted %s", name, frame)
		}
	}
}

// schema is the subset of JSON Schema the document uses.
type schema struct {
	Type                 schemaType         `json:"type"`
	Properties           map[string]*schema `json:"properties"`
	Required             []string           `json:"required"`
	AdditionalProperties *bool              `json:"additionalProperties"`
	Items                *schema            `json:"items"`
	Enum                 []any              `json:"enum"`
	Const                any                `json:"const"`
	Format               string             `json:"format"`
	Minimum              *float64           `json:"minimum"`
}

// schemaType is a schema's type: one name, or a name and "null" for a
// value that may be null.
type schemaType struct {
	name     string
	nullable bool
}

func (t *schemaType) UnmarshalJSON(b []byte) error {
	if json.Unmarshal(b, &t.name) == nil {
		return nil
	}
	var names []string
	if err := json.Unmarshal(b, &names); err != nil {
		return err
	}
	for _, n := range names {
		if n == "null" {
			t.nullable = true
		} else if t.name == "" {
			t.name = n
		} else {
			return fmt.Errorf("type %v: only one type besides null is supported by this validator", names)
		}
	}
	return nil
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// validate returns what is wrong with v, a value decoded by encoding/json.
func (s *schema) validate(v any, path string) []string {
	if path == "" {
		path = "$"
	}
	bad := func(format string, args ...any) []string { return []string{path + ": " + fmt.Sprintf(format, args...)} }
	var out []string
	if v == nil && s.Type.nullable {
		return nil
	}
	switch s.Type.name {
	case "object":
		o, ok := v.(map[string]any)
		if !ok {
			return bad("want an object, got %T", v)
		}
		for _, r := range s.Required {
			if _, ok := o[r]; !ok {
				out = append(out, path+": missing required "+r)
			}
		}
		for k, val := range o {
			p, ok := s.Properties[k]
			if !ok {
				if s.AdditionalProperties != nil && !*s.AdditionalProperties {
					out = append(out, path+": undocumented property "+k)
				}
				continue
			}
			out = append(out, p.validate(val, path+"."+k)...)
		}
	case "array":
		a, ok := v.([]any)
		if !ok {
			return bad("want an array, got %T", v)
		}
		for i, e := range a {
			if s.Items != nil {
				out = append(out, s.Items.validate(e, fmt.Sprintf("%s[%d]", path, i))...)
			}
		}
	case "string":
		str, ok := v.(string)
		if !ok {
			return bad("want a string, got %T", v)
		}
		switch s.Format {
		case "":
		case "uuid":
			if !uuidRE.MatchString(str) {
				out = append(out, bad("%q is not a UUID", str)...)
			}
		case "date-time":
			if _, err := time.Parse(time.RFC3339Nano, str); err != nil {
				out = append(out, bad("%q is not a date-time", str)...)
			}
		default:
			out = append(out, bad("format %q is not supported by this validator", s.Format)...)
		}
	case "integer", "number":
		n, ok := v.(float64)
		if !ok {
			return bad("want a number, got %T", v)
		}
		if s.Type.name == "integer" && n != float64(int64(n)) {
			out = append(out, bad("%v is not an integer", n)...)
		}
		if s.Minimum != nil && n < *s.Minimum {
			out = append(out, bad("%v is under the minimum %v", n, *s.Minimum)...)
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			return bad("want a boolean, got %T", v)
		}
	case "":
		// No type: any value (a feed entry's data, whose shape is its
		// kind's frame's, documented there).
	default:
		return bad("type %q is not supported by this validator", s.Type.name)
	}
	if s.Const != nil && v != s.Const {
		out = append(out, bad("want %v, got %v", s.Const, v)...)
	}
	if s.Enum != nil && !slices.Contains(s.Enum, v) {
		out = append(out, bad("%v is not one of %v", v, s.Enum)...)
	}
	return out
}

// TestCloseCodesAreDocumented: the close code a client acts on is in the
// document, as the code defines it.
func TestCloseCodesAreDocumented(t *testing.T) {
	desc := loadAsyncAPI(t).Channels["chat"].Description
	for _, want := range []string{"close code " + strconv.Itoa(wsproto.CloseTokenExpired), strconv.Quote(wsproto.CloseTokenExpiredReason)} {
		if !strings.Contains(desc, want) {
			t.Errorf("the chat channel's description does not say %s", want)
		}
	}
}
