package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strings"
	"unicode"

	"github.com/parleychat/parley/internal/chat"
)

// wire is a transport's naming of JSON fields. The input types in package
// chat carry the canonical names, REST's snake_case; WebSocket clients
// write the same fields in camelCase.
type wire struct {
	style string // "snake_case" or "camelCase", for messages
	what  string // what is decoded, for messages: "request body", "data"
}

var (
	restWire = wire{style: "snake_case", what: "request body"}
	wsWire   = wire{style: "camelCase", what: "data"}
)

func (w wire) camel() bool { return w.style == "camelCase" }

// valid reports whether key is written in w's style.
func (w wire) valid(key string) bool {
	for i, r := range key {
		switch {
		case r >= 'a' && r <= 'z', i > 0 && r >= '0' && r <= '9':
		case i > 0 && !w.camel() && r == '_' && key[i-1] != '_':
		case i > 0 && w.camel() && r >= 'A' && r <= 'Z' && !unicode.IsUpper(rune(key[i-1])):
		default:
			return false
		}
	}
	return key != "" && !strings.HasSuffix(key, "_")
}

// canonical translates a field name from w's style to the canonical one.
func (w wire) canonical(key string) string {
	if !w.camel() {
		return key
	}
	var b strings.Builder
	for _, r := range key {
		if unicode.IsUpper(r) {
			b.WriteByte('_')
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

// name translates a canonical field name (or a dotted path of them) to w's
// style, as the client wrote it.
func (w wire) name(canonical string) string {
	if !w.camel() {
		return canonical
	}
	var b strings.Builder
	upper := false
	for _, r := range canonical {
		switch {
		case r == '_':
			upper = true
		case upper:
			b.WriteRune(unicode.ToUpper(r))
			upper = false
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// decode reads exactly one JSON object from r into dst, an input type of
// package chat. Every key must be in w's style and name a field of dst;
// errors name fields as the client wrote them. JSON null leaves dst as it
// is, so that the service reports what is missing.
func (w wire) decode(r io.Reader, dst any) error {
	dec := json.NewDecoder(r)
	var obj map[string]json.RawMessage
	if err := dec.Decode(&obj); err != nil {
		var tooBig *http.MaxBytesError
		var syntax *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &tooBig):
			return chat.Errorf(chat.CodeTooLarge, "%s is larger than %d bytes", w.what, tooBig.Limit)
		case errors.Is(err, io.EOF):
			return chat.Errorf(chat.CodeBadRequest, "%s is empty", w.what)
		case errors.As(err, &syntax), errors.Is(err, io.ErrUnexpectedEOF):
			return chat.Errorf(chat.CodeBadRequest, "%s is not valid JSON", w.what)
		case errors.As(err, &typ):
			return chat.Errorf(chat.CodeBadRequest, "%s must be a JSON object", w.what)
		default:
			return chat.Errorf(chat.CodeBadRequest, "%s is not valid JSON: %v", w.what, err)
		}
	}
	if dec.More() {
		return chat.Errorf(chat.CodeBadRequest, "%s must hold a single JSON object", w.what)
	}
	if obj == nil {
		return nil
	}
	canon := make(map[string]json.RawMessage, len(obj))
	for k, v := range obj {
		if !w.valid(k) {
			return chat.Errorf(chat.CodeBadRequest, "unknown field %q (fields are %s)", k, w.style)
		}
		if hasNUL(v) {
			// PostgreSQL cannot store it (text nor jsonb): refused here, it
			// can neither fail later nor fail a statement shared with
			// other users' requests.
			return chat.Errorf(chat.CodeInvalid, "field %q contains a NUL character (U+0000), which cannot be stored", k)
		}
		canon[w.canonical(k)] = v
	}
	raw, err := json.Marshal(canon)
	if err != nil {
		return chat.Errorf(chat.CodeBadRequest, "%s is not valid JSON", w.what)
	}
	strict := json.NewDecoder(bytes.NewReader(raw))
	strict.DisallowUnknownFields()
	if err := strict.Decode(dst); err != nil {
		var typ *json.UnmarshalTypeError
		if errors.As(err, &typ) {
			return chat.Errorf(chat.CodeBadRequest, "field %q must be %s", w.name(typ.Field), typ.Type)
		}
		if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			return chat.Errorf(chat.CodeBadRequest, "unknown field %q", w.name(strings.Trim(name, `"`)))
		}
		return chat.Errorf(chat.CodeBadRequest, "invalid %s: %s", w.what, strings.TrimPrefix(err.Error(), "json: "))
	}
	return nil
}

// hasNUL reports whether a JSON value holds a string with U+0000, which
// JSON can only write as the escape \u0000.
func hasNUL(v json.RawMessage) bool {
	if !bytes.Contains(v, []byte(`\u0000`)) {
		return false
	}
	var x any
	if json.Unmarshal(v, &x) != nil {
		return false // reported by the strict decode
	}
	return nulIn(x)
}

func nulIn(x any) bool {
	switch x := x.(type) {
	case string:
		return strings.ContainsRune(x, 0)
	case []any:
		for _, e := range x {
			if nulIn(e) {
				return true
			}
		}
	case map[string]any:
		for k, e := range x {
			if strings.ContainsRune(k, 0) || nulIn(e) {
				return true
			}
		}
	}
	return false
}

// rename rewrites the canonical field names of in that err's message
// mentions into w's style, so that a service error ("recipient_id must be
// positive") names fields as the client wrote them ("recipientId").
func (w wire) rename(err error, in any) error {
	if !w.camel() || err == nil {
		return err
	}
	e := chat.AsError(err)
	msg := e.Message
	for _, f := range jsonFields(reflect.TypeOf(in)) {
		if strings.Contains(f, "_") {
			msg = strings.ReplaceAll(msg, f, w.name(f))
		}
	}
	if msg == e.Message {
		return err
	}
	return &chat.Error{Code: e.Code, Message: msg, Err: e.Err}
}

// jsonFields lists the JSON names of a struct type's fields.
func jsonFields(t reflect.Type) []string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var out []string
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name != "" && name != "-" {
			out = append(out, name)
		}
	}
	return out
}

// decodeJSON reads a REST body into dst, refusing bodies over maxJSONBody.
// The Content-Type is not checked: clients such as curl -d send JSON
// labelled as a form.
func decodeJSON(w http.ResponseWriter, req *http.Request, dst any) error {
	return restWire.decode(http.MaxBytesReader(w, req.Body, maxJSONBody), dst)
}

// decodeData reads a WebSocket frame's data into dst.
func decodeData(raw json.RawMessage, dst any) error {
	if len(raw) == 0 || string(raw) == "null" {
		return chat.Errorf(chat.CodeBadRequest, "data is required")
	}
	return wsWire.decode(bytes.NewReader(raw), dst)
}
