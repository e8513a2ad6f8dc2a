package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/parleychat/parley/internal/chat"
	"github.com/parleychat/parley/internal/wsproto"
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
	// frameWire reads the envelope of a WebSocket frame around its data.
	frameWire = wire{style: "camelCase", what: "frame"}
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
// package chat. Every key must be in w's style and name a field of dst
// exactly (encoding/json alone would match "Pinned" to "pinned"); errors
// name fields as the client wrote them. Strings must be valid UTF-8 without
// NUL: encoding/json would silently replace invalid bytes with U+FFFD.
// JSON null leaves dst as it is, so that the service reports what is
// missing.
func (w wire) decode(r io.Reader, dst any) error {
	body, err := io.ReadAll(r)
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return chat.Errorf(chat.CodeTooLarge, "%s is larger than %d bytes", w.what, tooBig.Limit)
	}
	if err != nil {
		return chat.Errorf(chat.CodeBadRequest, "could not read the %s: %v", w.what, err)
	}
	obj, err := w.object(body)
	if err != nil || obj == nil {
		return err
	}
	if err := w.storable(obj, body); err != nil {
		return err
	}
	// Each value is decoded straight into its field: the keys were checked
	// against dst's fields above, so no pass over the whole object is left.
	v := reflect.ValueOf(dst).Elem()
	fields := fieldIndexes(v.Type())
	for k, raw := range obj {
		if !w.valid(k) {
			return chat.Errorf(chat.CodeBadRequest, "unknown field %q (fields are %s)", k, w.style)
		}
		i, ok := fields[w.canonical(k)]
		if !ok {
			return chat.Errorf(chat.CodeBadRequest, "unknown field %q", k)
		}
		if err := json.Unmarshal(raw, v.Field(i).Addr().Interface()); err != nil {
			var typ *json.UnmarshalTypeError
			if errors.As(err, &typ) {
				name := k
				if typ.Field != "" {
					name += "." + w.name(typ.Field)
				}
				return chat.Errorf(chat.CodeBadRequest, "field %q must be %s", name, typ.Type)
			}
			return chat.Errorf(chat.CodeBadRequest, "invalid %s: field %q: %s", w.what, k, strings.TrimPrefix(err.Error(), "json: "))
		}
	}
	return nil
}

// fieldIndexes maps the JSON names of a struct type's fields to their
// indexes.
func fieldIndexes(t reflect.Type) map[string]int {
	out := map[string]int{}
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			out[name] = i
		}
	}
	return out
}

// object parses body as exactly one JSON object (nil for JSON null).
func (w wire) object(body []byte) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	var obj map[string]json.RawMessage
	if err := dec.Decode(&obj); err != nil {
		var syntax *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.Is(err, io.EOF):
			return nil, chat.Errorf(chat.CodeBadRequest, "%s is empty", w.what)
		case errors.As(err, &syntax), errors.Is(err, io.ErrUnexpectedEOF):
			return nil, chat.Errorf(chat.CodeBadRequest, "%s is not valid JSON", w.what)
		case errors.As(err, &typ):
			return nil, chat.Errorf(chat.CodeBadRequest, "%s must be a JSON object", w.what)
		default:
			return nil, chat.Errorf(chat.CodeBadRequest, "%s is not valid JSON: %v", w.what, err)
		}
	}
	if dec.More() {
		return nil, chat.Errorf(chat.CodeBadRequest, "%s must hold a single JSON object", w.what)
	}
	return obj, nil
}

// storable refuses an object whose strings cannot be stored as text.
// PostgreSQL cannot store NUL nor invalid UTF-8 (text nor jsonb): refused
// here, they can neither fail later nor fail a statement shared with other
// users' requests.
func (w wire) storable(obj map[string]json.RawMessage, body []byte) error {
	for k, v := range obj {
		if problem := textProblem(v); problem != "" {
			return chat.Errorf(chat.CodeInvalid, "field %q %s", k, problem)
		}
	}
	if !utf8.Valid(body) { // not in a value: in a key
		return chat.Errorf(chat.CodeInvalid, "a field name in the %s is not valid UTF-8", w.what)
	}
	return nil
}

// textProblem says why the strings of a JSON value cannot be stored as
// text, or "" when they can. Besides raw bytes that are not UTF-8, JSON can
// smuggle U+0000 and unpaired UTF-16 surrogates in as \u escapes.
func textProblem(v []byte) string {
	if !utf8.Valid(v) {
		return "is not valid UTF-8"
	}
	if !bytes.Contains(v, []byte(`\u`)) {
		return ""
	}
	inString := false
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '"':
			inString = !inString
		case c == '\\' && inString:
			if i+5 >= len(v) || v[i+1] != 'u' {
				i++ // an escape of one character
				continue
			}
			r := hex4(v[i+2 : i+6])
			i += 5
			switch {
			case r == 0:
				return "contains a NUL character (U+0000), which cannot be stored"
			case r >= 0xD800 && r <= 0xDBFF && i+6 < len(v) && v[i+1] == '\\' && v[i+2] == 'u':
				if lo := hex4(v[i+3 : i+7]); lo >= 0xDC00 && lo <= 0xDFFF {
					i += 6 // a surrogate pair: one character
					continue
				}
				return "is not valid UTF-8 (an unpaired UTF-16 surrogate escape)"
			case r >= 0xD800 && r <= 0xDFFF:
				return "is not valid UTF-8 (an unpaired UTF-16 surrogate escape)"
			}
		}
	}
	return ""
}

// hex4 reads four hex digits (-1 if they are not).
func hex4(b []byte) rune {
	n, err := strconv.ParseUint(string(b), 16, 16)
	if err != nil {
		return -1
	}
	return rune(n)
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
	c := *e // the code, the retry hint and the cause stay
	c.Message = msg
	return &c
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

// decodeFrame reads a client WebSocket frame: a JSON object with exactly
// the keys "action" and "data", written in that case.
func decodeFrame(body string) (wsproto.Inbound, error) {
	bad := chat.Errorf(chat.CodeBadRequest, `frame must be a JSON object {"action":...,"data":{...}}`)
	obj, err := frameWire.object([]byte(body))
	if err != nil {
		return wsproto.Inbound{}, bad
	}
	var in wsproto.Inbound
	for k, v := range obj {
		switch k {
		case "action": // data is checked as it is decoded, naming its fields
			if json.Unmarshal(v, &in.Action) != nil {
				return wsproto.Inbound{}, bad
			}
			if problem := textProblem(v); problem != "" {
				return wsproto.Inbound{}, chat.Errorf(chat.CodeInvalid, "action %s", problem)
			}
		case "data":
			in.Data = v
		default:
			return wsproto.Inbound{}, bad
		}
	}
	return in, nil
}

// decodeData reads a WebSocket frame's data into dst.
func decodeData(raw json.RawMessage, dst any) error {
	if len(raw) == 0 || string(raw) == "null" {
		return chat.Errorf(chat.CodeBadRequest, "data is required")
	}
	return wsWire.decode(bytes.NewReader(raw), dst)
}
