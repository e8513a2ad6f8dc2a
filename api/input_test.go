package api_test

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/parleychat/parley/api"
	"github.com/parleychat/parley/api/auth"
	"github.com/parleychat/parley/internal/chat"
	"github.com/parleychat/parley/internal/pipelinetest"
)

// storedTables is every table a request could write, directly or through
// the bus.
var storedTables = []string{"event_archive", "messages", "message_deletions", "message_requests", "conversations", "conversation_participants"}

func counts(t *testing.T, e *pipelinetest.Env) map[string]int {
	t.Helper()
	m := map[string]int{}
	for _, table := range storedTables {
		m[table] = e.Count(t, table)
	}
	return m
}

type refusal struct {
	name         string
	user         int64  // who asks; 0 with no authorization
	authz        string // the Authorization header, instead of user's token
	method, path string
	body         any
	status       int
	code         chat.Code
}

// runRefusals sends each request and checks the answer is a clear 4xx in the JSON
// error shape and that nothing was stored.
func runRefusals(t *testing.T, e *pipelinetest.Env, cases []refusal) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := counts(t, e)
			header := pipelinetest.Auth(c.user)
			if c.authz != "" {
				header = http.Header{"Authorization": {c.authz}}
			}
			resp := e.DoHeader(t, header, c.method, c.path, c.body)
			wantError(t, c.method+" "+c.path, resp, c.status, c.code)
			if after := counts(t, e); fmt.Sprint(after) != fmt.Sprint(before) {
				t.Fatalf("a refused request stored something: before %v, after %v", before, after)
			}
		})
	}
}

// Refused requests answer a clear 4xx in the JSON error shape and store
// nothing. The two groups share a backend and run one after the other: each
// request checks that no table changed.
func TestRefusals(t *testing.T) {
	t.Parallel()
	e := pipelinetest.New(t, pipelinetest.Options{})
	t.Run("bad input", func(t *testing.T) { badInput(t, e) })
	t.Run("only participants read or write", func(t *testing.T) { onlyParticipants(t, e, 11, 12, 13) })
}

// badInput is the bad-input table, for users 1, 2 and 3.
func badInput(t *testing.T, e *pipelinetest.Env) {
	conv := e.Conversation(t, 1, 2)
	kept := e.Send(t, 1, text(conv, "kept"))
	e.AwaitMessages(t, 2, conv, 1)
	e.AwaitIdle(t)

	hi := `{"recipient_id":2,"text_content":"hi"}`
	now := time.Now()
	expired, err := auth.Issue(pipelinetest.Secret, 1, time.Hour, now.Add(-2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	forged, err := auth.Issue([]byte("not-the-shared-secret-0123456789"), 1, time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	algNone := b64([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + b64([]byte(fmt.Sprintf(`{"sub":"1","exp":%d}`, now.Add(time.Hour).Unix()))) + "."
	goodToken := pipelinetest.Auth(1).Get("Authorization")
	nobody := uuid.Must(uuid.NewV7()).String()
	ids := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = uuid.NewString()
		}
		return out
	}
	post, get, patch, del := http.MethodPost, http.MethodGet, http.MethodPatch, http.MethodDelete
	msgs, settings := messagesPath(conv), convPath(conv)+"/settings"
	convs := api.Prefix + "/conversations"
	const (
		bad      = http.StatusBadRequest
		invalid  = http.StatusUnprocessableEntity
		unauthed = http.StatusUnauthorized
	)

	cases := []refusal{
		// Bodies that are not one JSON object of the expected fields.
		{"malformed JSON", 1, "", post, sendPath, `{"recipient_id":2,"text_content":"hi"`, bad, chat.CodeBadRequest},
		{"a form, not JSON", 1, "", post, sendPath, `recipient_id=2&text_content=hi`, bad, chat.CodeBadRequest},
		{"empty body", 1, "", post, sendPath, "", bad, chat.CodeBadRequest},
		{"an array", 1, "", post, sendPath, `[1,2]`, bad, chat.CodeBadRequest},
		{"two objects", 1, "", post, sendPath, hi + hi, bad, chat.CodeBadRequest},
		{"unknown field", 1, "", post, sendPath, `{"recipient_id":2,"text_content":"hi","priority":"high"}`, bad, chat.CodeBadRequest},
		{"camelCase field", 1, "", post, sendPath, `{"recipientId":2,"textContent":"hi"}`, bad, chat.CodeBadRequest},
		{"recipient_id as a string", 1, "", post, sendPath, `{"recipient_id":"2","text_content":"hi"}`, bad, chat.CodeBadRequest},
		{"null", 1, "", post, sendPath, `null`, invalid, chat.CodeInvalid},
		{"body over 64 KiB", 1, "", post, sendPath, fmt.Sprintf(`{"recipient_id":2,"text_content":%q}`, strings.Repeat("a", 70<<10)), http.StatusRequestEntityTooLarge, chat.CodeTooLarge},

		// Messages that are well-formed but not acceptable.
		{"unknown content type", 1, "", post, sendPath, `{"recipient_id":2,"content_type":"sticker","text_content":"hi"}`, invalid, chat.CodeInvalid},
		{"content type in capitals", 1, "", post, sendPath, `{"recipient_id":2,"content_type":"TEXT","text_content":"hi"}`, invalid, chat.CodeInvalid},
		{"empty text", 1, "", post, sendPath, `{"recipient_id":2,"text_content":""}`, invalid, chat.CodeInvalid},
		{"blank text", 1, "", post, sendPath, `{"recipient_id":2,"text_content":" \n\t "}`, invalid, chat.CodeInvalid},
		{"text of 4001 characters", 1, "", post, sendPath, map[string]any{"recipient_id": 2, "text_content": strings.Repeat("a", 4001)}, invalid, chat.CodeInvalid},
		{"text of 4001 two-byte characters", 1, "", post, sendPath, map[string]any{"recipient_id": 2, "text_content": strings.Repeat("é", 4001)}, invalid, chat.CodeInvalid},
		{"to oneself", 1, "", post, sendPath, `{"recipient_id":1,"text_content":"hi"}`, invalid, chat.CodeInvalid},
		{"to oneself by conversation and recipient", 1, "", post, sendPath, map[string]any{"conversation_id": conv, "recipient_id": 1, "text_content": "hi"}, invalid, chat.CodeInvalid},
		{"recipient_id 0", 1, "", post, sendPath, `{"recipient_id":0,"text_content":"hi"}`, invalid, chat.CodeInvalid},
		{"no recipient", 1, "", post, sendPath, `{"text_content":"hi"}`, invalid, chat.CodeInvalid},
		{"negative recipient_id", 1, "", post, sendPath, `{"recipient_id":-2,"text_content":"hi"}`, invalid, chat.CodeInvalid},
		{"recipient not in the conversation", 1, "", post, sendPath, map[string]any{"conversation_id": conv, "recipient_id": 5, "text_content": "hi"}, invalid, chat.CodeInvalid},
		{"image without media", 1, "", post, sendPath, `{"recipient_id":2,"content_type":"image"}`, invalid, chat.CodeInvalid},
		{"audio with a foreign media_url", 1, "", post, sendPath, `{"recipient_id":2,"content_type":"audio","media_url":"https://example.com/a.mp3"}`, invalid, chat.CodeInvalid},
		{"text carrying media", 1, "", post, sendPath, `{"recipient_id":2,"text_content":"hi","media_key":"chat/1/a.jpg"}`, invalid, chat.CodeInvalid},
		{"audio_duration on text", 1, "", post, sendPath, `{"recipient_id":2,"text_content":"hi","audio_duration":3}`, invalid, chat.CodeInvalid},
		{"client_message_id too long", 1, "", post, sendPath, map[string]any{"recipient_id": 2, "text_content": "hi", "client_message_id": strings.Repeat("c", 129)}, invalid, chat.CodeInvalid},
		{"conversation with oneself", 1, "", post, convs, `{"recipient_id":1}`, invalid, chat.CodeInvalid},
		{"conversation with user 0", 1, "", post, convs, `{"recipient_id":0}`, invalid, chat.CodeInvalid},
		{"conversation with a negative user", 1, "", post, convs, `{"recipient_id":-7}`, invalid, chat.CodeInvalid},

		// Tokens.
		{"no token", 0, "", post, sendPath, hi, unauthed, chat.CodeUnauthenticated},
		{"empty bearer", 0, "Bearer ", post, sendPath, hi, unauthed, chat.CodeUnauthenticated},
		{"basic auth", 0, "Basic dXNlcjpwYXNz", post, sendPath, hi, unauthed, chat.CodeUnauthenticated},
		{"token without the Bearer scheme", 0, strings.TrimPrefix(goodToken, "Bearer "), post, sendPath, hi, unauthed, chat.CodeUnauthenticated},
		{"garbage token", 0, "Bearer not.a.token", post, sendPath, hi, unauthed, chat.CodeUnauthenticated},
		{"expired token", 0, "Bearer " + expired, post, sendPath, hi, unauthed, chat.CodeUnauthenticated},
		{"forged token", 0, "Bearer " + forged, post, sendPath, hi, unauthed, chat.CodeUnauthenticated},
		{"alg none token", 0, "Bearer " + algNone, post, sendPath, hi, unauthed, chat.CodeUnauthenticated},
		{"no token to read", 0, "", get, msgs, nil, unauthed, chat.CodeUnauthenticated},
		{"forged token to read", 0, "Bearer " + forged, get, msgs, nil, unauthed, chat.CodeUnauthenticated},

		// Someone else's conversation, and one that does not exist.
		{"send in another user's conversation", 3, "", post, sendPath, text(conv, "hi"), http.StatusForbidden, chat.CodeForbidden},
		{"send in no conversation", 1, "", post, sendPath, text(nobody, "hi"), http.StatusNotFound, chat.CodeNotFound},

		// Ids that are not UUIDs, in paths and bodies.
		{"conversation_id not a UUID", 1, "", post, sendPath, text("conv-1", "hi"), bad, chat.CodeBadRequest},
		{"reply_to_id not a UUID", 1, "", post, sendPath, `{"recipient_id":2,"text_content":"hi","reply_to_id":"42"}`, bad, chat.CodeBadRequest},
		{"messages of a non-UUID", 1, "", get, messagesPath("not-a-uuid"), nil, bad, chat.CodeBadRequest},
		{"messages of a URN UUID", 1, "", get, messagesPath("urn:uuid:" + conv), nil, bad, chat.CodeBadRequest},
		{"messages of a UUID without dashes", 1, "", get, messagesPath(strings.ReplaceAll(conv, "-", "")), nil, bad, chat.CodeBadRequest},
		{"conversation 123", 1, "", get, convPath("123"), nil, bad, chat.CodeBadRequest},
		{"settings of a non-UUID", 1, "", patch, convPath("x") + "/settings", `{"pinned":true}`, bad, chat.CodeBadRequest},
		{"delete a non-UUID conversation", 1, "", del, convPath("x"), nil, bad, chat.CodeBadRequest},
		{"delete a non-UUID message", 1, "", del, api.Prefix + "/messages/xyz", nil, bad, chat.CodeBadRequest},

		// Paging and query parameters.
		{"page 0", 1, "", get, msgs + "?page=0", nil, bad, chat.CodeBadRequest},
		{"page -1", 1, "", get, msgs + "?page=-1", nil, bad, chat.CodeBadRequest},
		{"page huge", 1, "", get, msgs + "?page=99999999999999999999", nil, bad, chat.CodeBadRequest},
		{"page over the limit", 1, "", get, msgs + "?page=1000001", nil, bad, chat.CodeBadRequest},
		{"page not a number", 1, "", get, msgs + "?page=two", nil, bad, chat.CodeBadRequest},
		{"page_size 0", 1, "", get, msgs + "?page_size=0", nil, bad, chat.CodeBadRequest},
		{"page_size -5", 1, "", get, msgs + "?page_size=-5", nil, bad, chat.CodeBadRequest},
		{"page_size 101", 1, "", get, msgs + "?page_size=101", nil, bad, chat.CodeBadRequest},
		{"page_size huge", 1, "", get, msgs + "?page_size=1000000000000", nil, bad, chat.CodeBadRequest},
		{"limit 0", 1, "", get, msgs + "?after_seq=0&limit=0", nil, bad, chat.CodeBadRequest},
		{"conversations page 0", 1, "", get, convs + "?page=0", nil, bad, chat.CodeBadRequest},
		{"conversations page_size 0", 1, "", get, convs + "?page_size=0", nil, bad, chat.CodeBadRequest},
		{"conversations page_size 500", 1, "", get, convs + "?page_size=500", nil, bad, chat.CodeBadRequest},
		{"conversations archived=maybe", 1, "", get, convs + "?archived=maybe", nil, bad, chat.CodeBadRequest},
		{"unknown conversations parameter", 1, "", get, convs + "?sort=newest", nil, bad, chat.CodeBadRequest},
		{"unknown messages parameter", 1, "", get, msgs + "?order=asc", nil, bad, chat.CodeBadRequest},
		{"after_seq and before_seq", 1, "", get, msgs + "?after_seq=0&before_seq=5", nil, bad, chat.CodeBadRequest},
		{"after_seq with page", 1, "", get, msgs + "?after_seq=0&page=2", nil, bad, chat.CodeBadRequest},
		{"after_seq -1", 1, "", get, msgs + "?after_seq=-1", nil, bad, chat.CodeBadRequest},
		{"after_seq not a number", 1, "", get, msgs + "?after_seq=last", nil, bad, chat.CodeBadRequest},
		{"before_seq huge", 1, "", get, msgs + "?before_seq=99999999999999999999", nil, bad, chat.CodeBadRequest},

		// Read receipts.
		{"read of a non-UUID", 2, "", post, readPath, `{"message_ids":["nope"]}`, bad, chat.CodeBadRequest},
		{"read of a UUID and a non-UUID", 2, "", post, readPath, map[string]any{"message_ids": []string{kept.ID, "1"}}, bad, chat.CodeBadRequest},
		{"read of nothing", 2, "", post, readPath, `{"message_ids":[]}`, invalid, chat.CodeInvalid},
		{"read without ids", 2, "", post, readPath, `{}`, invalid, chat.CodeInvalid},
		{"read ids as a string", 2, "", post, readPath, `{"message_ids":"` + kept.ID + `"}`, bad, chat.CodeBadRequest},
		{"read with a non-UUID conversation", 2, "", post, readPath, map[string]any{"message_ids": []string{kept.ID}, "conversation_id": "c"}, bad, chat.CodeBadRequest},
		{"read of too many", 2, "", post, readPath, map[string]any{"message_ids": ids(501)}, invalid, chat.CodeInvalid},

		// Settings.
		{"settings changing nothing", 1, "", patch, settings, `{}`, invalid, chat.CodeInvalid},
		{"settings of nulls", 1, "", patch, settings, `{"pinned":null,"muted":null}`, invalid, chat.CodeInvalid},
		{"settings with an unknown one", 1, "", patch, settings, `{"starred":true}`, bad, chat.CodeBadRequest},
		{"settings with a string", 1, "", patch, settings, `{"pinned":"yes"}`, bad, chat.CodeBadRequest},
		{"settings without a body", 1, "", patch, settings, nil, bad, chat.CodeBadRequest},

		// Routes that do not exist.
		{"no such endpoint", 1, "", get, api.Prefix + "/nothing", nil, http.StatusNotFound, chat.CodeNotFound},
		{"no such method", 1, "", http.MethodPut, sendPath, hi, http.StatusNotFound, chat.CodeNotFound},
	}
	runRefusals(t, e, cases)

	// What was there is intact, and a good request still works.
	if got := e.After(t, 2, conv, 0, 100).Data; len(got) != 1 || got[0].ID != kept.ID {
		t.Fatalf("after the refusals user 2 sees %v", idsOf(got))
	}
	e.Send(t, 1, map[string]any{"recipient_id": 2, "text_content": strings.Repeat("é", 4000)})
	e.AwaitMessages(t, 2, conv, 2)
}

// Only participants read or write a conversation: others get 403, and a
// conversation that does not exist is 404.
func onlyParticipants(t *testing.T, e *pipelinetest.Env, u1, u2, outsider int64) {
	conv := e.Conversation(t, u1, u2)
	m := e.Send(t, u1, text(conv, "private"))
	e.AwaitMessages(t, u2, conv, 1)
	e.AwaitIdle(t)
	nobody := uuid.Must(uuid.NewV7()).String()
	notStored := uuid.Must(uuid.NewV7()).String()
	post, get, patch, del := http.MethodPost, http.MethodGet, http.MethodPatch, http.MethodDelete
	forbidden, notFound := http.StatusForbidden, http.StatusNotFound

	var cases []refusal
	for _, target := range []struct {
		id     string
		status int
		code   chat.Code
	}{{conv, forbidden, chat.CodeForbidden}, {nobody, notFound, chat.CodeNotFound}} {
		id := target.id
		for _, c := range []refusal{
			{name: "list messages", method: get, path: messagesPath(id)},
			{name: "catch up", method: get, path: messagesPath(id) + "?after_seq=0"},
			{name: "page back", method: get, path: messagesPath(id) + "?before_seq=10"},
			{name: "get conversation", method: get, path: convPath(id)},
			{name: "send", method: post, path: sendPath, body: text(id, "let me in")},
			{name: "settings", method: patch, path: convPath(id) + "/settings", body: map[string]any{"muted": true}},
			{name: "delete conversation", method: del, path: convPath(id)},
			{name: "read a message not stored yet", method: post, path: readPath, body: map[string]any{"conversation_id": id, "message_ids": []string{notStored}}},
		} {
			c.name = fmt.Sprintf("%s of %s", c.name, map[bool]string{true: "another user's conversation", false: "no conversation"}[id == conv])
			c.user, c.status, c.code = outsider, target.status, target.code
			cases = append(cases, c)
		}
	}
	cases = append(cases,
		refusal{"delete another user's message", outsider, "", del, api.Prefix + "/messages/" + m.ID, nil, forbidden, chat.CodeForbidden},
		refusal{"delete no message", outsider, "", del, api.Prefix + "/messages/" + nobody, nil, notFound, chat.CodeNotFound},
	)
	runRefusals(t, e, cases)

	// A read receipt for someone else's message is answered, but the id is
	// reported as ignored and nothing is published.
	archived := e.Count(t, "event_archive")
	var res struct {
		Read, Ignored []string
	}
	e.MustDo(t, outsider, post, readPath, map[string]any{"message_ids": []string{m.ID}}, http.StatusOK, &res)
	if len(res.Read) != 0 || len(res.Ignored) != 1 || res.Ignored[0] != m.ID {
		t.Fatalf("read of another user's message answered %+v", res)
	}
	if n := e.Count(t, "event_archive"); n != archived {
		t.Fatalf("%d events archived, want %d", n, archived)
	}
	if l := e.Conversations(t, outsider, ""); l.Total != 0 || len(l.Data) != 0 {
		t.Fatalf("the outsider lists %+v", l)
	}
	if got := e.After(t, u2, conv, 0, 10).Data; len(got) != 1 || got[0].ReadAt != nil {
		t.Fatalf("the recipient sees %+v", got)
	}
}
