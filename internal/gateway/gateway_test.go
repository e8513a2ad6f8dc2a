package gateway

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	lambdaevents "github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi/types"
	"github.com/gorilla/websocket"
)

// waitFor bounds every wait so that a broken gateway fails the test instead
// of hanging it; it is not a speed requirement.
const waitFor = 5 * time.Second

type event = lambdaevents.APIGatewayWebsocketProxyRequest
type response = lambdaevents.APIGatewayProxyResponse

// recorder captures every route invocation.
type recorder struct {
	connects    chan event
	messages    chan event
	disconnects chan event
	// disconnectCtxErr holds what ctx.Err() was inside $disconnect.
	disconnectCtxErr chan error
}

func newRecorder() *recorder {
	return &recorder{
		connects:         make(chan event, 1024),
		messages:         make(chan event, 1024),
		disconnects:      make(chan event, 1024),
		disconnectCtxErr: make(chan error, 1024),
	}
}

// routes records each call; def, when set, answers $default.
func (rec *recorder) routes(def Handler) Routes {
	return Routes{
		Connect: func(_ context.Context, req event) (response, error) {
			rec.connects <- req
			return response{StatusCode: http.StatusOK}, nil
		},
		Disconnect: func(ctx context.Context, req event) (response, error) {
			rec.disconnectCtxErr <- ctx.Err()
			rec.disconnects <- req
			return response{StatusCode: http.StatusOK}, nil
		},
		Default: func(ctx context.Context, req event) (response, error) {
			rec.messages <- req
			if def != nil {
				return def(ctx, req)
			}
			return response{StatusCode: http.StatusOK}, nil
		},
	}
}

func echo(_ context.Context, req event) (response, error) {
	return response{StatusCode: http.StatusOK, Body: "echo:" + req.Body}, nil
}

type harness struct {
	g     *Gateway
	wsURL string
	admin string
	api   *apigatewaymanagementapi.Client
}

// start serves g on two loopback listeners, the WebSocket endpoint and the
// management API, and shuts everything down at the end of the test.
func start(t *testing.T, g *Gateway) *harness {
	t.Helper()
	pub := httptest.NewServer(g)
	admin := httptest.NewServer(g.AdminHandler())
	t.Cleanup(pub.Close)
	t.Cleanup(admin.Close)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		if err := g.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return &harness{
		g:     g,
		wsURL: "ws" + strings.TrimPrefix(pub.URL, "http") + "/ws",
		admin: admin.URL,
		api:   newAPIClient(admin.URL),
	}
}

// testSecret is the management API's secret in tests that do not set one.
const testSecret = "test-management-secret"

func newGateway(routes Routes, cfg Config) *Gateway {
	if cfg.AdminSecret == "" {
		cfg.AdminSecret = testSecret
	}
	return New(routes, cfg, slog.New(slog.DiscardHandler))
}

func newAPIClient(endpoint string) *apigatewaymanagementapi.Client {
	return newAPIClientWith(endpoint, WithSecret(testSecret))
}

func newAPIClientWith(endpoint string, opts ...func(*apigatewaymanagementapi.Options)) *apigatewaymanagementapi.Client {
	return apigatewaymanagementapi.New(apigatewaymanagementapi.Options{
		Region:           "us-east-1",
		Credentials:      credentials.NewStaticCredentialsProvider("local", "local", ""),
		BaseEndpoint:     aws.String(endpoint),
		RetryMaxAttempts: 1,
	}, opts...)
}

func (h *harness) dial(t *testing.T, query string, hdr http.Header) *websocket.Conn {
	t.Helper()
	ws, resp, err := websocket.DefaultDialer.Dial(h.wsURL+query, hdr)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial: %v (status %d)", err, status)
	}
	t.Cleanup(func() { ws.Close() })
	return ws
}

// dialID dials and returns the connection id that $connect saw.
func (h *harness) dialID(t *testing.T, rec *recorder) (*websocket.Conn, string) {
	t.Helper()
	ws := h.dial(t, "", nil)
	return ws, recv(t, rec.connects).RequestContext.ConnectionID
}

func recv[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitFor):
		t.Fatal("timed out waiting")
		var zero T
		return zero
	}
}

func readText(t *testing.T, ws *websocket.Conn) string {
	t.Helper()
	_ = ws.SetReadDeadline(time.Now().Add(waitFor))
	mt, data, err := ws.ReadMessage()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if mt != websocket.TextMessage {
		t.Fatalf("frame type %d, want text", mt)
	}
	return string(data)
}

// readClose reads until the server closes and returns the close code.
func readClose(t *testing.T, ws *websocket.Conn) int {
	t.Helper()
	_ = ws.SetReadDeadline(time.Now().Add(waitFor))
	for {
		_, _, err := ws.ReadMessage()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) {
			t.Fatalf("read: %v, want a close frame", err)
		}
		return ce.Code
	}
}

func send(t *testing.T, ws *websocket.Conn, msg string) {
	t.Helper()
	if err := ws.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// shutdown stops the gateway now, so that every $disconnect has run.
func (h *harness) shutdown(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := h.g.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}

func post(t *testing.T, h *harness, id, data string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	_, err := h.api.PostToConnection(ctx, &apigatewaymanagementapi.PostToConnectionInput{
		ConnectionId: aws.String(id),
		Data:         []byte(data),
	})
	return err
}

func isGone(err error) bool {
	var gone *types.GoneException
	return errors.As(err, &gone)
}

func TestConnectRefusedBeforeUpgrade(t *testing.T) {
	tests := []struct {
		name       string
		connect    Handler
		wantStatus int
		wantBody   string
	}{
		{
			name: "handler status",
			connect: func(context.Context, event) (response, error) {
				return response{StatusCode: http.StatusUnauthorized, Body: `{"message":"Unauthorized"}`}, nil
			},
			wantStatus: http.StatusUnauthorized,
			wantBody:   `{"message":"Unauthorized"}`,
		},
		{
			name: "handler error",
			connect: func(context.Context, event) (response, error) {
				return response{}, errors.New("token store down")
			},
			wantStatus: http.StatusInternalServerError,
			wantBody:   `{"message":"Internal server error"}`,
		},
		{
			name: "handler panic",
			connect: func(context.Context, event) (response, error) {
				panic("boom")
			},
			wantStatus: http.StatusInternalServerError,
			wantBody:   `{"message":"Internal server error"}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := newRecorder()
			routes := rec.routes(nil)
			routes.Connect = tt.connect
			h := start(t, newGateway(routes, Config{}))

			ws, resp, err := websocket.DefaultDialer.Dial(h.wsURL+"?token=bad", nil)
			if err == nil {
				ws.Close()
				t.Fatal("dial succeeded, want refusal")
			}
			if !errors.Is(err, websocket.ErrBadHandshake) {
				t.Fatalf("dial: %v, want bad handshake", err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if body, _ := io.ReadAll(resp.Body); string(body) != tt.wantBody {
				t.Errorf("body %q, want %q", body, tt.wantBody)
			}
			if n := h.g.Len(); n != 0 {
				t.Errorf("Len() = %d, want 0", n)
			}
			h.shutdown(t)
			if n := len(rec.disconnects); n != 0 {
				t.Errorf("$disconnect ran %d times for a refused connection", n)
			}
		})
	}
}

func TestConnectEvent(t *testing.T) {
	rec := newRecorder()
	routes := rec.routes(nil)
	routes.Connect = func(_ context.Context, req event) (response, error) {
		rec.connects <- req
		return response{StatusCode: http.StatusOK, Headers: map[string]string{"Sec-WebSocket-Protocol": "chat.v1"}}, nil
	}
	h := start(t, newGateway(routes, Config{DomainName: "chat.example.test", APIID: "gateway-7"}))

	before := time.Now()
	dialer := websocket.Dialer{Subprotocols: []string{"chat.v1"}}
	ws, _, err := dialer.Dial(h.wsURL+"?token=abc&room=1&room=2", http.Header{
		"User-Agent":       {"parley-test/1.0"},
		"X-Client-Version": {"7"},
	})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer ws.Close()
	after := time.Now()

	if got := ws.Subprotocol(); got != "chat.v1" {
		t.Errorf("subprotocol %q, want chat.v1 from the $connect response", got)
	}
	ev := recv(t, rec.connects)
	rc := ev.RequestContext
	if rc.RouteKey != "$connect" || rc.EventType != "CONNECT" || rc.MessageDirection != "IN" {
		t.Errorf("route %q event %q direction %q", rc.RouteKey, rc.EventType, rc.MessageDirection)
	}
	if id := rc.ConnectionID; len(id) != 16 || !strings.HasSuffix(id, "=") {
		t.Errorf("connection id %q is not shaped like API Gateway's", id)
	} else if b, err := base64.StdEncoding.DecodeString(id); err != nil || len(b) != 11 {
		t.Errorf("connection id %q: %d bytes, %v", id, len(b), err)
	}
	if rc.ConnectedAt < before.UnixMilli() || rc.ConnectedAt > after.UnixMilli() {
		t.Errorf("connectedAt %d outside [%d, %d]", rc.ConnectedAt, before.UnixMilli(), after.UnixMilli())
	}
	if rc.RequestTimeEpoch < before.UnixMilli() || rc.RequestTimeEpoch > after.UnixMilli() {
		t.Errorf("requestTimeEpoch %d outside the dial", rc.RequestTimeEpoch)
	}
	if _, err := time.Parse(requestTimeLayout, rc.RequestTime); err != nil {
		t.Errorf("requestTime %q: %v", rc.RequestTime, err)
	}
	if rc.Stage != "local" || rc.DomainName != "chat.example.test" || rc.RequestID == "" || rc.APIID != "gateway-7" {
		t.Errorf("stage %q domain %q request id %q api id %q", rc.Stage, rc.DomainName, rc.RequestID, rc.APIID)
	}
	if rc.Identity.SourceIP != "127.0.0.1" || rc.Identity.UserAgent != "parley-test/1.0" {
		t.Errorf("identity %+v", rc.Identity)
	}
	if ev.QueryStringParameters["token"] != "abc" || ev.QueryStringParameters["room"] != "2" {
		t.Errorf("query %v", ev.QueryStringParameters)
	}
	if got := ev.MultiValueQueryStringParameters["room"]; len(got) != 2 || got[0] != "1" || got[1] != "2" {
		t.Errorf("multi-value query room = %v", got)
	}
	if ev.Headers["X-Client-Version"] != "7" || ev.Headers["Sec-WebSocket-Key"] == "" || ev.Headers["Host"] == "" {
		t.Errorf("headers %v", ev.Headers)
	}
	if got := ev.MultiValueHeaders["Sec-WebSocket-Protocol"]; len(got) != 1 || got[0] != "chat.v1" {
		t.Errorf("multi-value Sec-WebSocket-Protocol = %v", got)
	}
	if n := h.g.Len(); n != 1 {
		t.Errorf("Len() = %d, want 1", n)
	}
}

func TestNonUpgradeRequestRefused(t *testing.T) {
	rec := newRecorder()
	h := start(t, newGateway(rec.routes(nil), Config{}))
	resp, err := http.Get("http" + strings.TrimPrefix(h.wsURL, "ws"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUpgradeRequired {
		t.Errorf("status %d, want 426", resp.StatusCode)
	}
	if len(rec.connects) != 0 {
		t.Error("$connect ran for a plain HTTP request")
	}
}

func TestMessagesInOrderWithRouteResponse(t *testing.T) {
	rec := newRecorder()
	h := start(t, newGateway(rec.routes(echo), Config{}))
	ws, id := h.dialID(t, rec)

	const n = 100
	for i := range n {
		send(t, ws, fmt.Sprintf("m%d", i))
	}
	seen := make(map[string]bool)
	for i := range n {
		if got, want := readText(t, ws), fmt.Sprintf("echo:m%d", i); got != want {
			t.Fatalf("response %d = %q, want %q", i, got, want)
		}
		ev := recv(t, rec.messages)
		rc := ev.RequestContext
		if ev.Body != fmt.Sprintf("m%d", i) || rc.ConnectionID != id ||
			rc.RouteKey != "$default" || rc.EventType != "MESSAGE" {
			t.Fatalf("event %d: body %q connection %q route %q type %q", i, ev.Body, rc.ConnectionID, rc.RouteKey, rc.EventType)
		}
		mid, ok := rc.MessageID.(string)
		if !ok || mid == "" || seen[mid] {
			t.Fatalf("event %d: message id %v missing or repeated", i, rc.MessageID)
		}
		seen[mid] = true
	}
}

func TestSlowHandlerDoesNotBlockOtherConnections(t *testing.T) {
	release := make(chan struct{})
	rec := newRecorder()
	h := start(t, newGateway(rec.routes(func(ctx context.Context, req event) (response, error) {
		if req.Body == "block" {
			select {
			case <-release:
			case <-ctx.Done():
				return response{}, ctx.Err()
			}
		}
		return echo(ctx, req)
	}), Config{}))
	a, _ := h.dialID(t, rec)
	b, _ := h.dialID(t, rec)

	send(t, a, "block")
	recv(t, rec.messages) // a's handler is now running
	send(t, b, "hi")
	if got := readText(t, b); got != "echo:hi" {
		t.Fatalf("b got %q", got)
	}
	close(release)
	if got := readText(t, a); got != "echo:block" {
		t.Fatalf("a got %q", got)
	}
}

func TestDefaultErrorSendsInternalServerErrorFrame(t *testing.T) {
	rec := newRecorder()
	h := start(t, newGateway(rec.routes(func(ctx context.Context, req event) (response, error) {
		if req.Body == "fail" {
			return response{}, errors.New("database unavailable")
		}
		return echo(ctx, req)
	}), Config{}))
	ws, id := h.dialID(t, rec)

	send(t, ws, "fail")
	var frame struct {
		Message      string `json:"message"`
		ConnectionID string `json:"connectionId"`
		RequestID    string `json:"requestId"`
	}
	if err := json.Unmarshal([]byte(readText(t, ws)), &frame); err != nil {
		t.Fatal(err)
	}
	ev := recv(t, rec.messages)
	if frame.Message != "Internal server error" || frame.ConnectionID != id || frame.RequestID != ev.RequestContext.RequestID {
		t.Errorf("frame %+v, want the error for request %q", frame, ev.RequestContext.RequestID)
	}
	send(t, ws, "still here")
	if got := readText(t, ws); got != "echo:still here" {
		t.Errorf("after an error got %q", got)
	}
}

func TestNilRoutes(t *testing.T) {
	h := start(t, newGateway(Routes{}, Config{}))
	ws := h.dial(t, "", nil)
	send(t, ws, "hello")
	var frame struct {
		Message      string `json:"message"`
		ConnectionID string `json:"connectionId"`
	}
	if err := json.Unmarshal([]byte(readText(t, ws)), &frame); err != nil {
		t.Fatal(err)
	}
	if frame.Message != "Forbidden" || frame.ConnectionID == "" {
		t.Errorf("frame %+v, want API Gateway's answer when no route matches", frame)
	}
	h.shutdown(t)
}

func TestOversizeMessageCloses1009(t *testing.T) {
	rec := newRecorder()
	h := start(t, newGateway(rec.routes(echo), Config{MaxMessageBytes: 1024}))
	ws, id := h.dialID(t, rec)

	atLimit := strings.Repeat("a", 1024-len("echo:"))
	send(t, ws, atLimit)
	if got := readText(t, ws); got != "echo:"+atLimit {
		t.Fatal("a message at the limit was not answered")
	}
	send(t, ws, strings.Repeat("b", 2048))
	if code := readClose(t, ws); code != websocket.CloseMessageTooBig {
		t.Errorf("close code %d, want 1009", code)
	}
	ws.Close() // as clients do once the close handshake is over
	ev := recv(t, rec.disconnects)
	rc := ev.RequestContext
	if rc.ConnectionID != id || rc.RouteKey != "$disconnect" || rc.EventType != "DISCONNECT" || rc.DisconnectStatusCode != 1009 {
		t.Errorf("disconnect %+v", rc)
	}
	h.shutdown(t)
	if n := len(rec.disconnects); n != 0 {
		t.Errorf("$disconnect ran %d more times", n)
	}
}

func TestBinaryFrameCloses1003(t *testing.T) {
	rec := newRecorder()
	h := start(t, newGateway(rec.routes(echo), Config{}))
	ws, id := h.dialID(t, rec)
	if err := ws.WriteMessage(websocket.BinaryMessage, []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	if code := readClose(t, ws); code != websocket.CloseUnsupportedData {
		t.Errorf("close code %d, want 1003", code)
	}
	if got := recv(t, rec.disconnects).RequestContext.ConnectionID; got != id {
		t.Errorf("disconnect for %q, want %q", got, id)
	}
	if len(rec.messages) != 0 {
		t.Error("$default ran for a binary frame")
	}
}

func TestClientCloseRunsDisconnectOnce(t *testing.T) {
	rec := newRecorder()
	h := start(t, newGateway(rec.routes(nil), Config{}))
	ws, id := h.dialID(t, rec)
	msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye")
	if err := ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(waitFor)); err != nil {
		t.Fatal(err)
	}
	if code := readClose(t, ws); code != websocket.CloseNormalClosure {
		t.Errorf("echoed close code %d, want 1000", code)
	}
	rc := recv(t, rec.disconnects).RequestContext
	if rc.ConnectionID != id || rc.DisconnectStatusCode != 1000 || rc.DisconnectReason == nil || *rc.DisconnectReason != "bye" {
		t.Errorf("disconnect %+v", rc)
	}
	if err := recv(t, rec.disconnectCtxErr); err != nil {
		t.Errorf("$disconnect ran with a dead context: %v", err)
	}
	h.shutdown(t)
	if n := len(rec.disconnects); n != 0 {
		t.Errorf("$disconnect ran %d more times", n)
	}
}

func TestPostToConnectionReachesTheRightClient(t *testing.T) {
	rec := newRecorder()
	h := start(t, newGateway(rec.routes(nil), Config{}))
	a, idA := h.dialID(t, rec)
	b, idB := h.dialID(t, rec)

	if err := post(t, h, idB, `{"type":"newMessage"}`); err != nil {
		t.Fatalf("post to b: %v", err)
	}
	if got := readText(t, b); got != `{"type":"newMessage"}` {
		t.Errorf("b got %q", got)
	}
	if err := post(t, h, idA, "for a"); err != nil {
		t.Fatalf("post to a: %v", err)
	}
	if got := readText(t, a); got != "for a" {
		t.Errorf("a got %q first, want only its own message", got)
	}
}

func TestConnectionIDWithPathCharacters(t *testing.T) {
	rec := newRecorder()
	g := newGateway(rec.routes(nil), Config{})
	// Base64 ids may hold "/" and "+": the SDK escapes them in the path.
	const id = "L0S/9cO+vHcC/hw="
	var calls atomic.Int32
	g.newID = func() string {
		if calls.Add(1) == 1 {
			return id
		}
		return randomID()
	}
	h := start(t, g)
	ws, got := h.dialID(t, rec)
	if got != id {
		t.Fatalf("connection id %q, want %q", got, id)
	}
	if err := post(t, h, id, "hello"); err != nil {
		t.Fatalf("post: %v", err)
	}
	if msg := readText(t, ws); msg != "hello" {
		t.Errorf("got %q", msg)
	}
	ctx := context.Background()
	if _, err := h.api.GetConnection(ctx, &apigatewaymanagementapi.GetConnectionInput{ConnectionId: aws.String(id)}); err != nil {
		t.Errorf("get: %v", err)
	}
	if _, err := h.api.DeleteConnection(ctx, &apigatewaymanagementapi.DeleteConnectionInput{ConnectionId: aws.String(id)}); err != nil {
		t.Errorf("delete: %v", err)
	}
	readClose(t, ws)
}

func TestUnknownConnectionIsGone(t *testing.T) {
	h := start(t, newGateway(newRecorder().routes(nil), Config{}))
	ctx := context.Background()
	id := aws.String("AAAAAAAAAAAAAAA=")

	if err := post(t, h, *id, "x"); !isGone(err) {
		t.Errorf("post: %v, want GoneException", err)
	}
	if _, err := h.api.GetConnection(ctx, &apigatewaymanagementapi.GetConnectionInput{ConnectionId: id}); !isGone(err) {
		t.Errorf("get: %v, want GoneException", err)
	}
	if _, err := h.api.DeleteConnection(ctx, &apigatewaymanagementapi.DeleteConnectionInput{ConnectionId: id}); !isGone(err) {
		t.Errorf("delete: %v, want GoneException", err)
	}

	req, err := http.NewRequest(http.MethodPost, h.admin+"/@connections/AAAAAAAAAAAAAAA%3D", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(SecretHeader, testSecret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusGone || resp.Header.Get("X-Amzn-ErrorType") != "GoneException" || string(body) != `{"message":"Gone"}` {
		t.Errorf("raw answer %d %q %s", resp.StatusCode, resp.Header.Get("X-Amzn-ErrorType"), body)
	}
}

func TestPostPayloadTooLarge(t *testing.T) {
	rec := newRecorder()
	h := start(t, newGateway(rec.routes(nil), Config{MaxMessageBytes: 1024}))
	_, id := h.dialID(t, rec)
	err := post(t, h, id, strings.Repeat("x", 1025))
	var tooLarge *types.PayloadTooLargeException
	if !errors.As(err, &tooLarge) {
		t.Errorf("post: %v, want PayloadTooLargeException", err)
	}
	if err := post(t, h, id, strings.Repeat("x", 1024)); err != nil {
		t.Errorf("post at the limit: %v", err)
	}
}

func TestGetConnection(t *testing.T) {
	rec := newRecorder()
	h := start(t, newGateway(rec.routes(echo), Config{}))
	before := time.Now().Truncate(time.Millisecond)
	ws := h.dial(t, "", http.Header{"User-Agent": {"parley-test/1.0"}})
	id := recv(t, rec.connects).RequestContext.ConnectionID
	send(t, ws, "hi")
	readText(t, ws)

	out, err := h.api.GetConnection(context.Background(), &apigatewaymanagementapi.GetConnectionInput{ConnectionId: aws.String(id)})
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if out.ConnectedAt == nil || out.ConnectedAt.Before(before) || out.ConnectedAt.After(time.Now()) {
		t.Errorf("connectedAt %v, want after %v", out.ConnectedAt, before)
	}
	if out.LastActiveAt == nil || out.LastActiveAt.Before(*out.ConnectedAt) {
		t.Errorf("lastActiveAt %v before connectedAt %v", out.LastActiveAt, out.ConnectedAt)
	}
	if out.Identity == nil || aws.ToString(out.Identity.SourceIp) != "127.0.0.1" || aws.ToString(out.Identity.UserAgent) != "parley-test/1.0" {
		t.Errorf("identity %+v", out.Identity)
	}
}

func TestDeleteConnection(t *testing.T) {
	rec := newRecorder()
	h := start(t, newGateway(rec.routes(nil), Config{}))
	ws, id := h.dialID(t, rec)

	// A post just before the delete is still delivered, then the close.
	if err := post(t, h, id, "last words"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.api.DeleteConnection(context.Background(), &apigatewaymanagementapi.DeleteConnectionInput{ConnectionId: aws.String(id)}); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if got := readText(t, ws); got != "last words" {
		t.Errorf("got %q before the close", got)
	}
	if code := readClose(t, ws); code != websocket.CloseNormalClosure {
		t.Errorf("close code %d, want 1000", code)
	}
	if got := recv(t, rec.disconnects).RequestContext.ConnectionID; got != id {
		t.Errorf("disconnect for %q", got)
	}
	if err := post(t, h, id, "too late"); !isGone(err) {
		t.Errorf("post after delete: %v, want GoneException", err)
	}
	if n := h.g.Len(); n != 0 {
		t.Errorf("Len() = %d", n)
	}
	h.shutdown(t)
	if n := len(rec.disconnects); n != 0 {
		t.Errorf("$disconnect ran %d more times", n)
	}
}

func TestIdleTimeout(t *testing.T) {
	rec := newRecorder()
	h := start(t, newGateway(rec.routes(nil), Config{IdleTimeout: 200 * time.Millisecond}))
	ws, id := h.dialID(t, rec)

	// Pings are control frames: they do not keep the connection alive.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(time.Second)) != nil {
					return
				}
			}
		}
	}()
	if code := readClose(t, ws); code != websocket.CloseGoingAway {
		t.Errorf("close code %d, want 1001", code)
	}
	rc := recv(t, rec.disconnects).RequestContext
	if rc.ConnectionID != id || rc.DisconnectStatusCode != websocket.CloseGoingAway {
		t.Errorf("disconnect %+v", rc)
	}
}

func TestMaxConnectionAge(t *testing.T) {
	rec := newRecorder()
	h := start(t, newGateway(rec.routes(echo), Config{MaxConnectionAge: 200 * time.Millisecond}))
	began := time.Now()
	ws, id := h.dialID(t, rec)

	// An active client is closed all the same.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if ws.WriteMessage(websocket.TextMessage, []byte("tick")) != nil {
					return
				}
			}
		}
	}()
	if code := readClose(t, ws); code != websocket.CloseGoingAway {
		t.Errorf("close code %d, want 1001", code)
	}
	if age := time.Since(began); age < 200*time.Millisecond {
		t.Errorf("closed after %v, before the maximum age", age)
	}
	if got := recv(t, rec.disconnects).RequestContext.ConnectionID; got != id {
		t.Errorf("disconnect for %q", got)
	}
}

func TestSlowReaderIsDropped(t *testing.T) {
	rec := newRecorder()
	h := start(t, newGateway(rec.routes(nil), Config{SendBuffer: 4}))
	// A client that never reads, with a small receive window.
	dialer := websocket.Dialer{NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err == nil {
			_ = c.(*net.TCPConn).SetReadBuffer(4 << 10)
		}
		return c, err
	}}
	ws, _, err := dialer.Dial(h.wsURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	id := recv(t, rec.connects).RequestContext.ConnectionID

	// Memory stays bounded: the gateway gives up once the socket buffers
	// and the 4-message queue are full, well before this many posts.
	const maxPosts = 1000
	payload := strings.Repeat("x", 64<<10)
	accepted := 0
	for ; accepted < maxPosts; accepted++ {
		err := post(t, h, id, payload)
		if isGone(err) {
			break
		}
		if err != nil {
			t.Fatalf("post %d: %v", accepted, err)
		}
	}
	if accepted == maxPosts {
		t.Fatalf("%d posts of 64 KiB queued for a client that never reads", maxPosts)
	}
	t.Logf("dropped after %d posts", accepted)
	rc := recv(t, rec.disconnects).RequestContext
	if rc.ConnectionID != id || rc.DisconnectStatusCode != websocket.ClosePolicyViolation {
		t.Errorf("disconnect %+v", rc)
	}
	if err := post(t, h, id, "again"); !isGone(err) {
		t.Errorf("later post: %v, want GoneException", err)
	}
	if n := h.g.Len(); n != 0 {
		t.Errorf("Len() = %d", n)
	}
}

func TestPingDropsDeadPeer(t *testing.T) {
	rec := newRecorder()
	h := start(t, newGateway(rec.routes(nil), Config{PingInterval: 100 * time.Millisecond}))
	alive, aliveID := h.dialID(t, rec)
	dead, deadID := h.dialID(t, rec)
	dead.SetPingHandler(func(string) error { return nil }) // never answers
	for _, ws := range []*websocket.Conn{alive, dead} {
		go func() {
			for {
				if _, _, err := ws.ReadMessage(); err != nil {
					return
				}
			}
		}()
	}
	rc := recv(t, rec.disconnects).RequestContext
	if rc.ConnectionID != deadID || rc.DisconnectReason == nil || *rc.DisconnectReason != "Ping timeout" {
		t.Errorf("disconnect %+v, want %q for a ping timeout", rc, deadID)
	}
	if h.g.lookup(aliveID) == nil {
		t.Error("the client that answers pings was dropped too")
	}
}

func TestShutdown(t *testing.T) {
	rec := newRecorder()
	h := start(t, newGateway(rec.routes(nil), Config{}))
	const n = 3
	codes := make(chan int, n)
	ids := make(map[string]bool)
	for range n {
		ws, id := h.dialID(t, rec)
		ids[id] = true
		go func() {
			for {
				_, _, err := ws.ReadMessage()
				var ce *websocket.CloseError
				if errors.As(err, &ce) {
					codes <- ce.Code
					return
				}
				if err != nil {
					codes <- -1
					return
				}
			}
		}()
	}
	h.shutdown(t)
	// Shutdown returned, so every $disconnect has already run.
	if got := len(rec.disconnects); got != n {
		t.Fatalf("%d $disconnect calls after Shutdown, want %d", got, n)
	}
	for range n {
		rc := (<-rec.disconnects).RequestContext
		if !ids[rc.ConnectionID] || rc.DisconnectStatusCode != websocket.CloseGoingAway {
			t.Errorf("disconnect %+v", rc)
		}
		delete(ids, rc.ConnectionID)
		if code := recv(t, codes); code != websocket.CloseGoingAway {
			t.Errorf("client saw close code %d, want 1001", code)
		}
	}
	if got := h.g.Len(); got != 0 {
		t.Errorf("Len() = %d", got)
	}
	_, resp, err := websocket.DefaultDialer.Dial(h.wsURL, nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("dial after shutdown: %v, want 503", err)
	}
}

func TestShutdownDeadlineCutsUnresponsiveClients(t *testing.T) {
	rec := newRecorder()
	h := start(t, newGateway(rec.routes(nil), Config{}))
	_, id := h.dialID(t, rec) // never reads, so never answers the close frame

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := h.g.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("shutdown: %v, want the context's deadline", err)
	}
	if got := recv(t, rec.disconnects).RequestContext.ConnectionID; got != id {
		t.Errorf("disconnect for %q", got)
	}
}

func TestAdminRefusesNonLoopback(t *testing.T) {
	g := newGateway(Routes{}, Config{})
	tests := []struct {
		remote string
		want   int
	}{
		{"203.0.113.7:4000", http.StatusForbidden},
		{"10.0.0.2:4000", http.StatusForbidden},
		{"127.0.0.1:4000", http.StatusGone},
		{"[::1]:4000", http.StatusGone},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(http.MethodPost, "/@connections/AAAAAAAAAAAAAAA%3D", strings.NewReader("x"))
		r.Header.Set(SecretHeader, testSecret)
		r.RemoteAddr = tt.remote
		w := httptest.NewRecorder()
		g.AdminHandler().ServeHTTP(w, r)
		if w.Code != tt.want {
			t.Errorf("%s: status %d, want %d", tt.remote, w.Code, tt.want)
		}
		if tt.want == http.StatusForbidden && w.Header().Get("X-Amzn-ErrorType") != "ForbiddenException" {
			t.Errorf("%s: error type %q", tt.remote, w.Header().Get("X-Amzn-ErrorType"))
		}
	}
}

// TestAdminRequiresSecret: a local process that does not know the secret
// cannot push to, inspect or close anyone's connection.
func TestAdminRequiresSecret(t *testing.T) {
	rec := newRecorder()
	h := start(t, newGateway(rec.routes(nil), Config{}))
	ws, id := h.dialID(t, rec)
	ctx := context.Background()
	in := &apigatewaymanagementapi.PostToConnectionInput{ConnectionId: aws.String(id), Data: []byte("injected")}
	var forbidden *types.ForbiddenException
	for name, c := range map[string]*apigatewaymanagementapi.Client{
		"no secret":    newAPIClientWith(h.admin),
		"wrong secret": newAPIClientWith(h.admin, WithSecret("not-the-secret")),
	} {
		if _, err := c.PostToConnection(ctx, in); !errors.As(err, &forbidden) {
			t.Errorf("%s: post: %v, want ForbiddenException", name, err)
		}
		if _, err := c.DeleteConnection(ctx, &apigatewaymanagementapi.DeleteConnectionInput{ConnectionId: aws.String(id)}); !errors.As(err, &forbidden) {
			t.Errorf("%s: delete: %v, want ForbiddenException", name, err)
		}
	}
	in.Data = []byte("allowed")
	if _, err := h.api.PostToConnection(ctx, in); err != nil {
		t.Fatalf("post with the secret: %v", err)
	}
	if got := readText(t, ws); got != "allowed" {
		t.Errorf("first frame %q, want the post made with the secret", got)
	}

	// A gateway configured without a secret refuses everyone.
	r := httptest.NewRequest(http.MethodPost, "/@connections/"+url.PathEscape(id), strings.NewReader("x"))
	r.RemoteAddr = "127.0.0.1:4000"
	r.Header.Set(SecretHeader, "")
	w := httptest.NewRecorder()
	New(Routes{}, Config{}, nil).AdminHandler().ServeHTTP(w, r)
	if w.Code != http.StatusForbidden {
		t.Errorf("no secret configured: status %d, want 403", w.Code)
	}
}

func TestConnectionIDFromPath(t *testing.T) {
	g := newGateway(Routes{}, Config{Stage: "dev"})
	tests := []struct {
		path, id string
		ok       bool
	}{
		{"/@connections/L0SM9cOFvHcCIhw%3D", "L0SM9cOFvHcCIhw=", true},
		{"/%40connections/L0SM9cOFvHcCIhw%3D", "L0SM9cOFvHcCIhw=", true},
		{"/dev/@connections/a%2Fb%2Bc%3D", "a/b+c=", true},
		{"/prod/@connections/abc", "", false},
		{"/@connections/", "", false},
		{"/@connections/a/b", "", false},
		{"/connections/abc", "", false},
		{"/", "", false},
	}
	for _, tt := range tests {
		id, ok := g.connectionID(tt.path)
		if id != tt.id || ok != tt.ok {
			t.Errorf("%s: (%q, %v), want (%q, %v)", tt.path, id, ok, tt.id, tt.ok)
		}
	}
}

func TestStagePrefixWithSDK(t *testing.T) {
	rec := newRecorder()
	h := start(t, newGateway(rec.routes(nil), Config{Stage: "dev"}))
	ws, id := h.dialID(t, rec)
	api := newAPIClient(h.admin + "/dev")
	if _, err := api.PostToConnection(context.Background(), &apigatewaymanagementapi.PostToConnectionInput{
		ConnectionId: aws.String(id), Data: []byte("staged"),
	}); err != nil {
		t.Fatalf("post: %v", err)
	}
	if got := readText(t, ws); got != "staged" {
		t.Errorf("got %q", got)
	}
}

// TestWriterRunsOnlyWhileWriting: an idle connection holds no writer
// goroutine; a post starts one, which exits once the queue is empty, and
// the next post starts another.
func TestWriterRunsOnlyWhileWriting(t *testing.T) {
	rec := newRecorder()
	h := start(t, newGateway(rec.routes(nil), Config{}))
	ws, id := h.dialID(t, rec)
	c := h.g.lookup(id)
	writing := func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.writing
	}
	for _, frame := range []string{"first", "second"} {
		if err := post(t, h, id, frame); err != nil {
			t.Fatalf("post %s: %v", frame, err)
		}
		if got := readText(t, ws); got != frame {
			t.Fatalf("got %q, want %q", got, frame)
		}
		for deadline := time.Now().Add(waitFor); writing(); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("after %s: the writer still runs with nothing to write", frame)
			}
		}
	}
}

// The gateway counts the data frames clients send and those it writes
// (the metrics read them at scrape).
func TestFrameCounts(t *testing.T) {
	rec := newRecorder()
	g := newGateway(rec.routes(echo), Config{})
	h := start(t, g)
	ws, _ := h.dialID(t, rec)
	const n = 5
	for i := range n {
		send(t, ws, fmt.Sprintf("m%d", i))
		if got := readText(t, ws); got != fmt.Sprintf("echo:m%d", i) {
			t.Fatalf("response %d = %q", i, got)
		}
	}
	if got := g.FramesIn(); got != n {
		t.Errorf("FramesIn = %d, want %d", got, n)
	}
	// The writer counts a frame once its write returned, which may be
	// just after the client read it.
	deadline := time.Now().Add(5 * time.Second)
	for g.FramesOut() < n && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := g.FramesOut(); got != n {
		t.Errorf("FramesOut = %d, want %d", got, n)
	}
}
