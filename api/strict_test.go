package api_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/parleychat/parley/internal/chat"
	"github.com/parleychat/parley/internal/pipelinetest"
	"github.com/parleychat/parley/internal/wsproto"
)

// Text that cannot be stored as it was sent (bytes that are not UTF-8,
// unpaired surrogate escapes) is refused naming the field, instead of
// being replaced with U+FFFD by the JSON decoder; text that shows nothing
// counts as empty; keys match exactly, in both transports.
func TestStrictInput(t *testing.T) {
	t.Parallel()
	e := pipelinetest.New(t, pipelinetest.Options{})
	conv := e.Conversation(t, 1, 2)
	settings := convPath(conv) + "/settings"
	post, patch := http.MethodPost, http.MethodPatch
	const invalid = http.StatusUnprocessableEntity
	runRefusals(t, e, []refusal{
		{"text with bytes that are not UTF-8", 1, "", post, sendPath, []byte("{\"recipient_id\":2,\"text_content\":\"caf\xe9\"}"), invalid, chat.CodeInvalid},
		{"client_message_id with bytes that are not UTF-8", 1, "", post, sendPath, []byte("{\"recipient_id\":2,\"text_content\":\"hi\",\"client_message_id\":\"\xff\"}"), invalid, chat.CodeInvalid},
		{"a key with bytes that are not UTF-8", 1, "", post, sendPath, []byte("{\"recipient_id\":2,\"text_content\":\"hi\",\"\xfe\":1}"), invalid, chat.CodeInvalid},
		{"an unpaired high surrogate escape", 1, "", post, sendPath, `{"recipient_id":2,"text_content":"a\ud800b"}`, invalid, chat.CodeInvalid},
		{"an unpaired low surrogate escape", 1, "", post, sendPath, `{"recipient_id":2,"text_content":"\udc00"}`, invalid, chat.CodeInvalid},
		{"zero-width text", 1, "", post, sendPath, `{"recipient_id":2,"text_content":"\u200b\u200c\u200d\u2060\ufeff"}`, invalid, chat.CodeInvalid},
		{"filler text", 1, "", post, sendPath, "{\"recipient_id\":2,\"text_content\":\" \u3164\u2800 \"}", invalid, chat.CodeInvalid},
		{"a key in other case", 1, "", patch, settings, `{"Pinned":true}`, http.StatusBadRequest, chat.CodeBadRequest},
	})
	for _, c := range []struct{ body, field string }{
		{"{\"recipient_id\":2,\"text_content\":\"caf\xe9\"}", "text_content"},
		{`{"recipient_id":2,"text_content":"a\ud800b"}`, "text_content"},
	} {
		if r := e.Do(t, 1, post, sendPath, []byte(c.body)); !strings.Contains(string(r.Body), c.field) || !strings.Contains(string(r.Body), "UTF-8") {
			t.Errorf("%q answered %s; want it to name %s and say UTF-8", c.body, r.Body, c.field)
		}
	}
	// What is valid still goes through: an escaped surrogate pair is one
	// character (U+1F600), and an emoji sequence joined by U+200D is text.
	e.Send(t, 1, map[string]any{"recipient_id": 2, "text_content": "ok"})
	if r := e.Do(t, 1, post, sendPath, `{"recipient_id":2,"text_content":"\ud83d\ude00 \ud83d\udc69\u200d\ud83d\udcbb"}`); r.Status != http.StatusOK {
		t.Fatalf("an escaped surrogate pair answered %d %s", r.Status, r.Body)
	}

	ws := wsEnv(t, e)(1)
	for _, c := range []struct {
		name, frame string
		code        chat.Code
		want        string
	}{
		{"text not UTF-8", "{\"action\":\"sendMessage\",\"data\":{\"recipientId\":2,\"textContent\":\"caf\xe9\"}}", chat.CodeInvalid, `"textContent" is not valid UTF-8`},
		{"an unpaired surrogate escape", `{"action":"sendMessage","data":{"recipientId":2,"textContent":"\udfff"}}`, chat.CodeInvalid, `"textContent" is not valid UTF-8`},
		{"zero-width text", `{"action":"sendMessage","data":{"recipientId":2,"textContent":"\u200b"}}`, chat.CodeInvalid, "textContent must not be empty"},
		{"the action key in capitals", `{"ACTION":"ping"}`, chat.CodeBadRequest, "frame must be a JSON object"},
		{"the data key in other case", `{"action":"typing","Data":{"conversationId":"` + conv + `","isTyping":true}}`, chat.CodeBadRequest, "frame must be a JSON object"},
		{"a data key in other case", `{"action":"typing","data":{"conversationid":"` + conv + `","isTyping":true}}`, chat.CodeBadRequest, `unknown field "conversationid"`},
	} {
		t.Run("WebSocket "+c.name, func(t *testing.T) {
			b := roundTrip(t, ws, c.frame)
			var f wsproto.Error
			if err := json.Unmarshal(b, &f); err != nil || f.Type != wsproto.TypeError || f.Code != string(c.code) || !strings.Contains(f.Message, c.want) {
				t.Fatalf("answered %s, want an error frame %s saying %s", b, c.code, c.want)
			}
		})
	}
}
