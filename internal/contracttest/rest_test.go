package contracttest_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/parleychat/parley/internal/contracttest"
)

// TestOpenAPIIsValid lints the served document against the OpenAPI 3.1
// schema.
func TestOpenAPIIsValid(t *testing.T) {
	doc, err := contracttest.OpenAPI()
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Lint(); err != nil {
		t.Fatal(err)
	}
}

const (
	convID   = "0195e4a2-7b3c-7d10-8a4b-9c2d3e4f5a6b"
	msgID    = "0195e4a2-7b3c-7d10-8a4b-9c2d3e4f5a6c"
	syncPage = `{"changes":[{"position":1,"kind":"newMessage","conversation_id":"` + convID + `","occurred_at":"2026-03-14T15:09:26.5Z","data":{"id":"` + msgID + `","conversationId":"` + convID + `","senderId":1,"recipientId":2,"contentType":"text","textContent":"hi","createdAt":"2026-03-14T15:09:26.5Z","seq":1}},` +
		`{"position":2,"kind":"settingsChanged","conversation_id":"` + convID + `","occurred_at":"2026-03-14T15:09:27Z","data":{"conversationId":"` + convID + `","pinned":true,"muted":false,"archived":false,"deletedAt":null,"changedAt":"2026-03-14T15:09:27Z"}}],"next":2,"epoch":7,"has_more":false,"reset":false}`
	message = `{"id":"` + msgID + `","conversation_id":"` + convID + `","sender_id":1,"recipient_id":2,"content_type":"text","text_content":"hi","media_url":null,"media_thumbnail_url":null,"audio_duration":null,"reply_to_id":null,"created_at":"2026-03-14T15:09:26.5Z","sent_at":null,"delivered_at":null,"read_at":null,"status":"accepted","edited_at":null,"unsent_at":null,"reactions":[]}`
)

// exchange is one request and the answer a handler gave.
type exchange struct {
	method, path, reqBody string
	auth                  bool
	status                int
	header                map[string]string
	respBody              string
}

func (x exchange) check(t *testing.T) error {
	t.Helper()
	doc, err := contracttest.OpenAPI()
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(x.method, "http://localhost:8080"+x.path, strings.NewReader(x.reqBody))
	if x.reqBody != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if x.auth {
		req.Header.Set("Authorization", "Bearer x.y.z")
	}
	resp := &http.Response{StatusCode: x.status, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(x.respBody)), Request: req}
	resp.Header.Set("Content-Type", "application/json")
	for k, v := range x.header {
		resp.Header.Set(k, v)
	}
	return doc.Check(req, []byte(x.reqBody), resp, []byte(x.respBody))
}

// TestCheckAcceptsWhatTheDocumentSays: exchanges as the handlers make them
// pass, so the refusals below are the document's and not the harness's.
func TestCheckAcceptsWhatTheDocumentSays(t *testing.T) {
	for name, x := range map[string]exchange{
		"a send":          {method: "POST", path: "/api/v1/chat/messages", reqBody: `{"recipient_id":2,"text_content":"hi"}`, auth: true, status: 200, respBody: message},
		"an error":        {method: "POST", path: "/api/v1/chat/messages", reqBody: `{"recipient_id":2}`, auth: true, status: 422, respBody: `{"error":{"code":"invalid_argument","message":"text_content is required"}}`},
		"a 429":           {method: "POST", path: "/api/v1/chat/messages", reqBody: `{"recipient_id":2}`, auth: true, status: 429, header: map[string]string{"Retry-After": "3"}, respBody: `{"error":{"code":"rate_limited","message":"slow down"}}`},
		"no token":        {method: "GET", path: "/api/v1/chat/conversations", status: 401, respBody: `{"error":{"code":"unauthenticated","message":"missing token"}}`},
		"a bad field":     {method: "POST", path: "/api/v1/chat/messages", reqBody: `{"recipient_id":2,"colour":"red"}`, auth: true, status: 400, respBody: `{"error":{"code":"bad_request","message":"unknown field \"colour\""}}`},
		"an unknown path": {method: "GET", path: "/api/v1/chat/nowhere", auth: true, status: 404, respBody: `{"error":{"code":"not_found","message":"no such endpoint"}}`},
		"health":          {method: "GET", path: "/health", status: 200, respBody: `{"status":"healthy"}`},
		"a sync":          {method: "GET", path: "/api/v1/chat/sync?since=0&limit=2", auth: true, status: 200, respBody: syncPage},
		"a reset":         {method: "GET", path: "/api/v1/chat/sync?since=7", auth: true, status: 200, respBody: `{"changes":[],"next":3,"epoch":7,"has_more":false,"reset":true}`},
	} {
		t.Run(name, func(t *testing.T) {
			if err := x.check(t); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestCheckRefusesDrift: each answer here is one a drifted handler could
// give; the check must catch every one.
func TestCheckRefusesDrift(t *testing.T) {
	send := exchange{method: "POST", path: "/api/v1/chat/messages", reqBody: `{"recipient_id":2,"text_content":"hi"}`, auth: true, status: 200}
	with := func(x exchange, f func(*exchange)) exchange { f(&x); return x }
	for name, x := range map[string]exchange{
		"an undocumented field": with(send, func(x *exchange) { x.respBody = strings.Replace(message, `"status"`, `"colour":"red","status"`, 1) }),
		"a missing field":       with(send, func(x *exchange) { x.respBody = strings.Replace(message, `"sender_id":1,`, ``, 1) }),
		"a wrong type":          with(send, func(x *exchange) { x.respBody = strings.Replace(message, `"sender_id":1`, `"sender_id":"1"`, 1) }),
		"a bad uuid":            with(send, func(x *exchange) { x.respBody = strings.Replace(message, msgID, "42", 1) }),
		"a status not in the enum": with(send, func(x *exchange) {
			x.respBody = strings.Replace(message, `"status":"accepted"`, `"status":"lost"`, 1)
		}),
		"an undocumented status":  with(send, func(x *exchange) { x.status, x.respBody = 418, `{"error":{"code":"internal","message":"teapot"}}` }),
		"an error off its schema": with(send, func(x *exchange) { x.status, x.respBody = 422, `{"error":"no"}` }),
		"an unknown error code": with(send, func(x *exchange) {
			x.status, x.respBody = 422, `{"error":{"code":"nope","message":"x"}}`
		}),
		"a 429 without Retry-After": with(send, func(x *exchange) {
			x.status, x.respBody = 429, `{"error":{"code":"rate_limited","message":"slow down"}}`
		}),
		"a refused request accepted": with(send, func(x *exchange) { x.reqBody, x.respBody = `{"recipient_id":"two"}`, message }),
		"a sync change of an unknown kind": {method: "GET", path: "/api/v1/chat/sync", auth: true, status: 200,
			respBody: strings.Replace(syncPage, `"kind":"settingsChanged"`, `"kind":"starred"`, 1)},
		"a sync change whose data is another kind's": {method: "GET", path: "/api/v1/chat/sync", auth: true, status: 200,
			respBody: strings.Replace(syncPage, `"kind":"settingsChanged"`, `"kind":"newMessage"`, 1)},
		"a sync without reset":            {method: "GET", path: "/api/v1/chat/sync", auth: true, status: 200, respBody: `{"changes":[],"next":0,"epoch":7,"has_more":false}`},
		"a sync without its epoch":        {method: "GET", path: "/api/v1/chat/sync", auth: true, status: 200, respBody: `{"changes":[],"next":0,"has_more":false,"reset":false}`},
		"a negative since accepted":       {method: "GET", path: "/api/v1/chat/sync?since=-1", auth: true, status: 200, respBody: `{"changes":[],"next":0,"epoch":7,"has_more":false,"reset":false}`},
		"an undocumented route answered":  {method: "GET", path: "/api/v1/chat/secret", auth: true, status: 200, respBody: `{}`},
		"an undocumented method answered": {method: "PUT", path: "/api/v1/chat/messages", auth: true, status: 200, respBody: `{}`},
	} {
		t.Run(name, func(t *testing.T) {
			err := x.check(t)
			if err == nil {
				t.Fatalf("the check accepted %s %s answered %d %s", x.method, x.path, x.status, x.respBody)
			}
			t.Log(err)
		})
	}
}
