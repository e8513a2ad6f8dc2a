package api_test

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	lambdaevents "github.com/aws/aws-lambda-go/events"
	"github.com/gorilla/websocket"

	"github.com/parleychat/parley/api"
	"github.com/parleychat/parley/api/auth"
	"github.com/parleychat/parley/internal/chat"
	"github.com/parleychat/parley/internal/connstore/pgstore"
	"github.com/parleychat/parley/internal/contracttest"
	"github.com/parleychat/parley/internal/gateway"
	"github.com/parleychat/parley/internal/pipelinetest"
	"github.com/parleychat/parley/internal/wsproto"
)

// wsEnv serves the WebSocket routes through the local gateway over e's
// service, as chat dev does.
func wsEnv(t *testing.T, e *pipelinetest.Env) (dial func(user int64) *websocket.Conn) {
	t.Helper()
	_, dial = wsServer(t, e)
	return dial
}

// wsServer is wsEnv that also answers the endpoint's ws:// URL.
func wsServer(t *testing.T, e *pipelinetest.Env) (url string, dial func(user int64) *websocket.Conn) {
	t.Helper()
	url = wsGateway(t, e)
	return url, func(user int64) *websocket.Conn {
		t.Helper()
		return wsAccept(t, url, user)
	}
}

// wsAccept dials url as user and fails the test unless it is accepted.
func wsAccept(t *testing.T, url string, user int64) *websocket.Conn {
	t.Helper()
	return wsAcceptToken(t, url, wsToken(user))
}

// wsAcceptToken dials url with token and fails the test unless it is accepted.
func wsAcceptToken(t *testing.T, url, token string) *websocket.Conn {
	t.Helper()
	c, resp, err := wsDial(t, url, token)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	resp.Body.Close()
	t.Cleanup(func() { c.Close() })
	return c
}

// wsGateway starts a local gateway over e's service, configured as chat
// dev's, and returns its /ws URL.
func wsGateway(t *testing.T, e *pipelinetest.Env, opts ...auth.Option) string {
	t.Helper()
	return wsGatewayWith(t, e, wsRoutes(t, e, opts...))
}

// wsGatewayWith is wsGateway over routes built by the test.
func wsGatewayWith(t *testing.T, e *pipelinetest.Env, routes *api.WSRoutes) string {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	gw := gateway.New(gateway.Routes{Connect: routes.Connect, Disconnect: routes.Disconnect, Default: routes.Default},
		gateway.Config{ExpiredFrame: api.TokenExpiredFrame()}, quiet)
	srv := httptest.NewServer(gw)
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"
}

func wsRoutes(t *testing.T, e *pipelinetest.Env, opts ...auth.Option) *api.WSRoutes {
	t.Helper()
	verifier, err := auth.NewVerifier(pipelinetest.Secret, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return wsRoutesWith(e, verifier)
}

func wsRoutesWith(e *pipelinetest.Env, verifier *auth.Verifier) *api.WSRoutes {
	return api.NewWSRoutes(e.Service, verifier, pgstore.New(e.Pool), 0, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

func wsToken(user int64) string {
	return strings.TrimPrefix(pipelinetest.Auth(user).Get("Authorization"), "Bearer ")
}

// wsDial connects with a dialer that checks every frame both ways against
// the AsyncAPI document.
func wsDial(t testing.TB, url, token string) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	return contracttest.Dialer(t).Dial(url+"?token="+token, nil)
}

// roundTrip sends frame and returns the raw reply.
func roundTrip(t *testing.T, c *websocket.Conn, frame string) []byte {
	t.Helper()
	if err := c.WriteMessage(websocket.TextMessage, []byte(frame)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(pipelinetest.Wait))
	_, b, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("reply to %s: %v", frame, err)
	}
	return b
}

func TestWebSocketActions(t *testing.T) {
	t.Parallel()
	e := pipelinetest.New(t, pipelinetest.Options{})
	dial := wsEnv(t, e)
	alice := dial(1)
	conv := e.Conversation(t, 1, 2)

	t.Run("ping", func(t *testing.T) {
		if got := string(roundTrip(t, alice, `{"action":"ping"}`)); got != `{"type":"pong"}` {
			t.Fatalf("ping answered %s", got)
		}
	})

	t.Run("sendMessage is acknowledged and stored", func(t *testing.T) {
		url := "https://media.example.com/x?a=1&b=<2>"
		b := roundTrip(t, alice, `{"action":"sendMessage","data":{"conversationId":"`+conv+`","textContent":"`+url+`","clientMessageId":"ws-1"}}`)
		var ack wsproto.Acknowledgment
		if err := json.Unmarshal(b, &ack); err != nil || ack.Type != wsproto.TypeAcknowledgment || ack.ConversationID != conv || ack.ClientMessageID != "ws-1" {
			t.Fatalf("sendMessage answered %s (%v)", b, err)
		}
		msgs := e.AwaitMessages(t, 2, conv, 1)
		if msgs[0].ID != ack.MessageID || msgs[0].TextContent == nil || *msgs[0].TextContent != url {
			t.Fatalf("stored %+v, want message %s with text %q", msgs[0], ack.MessageID, url)
		}
		// The REST answer keeps the URL's characters as they are.
		resp := e.Do(t, 2, http.MethodGet, api.Prefix+"/conversations/"+conv+"/messages", nil)
		if !strings.Contains(string(resp.Body), url) || strings.Contains(string(resp.Body), `\u0026`) {
			t.Fatalf("REST escaped the text: %s", resp.Body)
		}
	})

	t.Run("markRead", func(t *testing.T) {
		bob := dial(2)
		m := e.AwaitMessages(t, 2, conv, 1)[0]
		b := roundTrip(t, bob, `{"action":"markRead","data":{"conversationId":"`+conv+`","messageIds":["`+m.ID+`"]}}`)
		want := `{"type":"readAcknowledgment","conversationId":"` + conv + `","read":["` + m.ID + `"],"ignored":[]}`
		if string(b) != want {
			t.Fatalf("markRead answered %s, want %s", b, want)
		}
	})

	t.Run("typing answers nothing", func(t *testing.T) {
		if err := alice.WriteMessage(websocket.TextMessage, []byte(`{"action":"typing","data":{"conversationId":"`+conv+`","isTyping":true}}`)); err != nil {
			t.Fatal(err)
		}
		// The next reply is the ping's: typing sent none.
		if got := string(roundTrip(t, alice, `{"action":"ping"}`)); got != `{"type":"pong"}` {
			t.Fatalf("after typing, got %s", got)
		}
	})
}

// TestWebSocketErrorsNameFieldsInCamelCase checks a WebSocket client reads
// its own field names in every error, from the decoder and the service.
func TestWebSocketErrorsNameFieldsInCamelCase(t *testing.T) {
	t.Parallel()
	e := pipelinetest.New(t, pipelinetest.Options{})
	alice := wsEnv(t, e)(1)
	for _, c := range []struct {
		name, frame   string
		code          chat.Code
		want, notWant string
	}{
		{"a snake_case field", `{"action":"sendMessage","data":{"recipient_id":2,"textContent":"hi"}}`, chat.CodeBadRequest, `"recipient_id" (fields are camelCase)`, ""},
		{"a field of the wrong type", `{"action":"sendMessage","data":{"recipientId":"2","textContent":"hi"}}`, chat.CodeBadRequest, `"recipientId"`, "recipient_id"},
		{"an unknown field", `{"action":"sendMessage","data":{"recipientId":2,"textContent":"hi","priority":1}}`, chat.CodeBadRequest, `unknown field "priority"`, ""},
		{"an initialism", `{"action":"sendMessage","data":{"recipientID":2,"textContent":"hi"}}`, chat.CodeBadRequest, `unknown field "recipientID"`, ""},
		{"no recipient", `{"action":"sendMessage","data":{"textContent":"hi"}}`, chat.CodeInvalid, "recipientId or conversationId is required", "_id"},
		{"empty text", `{"action":"sendMessage","data":{"recipientId":2,"textContent":" "}}`, chat.CodeInvalid, "textContent must not be empty", "text_content"},
		{"a non-UUID conversation", `{"action":"sendMessage","data":{"conversationId":"a&b","textContent":"hi"}}`, chat.CodeBadRequest, `conversationId "a&b" is not a UUID`, `\u0026`},
		{"typing without a conversation", `{"action":"typing","data":{"isTyping":true}}`, chat.CodeBadRequest, "conversationId is required", "conversation_id"},
		{"markRead without ids", `{"action":"markRead","data":{}}`, chat.CodeInvalid, "messageIds must not be empty", "message_ids"},
		{"no data", `{"action":"sendMessage"}`, chat.CodeBadRequest, "data is required", ""},
		{"data not an object", `{"action":"sendMessage","data":[1]}`, chat.CodeBadRequest, "data must be a JSON object", ""},
		{"an unknown action", `{"action":"shout"}`, chat.CodeBadRequest, `unknown action "shout" (known: sendMessage, ping, typing, markRead, editMessage, unsendMessage, setReaction, removeReaction)`, ""},
		{"not a frame", `{"act":"ping"}`, chat.CodeBadRequest, "frame must be a JSON object", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := roundTrip(t, alice, c.frame)
			var f wsproto.Error
			if err := json.Unmarshal(b, &f); err != nil || f.Type != wsproto.TypeError || f.Code != string(c.code) {
				t.Fatalf("answered %s, want an error frame with code %s", b, c.code)
			}
			if !strings.Contains(f.Message, c.want) || (c.notWant != "" && strings.Contains(string(b), c.notWant)) {
				t.Fatalf("answered %s; want it to say %s and not %q", b, c.want, c.notWant)
			}
		})
	}
}

// TestRESTErrorsNameFieldsInSnakeCase is the REST side of the same decoder.
func TestRESTErrorsNameFieldsInSnakeCase(t *testing.T) {
	t.Parallel()
	e := pipelinetest.New(t, pipelinetest.Options{})
	for body, want := range map[string]string{
		`{"recipientId":2,"text_content":"hi"}`:    `unknown field \"recipientId\" (fields are snake_case)`,
		`{"recipient_id":"2","text_content":"hi"}`: `field \"recipient_id\" must be int64`,
		`{"text_content":"hi"}`:                    "recipient_id or conversation_id is required",
	} {
		resp := e.Do(t, 1, http.MethodPost, api.Prefix+"/messages", body)
		if resp.Status/100 != 4 || !strings.Contains(string(resp.Body), want) {
			t.Errorf("%s answered %d %s, want it to say %s", body, resp.Status, resp.Body, want)
		}
	}
}

// TestWebSocketConnectionCap: a user holds at most MaxConnectionsPerUser
// sockets, counted over every gateway sharing the connection store; one
// more is refused with 429 and a reason, and leaves no record.
func TestWebSocketConnectionCap(t *testing.T) {
	t.Parallel()
	limits := chat.DefaultLimits()
	limits.Rates, limits.MaxConnectionsPerUser = chat.Rates{}, 2
	e := pipelinetest.New(t, pipelinetest.Options{Limits: limits})
	gwA, gwB := wsGateway(t, e), wsGateway(t, e)
	store := pgstore.New(e.Pool)
	held := func(user int64) int {
		t.Helper()
		cs, err := store.ByUser(t.Context(), user)
		if err != nil {
			t.Fatal(err)
		}
		return len(cs)
	}
	accept := func(url string, user int64) *websocket.Conn { return wsAccept(t, url, user) }
	refused := func(url string, user int64) {
		t.Helper()
		c, resp, err := wsDial(t, url, wsToken(user))
		if err == nil {
			c.Close()
			t.Fatalf("user %d: connection over the cap accepted", user)
		}
		if resp == nil {
			t.Fatalf("user %d: %v, want a 429 answer", user, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "30" ||
			!strings.Contains(string(body), "the limit is 2") || !strings.Contains(string(body), `"code":"rate_limited"`) {
			t.Fatalf("user %d over the cap: %d Retry-After %q %s", user, resp.StatusCode, resp.Header.Get("Retry-After"), body)
		}
	}

	first := accept(gwA, 1)
	accept(gwB, 1)
	refused(gwA, 1)
	refused(gwB, 1)
	if n := held(1); n != 2 {
		t.Fatalf("user 1 has %d records, want 2: a refused connection left one", n)
	}
	accept(gwA, 2) // another user is not affected

	// Closing one frees its place once its $disconnect has run.
	if err := first.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(pipelinetest.Wait); held(1) != 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("user 1 still has %d records after closing one", held(1))
		}
	}
	accept(gwB, 1)

	// Racing connects across both gateways: the cap gets in, and at most
	// one more when a racer stalls between taking its connect time and
	// recording it (see chat.Sessions.admit); never the rest.
	const racers = 8
	results := make(chan *websocket.Conn, racers)
	for i := range racers {
		go func() {
			c, resp, _ := wsDial(t, []string{gwA, gwB}[i%2], wsToken(3))
			if resp != nil {
				resp.Body.Close()
			}
			results <- c
		}()
	}
	accepted := 0
	for range racers {
		if c := <-results; c != nil {
			accepted++
			t.Cleanup(func() { c.Close() })
		}
	}
	if accepted < 2 || accepted > 3 || held(3) != accepted {
		t.Fatalf("%d of %d racing connections accepted, %d recorded; want 2 (3 at most) and as many recorded", accepted, racers, held(3))
	}
}

// shortToken is a token for user that expires in two to three seconds
// (exp has whole seconds): time for a connect and a frame before it does.
func shortToken(t *testing.T, user int64) (token string, validUntil time.Time) {
	t.Helper()
	const ttl = 3 * time.Second
	now := time.Now()
	exp := now.Add(ttl)
	token, err := auth.Issue(pipelinetest.Secret, user, ttl, now)
	if err != nil {
		t.Fatal(err)
	}
	return token, time.Unix(exp.Unix(), 0) // exp has whole seconds
}

// TestWebSocketClosedWhenTokenExpires: an open socket does not outlive its
// token. It is told why, with the error frame, then closed with 4001.
func TestWebSocketClosedWhenTokenExpires(t *testing.T) {
	t.Parallel()
	e := pipelinetest.New(t, pipelinetest.Options{})
	url := wsGateway(t, e, auth.WithLeeway(0))
	token, _ := shortToken(t, 1)
	c, resp, err := wsDial(t, url, token)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	resp.Body.Close()
	defer c.Close()
	awaitExpiryClose(t, c)
}

// awaitExpiryClose reads c until it is closed, which must be with the
// token-expiry code right after the expiry error frame.
func awaitExpiryClose(t *testing.T, c *websocket.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(pipelinetest.Wait))
	var frames []string
	for {
		_, b, err := c.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != wsproto.CloseTokenExpired || ce.Text != wsproto.CloseTokenExpiredReason {
				t.Fatalf("after frames %q: %v, want close %d", frames, err, wsproto.CloseTokenExpired)
			}
			break
		}
		frames = append(frames, string(b))
	}
	want := string(api.TokenExpiredFrame())
	if len(frames) == 0 || frames[len(frames)-1] != want {
		t.Fatalf("frames before the close %q, want the last to be %s", frames, want)
	}
	var f wsproto.Error
	if err := json.Unmarshal([]byte(want), &f); err != nil || f.Code != string(chat.CodeUnauthenticated) || !strings.Contains(f.Message, "fresh token") {
		t.Fatalf("expiry frame %s (%v)", want, err)
	}
}

// TestWebSocketFramesRefusedAfterTokenExpiry is the AWS path, where no
// timer closes the socket: $default refuses every frame once the token
// has expired, with the same error frame.
func TestWebSocketFramesRefusedAfterTokenExpiry(t *testing.T) {
	t.Parallel()
	e := pipelinetest.New(t, pipelinetest.Options{})
	routes := wsRoutes(t, e, auth.WithLeeway(0))
	ctx := t.Context()
	token, validUntil := shortToken(t, 1)
	req := lambdaevents.APIGatewayWebsocketProxyRequest{
		QueryStringParameters: map[string]string{"token": token},
		RequestContext:        lambdaevents.APIGatewayWebsocketProxyRequestContext{ConnectionID: "expiring-conn=", APIID: "api"},
	}
	if resp, err := routes.Connect(ctx, req); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("connect: %+v %v", resp, err)
	}
	req.Body = `{"action":"ping"}`
	if resp, _ := routes.Default(ctx, req); resp.Body != `{"type":"pong"}` {
		t.Fatalf("ping before expiry answered %s", resp.Body)
	}
	// Waits for a moment of the clock, not for another goroutine.
	time.Sleep(time.Until(validUntil))
	resp, err := routes.Default(ctx, req)
	var f wsproto.Error
	if err != nil || json.Unmarshal([]byte(resp.Body), &f) != nil || f.Code != string(chat.CodeUnauthenticated) ||
		f.Message != chat.ErrTokenExpired().Message {
		t.Fatalf("ping after expiry answered %s (%v)", resp.Body, err)
	}
}

// TestWebSocketConnectFeedMode: ?feed=1 records the connection in feed
// mode, no parameter in the default one, and any other value is refused
// with 400 before anything is recorded (after a bad token's 401).
func TestWebSocketConnectFeedMode(t *testing.T) {
	t.Parallel()
	e := pipelinetest.New(t, pipelinetest.Options{})
	routes := wsRoutes(t, e)
	store := pgstore.New(e.Pool)
	ctx := t.Context()
	connect := func(connID string, params map[string]string) lambdaevents.APIGatewayProxyResponse {
		t.Helper()
		req := lambdaevents.APIGatewayWebsocketProxyRequest{
			QueryStringParameters: params,
			RequestContext:        lambdaevents.APIGatewayWebsocketProxyRequestContext{ConnectionID: connID, APIID: "api"},
		}
		resp, err := routes.Connect(ctx, req)
		if err != nil {
			t.Fatalf("connect %s: %v", connID, err)
		}
		return resp
	}
	recorded := func(connID string, want bool) {
		t.Helper()
		c, err := store.Get(ctx, connID)
		if err != nil {
			t.Fatalf("Get %s: %v", connID, err)
		}
		if c.Feed != want {
			t.Errorf("%s recorded with Feed %v, want %v", connID, c.Feed, want)
		}
	}

	for _, tc := range []struct {
		connID string
		params map[string]string
		feed   bool
	}{
		{"feed-one-conn=", map[string]string{api.FeedParam: "1"}, true},
		{"feed-true-con=", map[string]string{api.FeedParam: "true"}, true},
		{"feed-none-con=", map[string]string{}, false},
		{"feed-empty-cn=", map[string]string{api.FeedParam: ""}, false},
		{"feed-zero-con=", map[string]string{api.FeedParam: "0"}, false},
	} {
		tc.params["token"] = wsToken(1)
		if resp := connect(tc.connID, tc.params); resp.StatusCode != http.StatusOK {
			t.Fatalf("connect %s with %v: %d %s", tc.connID, tc.params, resp.StatusCode, resp.Body)
		}
		recorded(tc.connID, tc.feed)
	}

	before := e.Count(t, "ws_connections")
	resp := connect("feed-bad-conn=", map[string]string{"token": wsToken(2), api.FeedParam: "yes"})
	var body struct{ Message, Code string }
	if resp.StatusCode != http.StatusBadRequest || json.Unmarshal([]byte(resp.Body), &body) != nil ||
		body.Code != string(chat.CodeBadRequest) || body.Message != "feed must be 1 or 0" {
		t.Fatalf("?feed=yes answered %d %s, want 400 bad_request naming the values", resp.StatusCode, resp.Body)
	}
	// A bad token is still a 401, whatever the mode asked.
	if resp := connect("feed-bad-tok1=", map[string]string{"token": "forged", api.FeedParam: "yes"}); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a forged token with ?feed=yes answered %d %s, want 401", resp.StatusCode, resp.Body)
	}
	if n := e.Count(t, "ws_connections"); n != before {
		t.Fatalf("a refused connection was recorded (%d records, were %d)", n, before)
	}

	// Through the local gateway, as a client dials it.
	url := wsGateway(t, e)
	c, httpResp, err := contracttest.Dialer(t).Dial(url+"?token="+wsToken(3)+"&"+api.FeedParam+"=1", nil)
	if err != nil {
		t.Fatalf("dial with ?feed=1: %v", err)
	}
	httpResp.Body.Close()
	defer c.Close()
	conns, err := store.ByUser(ctx, 3)
	if err != nil || len(conns) != 1 || !conns[0].Feed {
		t.Fatalf("user 3's records after dialing with ?feed=1: %+v %v, want one in feed mode", conns, err)
	}
}
