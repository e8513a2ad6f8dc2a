package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	neturl "net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	lambdaevents "github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parleychat/parley/db"
	"github.com/parleychat/parley/db/dbtest"
	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/events/eventbridge/ebfake"
	"github.com/parleychat/parley/events/sqs/sqstest"
	"github.com/parleychat/parley/internal/awsconf"
	"github.com/parleychat/parley/internal/connstore"
	"github.com/parleychat/parley/internal/connstore/dynamostore"
	"github.com/parleychat/parley/internal/media"

	"github.com/parleychat/parley/internal/testbin"
)

// The Lambda entry points, built by lambdaHandler as the runtime builds them
// on a cold start, and invoked with event JSON in the shape API Gateway and
// SQS send (testdata/). They run against a real database, dynalite, goaws
// and an embedded S3; EventBridge is ebfake (no emulator exists), and the
// API Gateway management API that fanout posts to is a recorder.

// Connection ids in the recorded events: user 1's ($connect, $default,
// $disconnect), and user 2's (the same $connect event, another connection).
const (
	connUser1 = "L0SM9cOFvHcCIhw="
	connUser2 = "L0SNbdwmvHcCE0w="
)

// loadEvent reads a recorded event, replacing each key of repl by its
// value: tokens are signed when the test runs, since they expire.
func loadEvent(t *testing.T, name string, repl ...string) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return []byte(strings.NewReplacer(repl...).Replace(string(raw)))
}

// invoke runs a handler the way the Lambda runtime does, JSON in and JSON
// out, and decodes the answer.
func invoke(t *testing.T, h any, event []byte) map[string]any {
	t.Helper()
	out, err := lambda.NewHandler(h).Invoke(context.Background(), event)
	if err != nil {
		t.Fatalf("invoke: %v", err)
	}
	var resp map[string]any
	if err := json.Unmarshal(out, &resp); err != nil {
		t.Fatalf("response %s: %v", out, err)
	}
	return resp
}

// bodyJSON decodes the body of a proxy response.
func bodyJSON(t *testing.T, resp map[string]any) map[string]any {
	t.Helper()
	s, _ := resp["body"].(string)
	var b map[string]any
	if err := json.Unmarshal([]byte(s), &b); err != nil {
		t.Fatalf("response body %q is not a JSON object: %v", s, err)
	}
	return b
}

// failedItems returns the itemIdentifiers of an SQS batch response.
func failedItems(t *testing.T, resp map[string]any) []string {
	t.Helper()
	raw, ok := resp["batchItemFailures"].([]any)
	if !ok {
		t.Fatalf("no batchItemFailures in %v", resp)
	}
	var ids []string
	for _, f := range raw {
		id, _ := f.(map[string]any)["itemIdentifier"].(string)
		ids = append(ids, id)
	}
	return ids
}

// postRecorder stands in for the API Gateway management API: it records
// every frame posted to a connection.
type postRecorder struct {
	mu    sync.Mutex
	posts map[string][]map[string]any // connection id → frames
}

func (p *postRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || !strings.HasPrefix(r.URL.Path, "/@connections/") {
		w.WriteHeader(http.StatusOK) // GET/DELETE of a connection: nothing to record
		return
	}
	id := strings.TrimPrefix(r.URL.Path, "/@connections/")
	var f map[string]any
	b, _ := io.ReadAll(r.Body)
	if err := json.Unmarshal(b, &f); err != nil {
		http.Error(w, "not JSON", http.StatusBadRequest)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.posts[id] = append(p.posts[id], f)
	w.WriteHeader(http.StatusOK)
}

// frames returns and forgets what was posted to a connection.
func (p *postRecorder) frames(id string) []map[string]any {
	p.mu.Lock()
	defer p.mu.Unlock()
	f := p.posts[id]
	delete(p.posts, id)
	return f
}

// published returns the entries of type typ put on the bus since request
// mark, with their detail decoded.
func published(t *testing.T, bus *ebfake.Fake, mark int, typ string) []events.Envelope {
	t.Helper()
	var out []events.Envelope
	for _, r := range bus.Requests()[mark:] {
		for _, en := range r {
			if en.DetailType != typ {
				continue
			}
			env, err := events.Decode([]byte(en.Detail))
			if err != nil {
				t.Fatalf("published %s detail: %v", typ, err)
			}
			out = append(out, env)
		}
	}
	return out
}

func dataField(t *testing.T, env events.Envelope, field string) any {
	t.Helper()
	var d map[string]any
	if err := json.Unmarshal(env.Data, &d); err != nil {
		t.Fatal(err)
	}
	return d[field]
}

// TestLambdaHandlers builds every handler with lambdaHandler and invokes it
// with recorded events: WebSocket routes, the HTTP API, and each worker on
// an SQS batch with one bad record. Workers get no JWT_SECRET, as on AWS.
func TestLambdaHandlers(t *testing.T) {
	l := startAWSLocal(t)
	dbURL, pool := dbtest.New(t)
	mgmt := &postRecorder{posts: map[string][]map[string]any{}}
	mgmtSrv := httptest.NewServer(mgmt)
	t.Cleanup(mgmtSrv.Close)

	// What the stack gives every function, with local endpoints.
	common := map[string]string{
		"CHAT_TRANSPORT":            "aws",
		"CHAT_EVENT_BUS_NAME":       "parley-test",
		"CHAT_EVENTBRIDGE_ENDPOINT": l.busURL,
		"DATABASE_URL":              dbURL,
		"CHAT_CONNECTIONS_TABLE":    testConnTable,
		"CHAT_DYNAMODB_ENDPOINT":    l.dynamo,
		"CHAT_S3_BUCKET":            testBucket,
		"CHAT_S3_ENDPOINT":          l.s3URL,
		"CHAT_LOG_LEVEL":            "debug",
		// The management endpoint stands in for API Gateway on loopback,
		// where a local gateway would ask for its secret.
		"CHAT_GATEWAY_ADMIN_SECRET": "lambda-test-management-secret",
	}
	for _, kv := range noRateLimits() {
		k, v, _ := strings.Cut(kv, "=")
		common[k] = v
	}
	with := func(extra ...string) func(string) string {
		m := map[string]string{}
		for k, v := range common {
			m[k] = v
		}
		for i := 0; i < len(extra); i += 2 {
			m[extra[i]] = extra[i+1]
		}
		return func(k string) string { return m[k] }
	}
	edgeEnv := with("JWT_SECRET", testSecret, "CHAT_WS_MANAGEMENT_ENDPOINT", mgmtSrv.URL)
	workerEnv := with("CHAT_WS_MANAGEMENT_ENDPOINT", mgmtSrv.URL) // no JWT_SECRET
	build := func(t *testing.T, name string, getenv func(string) string) any {
		t.Helper()
		h, closeFn, err := lambdaHandler(context.Background(), name, getenv, t.Output())
		if err != nil {
			t.Fatalf("lambdaHandler(%s): %v", name, err)
		}
		t.Cleanup(closeFn)
		return h
	}

	dynamo, err := dynamostore.NewClient(context.Background(), awsconf.Options{Endpoint: l.dynamo})
	if err != nil {
		t.Fatal(err)
	}
	conns := dynamostore.New(dynamo, testConnTable)
	ctx := context.Background()

	var apiMsg, wsMsg string
	t.Run("api", func(t *testing.T) {
		h := build(t, "api", edgeEnv)
		resp := invoke(t, h, loadEvent(t, "http_health.json"))
		if resp["statusCode"] != float64(200) || bodyJSON(t, resp)["status"] != "healthy" {
			t.Fatalf("GET /health = %v", resp)
		}
		mark := len(l.bus.Requests())
		resp = invoke(t, h, loadEvent(t, "http_post_message.json", "{{token}}", userToken(t, 1)))
		body := bodyJSON(t, resp)
		if resp["statusCode"] != float64(200) || body["sender_id"] != float64(1) || body["recipient_id"] != float64(2) ||
			body["text_content"] != "Olá pela API HTTP" || body["conversation_id"] == nil {
			t.Fatalf("POST /api/v1/chat/messages = %v", resp)
		}
		if h, _ := resp["headers"].(map[string]any); !strings.HasPrefix(h["Content-Type"].(string), "application/json") {
			t.Fatalf("response headers = %v", resp["headers"])
		}
		apiMsg, _ = body["id"].(string)
		if sent := published(t, l.bus, mark, events.TypeMessageSent); len(sent) != 1 || dataField(t, sent[0], "message_id") != apiMsg {
			t.Fatalf("published MessageSent = %v, want one for %s", sent, apiMsg)
		}
		// Without a token: the API's own 401.
		resp = invoke(t, h, loadEvent(t, "http_post_message.json", "Bearer {{token}}", ""))
		if resp["statusCode"] != float64(401) {
			t.Fatalf("POST without a token = %v", resp)
		}
	})

	t.Run("ws-connect", func(t *testing.T) {
		h := build(t, "ws-connect", edgeEnv)
		mark := len(l.bus.Requests())
		for user, conn := range map[int64]string{1: connUser1, 2: connUser2} {
			resp := invoke(t, h, loadEvent(t, "ws_connect.json", "{{token}}", userToken(t, user), connUser1, conn))
			if resp["statusCode"] != float64(200) {
				t.Fatalf("$connect of user %d = %v", user, resp)
			}
			c, err := conns.Get(ctx, conn)
			if err != nil || c.UserID != user {
				t.Fatalf("connection %s in DynamoDB: %+v, %v", conn, c, err)
			}
		}
		if got := published(t, l.bus, mark, events.TypeConnected); len(got) != 2 {
			t.Fatalf("%d Connected events published, want 2", len(got))
		}

		resp := invoke(t, h, loadEvent(t, "ws_connect_bad_token.json"))
		if resp["statusCode"] != float64(401) || bodyJSON(t, resp)["message"] != "Unauthorized" {
			t.Fatalf("$connect with an expired token = %v", resp)
		}
		if _, err := conns.Get(ctx, "L0SMqcRsvHcCJ0A="); !errors.Is(err, connstore.ErrNotFound) {
			t.Fatalf("refused connection was recorded: %v", err)
		}
	})

	t.Run("ws-default", func(t *testing.T) {
		h := build(t, "ws-default", edgeEnv)
		mark := len(l.bus.Requests())
		resp := invoke(t, h, loadEvent(t, "ws_default_send.json"))
		ack := bodyJSON(t, resp)
		if resp["statusCode"] != float64(200) || ack["type"] != "acknowledgment" || ack["clientMessageId"] != "3f1c9a2e-lambda-1" || ack["conversationId"] == nil {
			t.Fatalf("sendMessage = %v", resp)
		}
		wsMsg, _ = ack["messageId"].(string)
		sent := published(t, l.bus, mark, events.TypeMessageSent)
		if len(sent) != 1 || dataField(t, sent[0], "message_id") != wsMsg || dataField(t, sent[0], "source_connection_id") != connUser1 {
			t.Fatalf("published MessageSent = %v", sent)
		}

		resp = invoke(t, h, loadEvent(t, "ws_default_bad_frame.json"))
		if f := bodyJSON(t, resp); resp["statusCode"] != float64(200) || f["type"] != "error" || f["code"] != "bad_request" || f["action"] != "sendMessage" {
			t.Fatalf("bad frame = %v", resp)
		}
	})

	// The records SQS hands the workers for what the edge functions just
	// published: EventBridge (ebfake) → goaws → an SQS event, as the event
	// source mapping builds it.
	t.Run("records from the bus", func(t *testing.T) {
		fromQueue := func(worker string, want int) []byte {
			var ev lambdaevents.SQSEvent
			waitUntil(t, "the "+worker+" queue holds the published events", func() bool {
				for _, m := range sqstest.Drain(t, l.sqs, l.queues[worker], 0) {
					ev.Records = append(ev.Records, lambdaevents.SQSMessage{
						MessageId: aws.ToString(m.MessageId), ReceiptHandle: aws.ToString(m.ReceiptHandle), Body: aws.ToString(m.Body),
						Attributes: map[string]string{"ApproximateReceiveCount": "1"}, EventSource: "aws:sqs",
						EventSourceARN: "arn:aws:sqs:us-east-1:000000000000:" + worker, AWSRegion: "us-east-1",
					})
				}
				return len(ev.Records) >= want
			})
			b, err := json.Marshal(ev)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
		// Two MessageSent: from the API and from $default.
		if failed := failedItems(t, invoke(t, build(t, "worker-persister", workerEnv), fromQueue(events.WorkerPersister, 2))); len(failed) != 0 {
			t.Fatalf("persister failed records %v", failed)
		}
		rows, err := pool.Query(ctx, `SELECT id::text FROM messages ORDER BY seq`)
		if err != nil {
			t.Fatal(err)
		}
		var stored []string
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				t.Fatal(err)
			}
			stored = append(stored, id)
		}
		if rows.Err() != nil || len(stored) != 2 || !slices.Contains(stored, apiMsg) || !slices.Contains(stored, wsMsg) {
			t.Fatalf("stored %v, want %s and %s", stored, apiMsg, wsMsg)
		}

		// Two Connected and two MessageSent: greetings, then the messages
		// for user 2 (the $default one not echoed to its sending connection).
		if failed := failedItems(t, invoke(t, build(t, "worker-fanout", workerEnv), fromQueue(events.WorkerFanout, 4))); len(failed) != 0 {
			t.Fatalf("fanout failed records %v", failed)
		}
		types := func(fs []map[string]any) (out []string) {
			for _, f := range fs {
				out = append(out, f["type"].(string))
				if f["type"] == "newMessage" {
					out = append(out, f["data"].(map[string]any)["id"].(string))
				}
			}
			return out
		}
		got1, got2 := types(mgmt.frames(connUser1)), types(mgmt.frames(connUser2))
		if !slices.Contains(got1, "connected") || !slices.Contains(got2, "connected") ||
			!slices.Contains(got2, apiMsg) || !slices.Contains(got2, wsMsg) || slices.Contains(got1, wsMsg) {
			t.Fatalf("frames posted: user 1 %v, user 2 %v", got1, got2)
		}
	})

	t.Run("worker-fanout", func(t *testing.T) {
		h := build(t, "worker-fanout", workerEnv)
		mark := len(l.bus.Requests())
		resp := invoke(t, h, loadEvent(t, "sqs_fanout.json"))
		if failed := failedItems(t, resp); len(failed) != 1 || failed[0] != "3c6e80aa-7f91-4ea2-9db4-805f6b7c9d06" {
			t.Fatalf("batchItemFailures = %v, want only the scheduled event's record", failed)
		}
		frames := mgmt.frames(connUser2)
		if len(frames) != 2 || frames[0]["type"] != "newMessage" || frames[1]["type"] != "typing" {
			t.Fatalf("frames to user 2 = %v, want newMessage then typing", frames)
		}
		if d := frames[0]["data"].(map[string]any); d["id"] != "01a2272d-2600-7002-8000-0000000000a2" || d["textContent"] != "Olá! Como vai?" {
			t.Fatalf("newMessage = %v", d)
		}
		// The sending connection is not echoed its own message; it learns
		// that the message was delivered.
		if f := mgmt.frames(connUser1); len(f) != 1 || f[0]["type"] != "messageDelivered" {
			t.Fatalf("the sending connection got %v, want only messageDelivered", f)
		}
		if d := published(t, l.bus, mark, events.TypeMessageDelivered); len(d) != 1 || dataField(t, d[0], "message_id") != "01a2272d-2600-7002-8000-0000000000a2" {
			t.Fatalf("published MessageDelivered = %v", d)
		}
	})

	t.Run("ws-disconnect", func(t *testing.T) {
		resp := invoke(t, build(t, "ws-disconnect", edgeEnv), loadEvent(t, "ws_disconnect.json"))
		if resp["statusCode"] != float64(200) {
			t.Fatalf("$disconnect = %v", resp)
		}
		if _, err := conns.Get(ctx, connUser1); !errors.Is(err, connstore.ErrNotFound) {
			t.Fatalf("connection still recorded after $disconnect: %v", err)
		}
	})

	t.Run("worker-persister", func(t *testing.T) {
		resp := invoke(t, build(t, "worker-persister", workerEnv), loadEvent(t, "sqs_persister.json"))
		if failed := failedItems(t, resp); len(failed) != 1 || failed[0] != "9f3b0d55-4c6e-4b7f-9a81-5d2c3e4f6a03" {
			t.Fatalf("batchItemFailures = %v, want only the truncated record", failed)
		}
		var seq int64
		var readAt *time.Time
		if err := pool.QueryRow(ctx, `SELECT seq, read_at FROM messages WHERE id = '01a2272d-2600-7001-8000-0000000000a1' AND conversation_id = '01a2272d-2600-7a78-8f10-0000000000c7'`).Scan(&seq, &readAt); err != nil {
			t.Fatalf("recorded message not stored: %v", err)
		}
		if seq != 1 || readAt == nil {
			t.Fatalf("stored seq %d read_at %v, want seq 1 and read", seq, readAt)
		}
		// Redelivery changes nothing.
		invoke(t, build(t, "worker-persister", workerEnv), loadEvent(t, "sqs_persister.json"))
		if n := count(t, pool, `SELECT count(*) FROM messages WHERE conversation_id = '01a2272d-2600-7a78-8f10-0000000000c7'`); n != 1 {
			t.Fatalf("%d messages after redelivery, want 1", n)
		}
	})

	t.Run("worker-thumbnailer", func(t *testing.T) {
		const key = "chat/1/2026/11/01a2272d-2600-756d-bed6-22f8eec5326d.jpg"
		store, err := media.New(ctx, media.Config{Bucket: testBucket, Endpoint: l.s3URL, PathStyle: true, Local: true}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := store.Put(ctx, key, testJPEG(t, 800, 600), "image/jpeg"); err != nil {
			t.Fatal(err)
		}
		mark := len(l.bus.Requests())
		resp := invoke(t, build(t, "worker-thumbnailer", workerEnv), loadEvent(t, "sqs_thumbnailer.json"))
		if failed := failedItems(t, resp); len(failed) != 1 || failed[0] != "5e80a2cc-91b3-4ac4-9fd6-a27b8d9ebf08" {
			t.Fatalf("batchItemFailures = %v, want only the record whose original is gone", failed)
		}
		if ok, err := store.Exists(ctx, media.ThumbnailKey(key)); err != nil || !ok {
			t.Fatalf("thumbnail not stored: %v", err)
		}
		ready := published(t, l.bus, mark, events.TypeThumbnailReady)
		if len(ready) != 1 || dataField(t, ready[0], "message_id") != "01a2272d-2600-7003-8000-0000000000a3" ||
			dataField(t, ready[0], "width") != float64(320) || dataField(t, ready[0], "height") != float64(240) {
			t.Fatalf("published ThumbnailReady = %v", ready)
		}
	})
}

// TestLambdaWorkersNeedNoJWTSecret gives the functions what the stack gives
// them: secret ARNs, not values. Workers may read only the database secret
// (a stand-in Secrets Manager refuses the JWT one, as IAM would) and must
// start without ever asking for the JWT secret; the edge functions need it.
func TestLambdaWorkersNeedNoJWTSecret(t *testing.T) {
	dbURL, _ := dbtest.New(t)
	dbARN, jwtARN := testDBSecretARN, testJWTSecretARN
	var asked secretRequests
	takeAsked := asked.take
	var jwtAllowed atomic.Bool // the edge functions' grant
	sm := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in struct{ SecretId string }
		if r.Header.Get("X-Amz-Target") != "secretsmanager.GetSecretValue" || json.NewDecoder(r.Body).Decode(&in) != nil {
			http.Error(w, "unexpected request", http.StatusBadRequest)
			return
		}
		asked.add(in.SecretId)
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		switch {
		case in.SecretId == jwtARN && jwtAllowed.Load():
			_ = json.NewEncoder(w).Encode(map[string]any{"ARN": jwtARN, "Name": "parley/test/jwt", "SecretString": testSecret, "VersionId": "v1", "CreatedDate": 1795953600})
			return
		case in.SecretId != dbARN:
			w.Header().Set("X-Amzn-ErrorType", "AccessDeniedException")
			w.WriteHeader(http.StatusBadRequest)
			_ = json.NewEncoder(w).Encode(map[string]string{"__type": "AccessDeniedException", "message": "not authorized to perform: secretsmanager:GetSecretValue on " + in.SecretId})
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"ARN": dbARN, "Name": "parley/test/database-url", "SecretString": dbURL, "VersionId": "v1", "CreatedDate": 1795953600})
	}))
	t.Cleanup(sm.Close)
	useSecretsManager(t, sm.URL)

	// infra/stack.go's common environment, plus fanout's endpoint. Nothing
	// is called at start-up but PostgreSQL and Secrets Manager.
	stackEnv := lambdaStackEnv()
	stackEnv["CHAT_LOG_LEVEL"] = "info"
	stackEnv["CHAT_WS_MANAGEMENT_ENDPOINT"] = "http://127.0.0.1:9/test" // never called here
	stackEnv["CHAT_GATEWAY_ADMIN_SECRET"] = "lambda-test-management-secret"
	getenv := func(k string) string { return stackEnv[k] }
	for _, w := range events.Workers() {
		takeAsked()
		h, closeFn, err := lambdaHandler(context.Background(), "worker-"+w, getenv, t.Output())
		if err != nil {
			t.Fatalf("worker-%s without access to the JWT secret: %v", w, err)
		}
		closeFn()
		if asked := takeAsked(); h == nil || len(asked) != 1 || asked[0] != dbARN {
			t.Fatalf("worker-%s asked Secrets Manager for %v, want only the database secret", w, asked)
		}
	}
	for _, name := range []string{"api", "ws-connect"} {
		_, _, err := lambdaHandler(context.Background(), name, getenv, t.Output())
		if err == nil || !strings.Contains(err.Error(), "JWT_SECRET_ARN: read "+jwtARN) {
			t.Fatalf("%s without access to the JWT secret: err = %v, want one naming JWT_SECRET_ARN", name, err)
		}
	}
	// With the grant the edge functions have, both secrets resolve.
	jwtAllowed.Store(true)
	takeAsked()
	h, closeFn, err := lambdaHandler(context.Background(), "api", getenv, t.Output())
	if err != nil {
		t.Fatalf("api with access to both secrets: %v", err)
	}
	defer closeFn()
	if asked := takeAsked(); !slices.Contains(asked, jwtARN) || !slices.Contains(asked, dbARN) {
		t.Fatalf("api asked Secrets Manager for %v, want both secrets", asked)
	}
	resp := invoke(t, h, loadEvent(t, "http_list_conversations.json", "{{token}}", userToken(t, 1)))
	if resp["statusCode"] != float64(200) || bodyJSON(t, resp)["page_size"] != float64(20) {
		t.Fatalf("GET /conversations with a token signed with the resolved secret = %v", resp)
	}
}

// The stand-in Secrets Manager's secrets, named as the stack names them.
const (
	testDBSecretARN  = "arn:aws:secretsmanager:us-east-1:123456789012:secret:parley/test/database-url-AbC123"
	testJWTSecretARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:parley/test/jwt-XyZ789"
)

// lambdaStackEnv is infra/stack.go's common environment: secret ARNs, not
// values.
func lambdaStackEnv() map[string]string {
	return map[string]string{
		"CHAT_TRANSPORT":          "aws",
		"CHAT_EVENT_BUS_NAME":     "parley-test",
		"JWT_SECRET_ARN":          testJWTSecretARN,
		"DATABASE_URL_SECRET_ARN": testDBSecretARN,
		"CHAT_CONNECTIONS_TABLE":  "parley-test-connections",
		"CHAT_S3_BUCKET":          "parley-test-media",
	}
}

// secretRequests records what a stand-in Secrets Manager is asked for.
type secretRequests struct {
	mu    sync.Mutex
	asked []string
}

func (r *secretRequests) add(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.asked = append(r.asked, s)
}

// take returns and forgets the requests so far.
func (r *secretRequests) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	a := r.asked
	r.asked = nil
	return a
}

// useSecretsManager points the SDK at a stand-in Secrets Manager through
// the process environment, as on Lambda; any other AWS call fails here and
// never leaves the machine.
func useSecretsManager(t *testing.T, url string) {
	t.Setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", url)
	t.Setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_ACCESS_KEY_ID", "test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test")
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
}

// TestLambdaBootstrapUnderRIE builds the Lambda binary as it is deployed
// (static, lambda.norpc, stripped; for this machine's architecture) and
// invokes it through the Runtime Interface Emulator, which serves it the
// Lambda Runtime API: the api handler (the cold start's Init Duration is
// logged) and the migrate handler, answering CloudFormation.
func TestLambdaBootstrapUnderRIE(t *testing.T) {
	rie := testbin.Find(t, "aws-lambda-rie", "")
	bootstrap := filepath.Join(t.TempDir(), "bootstrap")
	build := exec.Command("go", "build", "-tags", "lambda.norpc", "-ldflags=-s -w", "-o", bootstrap, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build bootstrap: %v\n%s", err, out)
	}
	dbURL, pool := dbtest.New(t)
	t.Run("api", func(t *testing.T) { rieAPI(t, rie, bootstrap, dbURL) })
	t.Run("migrate", func(t *testing.T) { rieMigrate(t, rie, bootstrap, dbURL, pool) })
}

// startRIE runs bootstrap under the emulator with env (plus PATH and HOME)
// and returns its invocation URL and its output.
func startRIE(t *testing.T, rie, bootstrap string, env ...string) (string, *proc) {
	t.Helper()
	// The ports are free when picked but taken only when the emulator
	// binds them, and another test's process may take one first: the
	// emulator then exits at once, and is started again on other ports.
	for attempt := 1; ; attempt++ {
		addr, out := launchRIE(t, rie, bootstrap, env)
		deadline := time.Now().Add(30 * time.Second)
		for {
			if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
				c.Close()
				return "http://" + addr + "/2015-03-31/functions/function/invocations", out
			}
			select {
			case <-out.done:
				if attempt < 3 && strings.Contains(out.output(), "address already in use") {
					t.Logf("the emulator lost a port to another process (attempt %d); starting it again", attempt)
				} else {
					t.Fatalf("the emulator exited before it listened: %v", out.exited)
				}
			default:
				if time.Now().After(deadline) {
					t.Fatalf("timed out after 30s waiting until the emulator listens on %s", addr)
				}
				time.Sleep(50 * time.Millisecond)
				continue
			}
			break
		}
	}
}

// launchRIE starts the emulator on free ports, ended with its bootstrap
// when the test ends, and answers its invocation address.
func launchRIE(t *testing.T, rie, bootstrap string, env []string) (string, *proc) {
	t.Helper()
	addr, runtimeAPI := freeAddr(t), freeAddr(t)
	cmd := exec.Command(rie, "--runtime-interface-emulator-address", addr, "--runtime-api-address", runtimeAPI, bootstrap)
	cmd.Env = append(env, "PATH="+os.Getenv("PATH"), "HOME="+t.TempDir())
	// Its own process group: the emulator starts the bootstrap as a child,
	// and both must go when the test ends.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out := &proc{cmd: cmd, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { out.exited = cmd.Wait(); close(out.done) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // the group, by the id of the process started here
		<-out.done
		if t.Failed() {
			t.Logf("aws-lambda-rie output:\n%s", tail(out.output(), 60))
		}
	})
	return addr, out
}

func rieAPI(t *testing.T, rie, bootstrap, dbURL string) {
	url, out := startRIE(t, rie, bootstrap,
		"CHAT_LAMBDA_HANDLER=api",
		"DATABASE_URL="+dbURL,
		"JWT_SECRET="+testSecret,
		"CHAT_TRANSPORT=aws",
		"CHAT_EVENT_BUS_NAME=parley-test",
		"CHAT_LOG_FORMAT=json",
		"AWS_REGION=us-east-1",
		"AWS_ENDPOINT_URL=http://127.0.0.1:9", // /health calls no AWS service; if it did, it would fail here
	)
	var took [2]time.Duration
	for i := range took { // a cold invocation, then a warm one
		start := time.Now()
		resp, err := http.Post(url, "application/json", bytes.NewReader(loadEvent(t, "http_health.json")))
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		took[i] = time.Since(start)
		var got lambdaevents.APIGatewayV2HTTPResponse
		if resp.StatusCode != http.StatusOK || json.Unmarshal(raw, &got) != nil {
			t.Fatalf("invocation %d: status %d: %s", i, resp.StatusCode, raw)
		}
		if got.StatusCode != http.StatusOK || strings.TrimSpace(got.Body) != `{"status":"healthy"}` || !strings.HasPrefix(got.Headers["Content-Type"], "application/json") {
			t.Fatalf("invocation %d answered %s", i, raw)
		}
	}
	// The emulator's REPORT line has an "Init Duration" that does not cover
	// the runtime's start; its INIT REPORT does: from starting the bootstrap
	// to its first request for work.
	var initMS string
	waitUntil(t, "the emulator reports the init phase", func() bool {
		if m := initReport.FindStringSubmatch(out.output()); m != nil {
			initMS = m[1]
		}
		return initMS != ""
	})
	if fi, err := os.Stat(bootstrap); err == nil {
		t.Logf("bootstrap linux/%s: %.1f MiB; init %s ms; cold invocation %v, warm %v (round trips)",
			runtime.GOARCH, float64(fi.Size())/(1<<20), initMS, took[0].Round(time.Millisecond), took[1].Round(100*time.Microsecond))
	}
}

// cfnReply is what a custom resource PUTs to CloudFormation's ResponseURL.
type cfnReply struct {
	Status, Reason, PhysicalResourceId, RequestId string
	Data                                          map[string]any
}

// rieMigrate sends the migrate handler CloudFormation custom resource
// requests. Their ResponseURL is a local HTTP server standing in for the
// presigned S3 URL CloudFormation waits on (the same protocol: one PUT of
// a JSON body). The database it migrates does not exist yet.
func rieMigrate(t *testing.T, rie, bootstrap, dbURL string, pool *pgxpool.Pool) {
	ctx := context.Background()
	replies := make(chan cfnReply, 1)
	cfnSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var rep cfnReply
		if r.Method != http.MethodPut || json.NewDecoder(r.Body).Decode(&rep) != nil {
			http.Error(w, "want a PUT of a JSON response", http.StatusBadRequest)
			return
		}
		replies <- rep
	}))
	t.Cleanup(cfnSrv.Close)

	u, err := neturl.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	fresh := strings.TrimPrefix(u.Path, "/") + "_migrate"
	u.Path = "/" + fresh
	t.Cleanup(func() { _, _ = pool.Exec(context.Background(), "DROP DATABASE IF EXISTS "+fresh+" WITH (FORCE)") })

	send := func(t *testing.T, url, requestType string, props map[string]any) cfnReply {
		t.Helper()
		ev := map[string]any{
			"RequestType": requestType, "RequestId": "req-" + requestType, "ResponseURL": cfnSrv.URL + "/reply",
			"ResourceType": "Custom::Migrations", "LogicalResourceId": "Migrations",
			"StackId":            "arn:aws:cloudformation:us-east-1:123456789012:stack/ParleyChat-test/1",
			"ResourceProperties": props,
		}
		if requestType != "Create" {
			ev["PhysicalResourceId"] = "parley-migrations"
		}
		body, _ := json.Marshal(ev)
		resp, err := http.Post(url, "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		select {
		case rep := <-replies:
			if rep.RequestId != ev["RequestId"] || rep.PhysicalResourceId != "parley-migrations" {
				t.Errorf("%s: reply %+v", requestType, rep)
			}
			return rep
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: no reply to CloudFormation", requestType)
			return cfnReply{}
		}
	}
	env := []string{"CHAT_LAMBDA_HANDLER=migrate", "CHAT_LOG_FORMAT=json", "AWS_REGION=us-east-1",
		"AWS_ENDPOINT_URL=http://127.0.0.1:9", "CHAT_DB_CONNECT_TIMEOUT=3s"}
	versions, err := db.Versions()
	if err != nil {
		t.Fatal(err)
	}
	count := func(t *testing.T) int {
		t.Helper()
		conn, err := pgx.Connect(ctx, u.String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		var n int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM schema_migrations`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	t.Run("create, update, delete", func(t *testing.T) {
		url, _ := startRIE(t, rie, bootstrap, append(env, "DATABASE_URL="+u.String())...)
		props := map[string]any{"Migrations": strings.Join(versions, ",")}
		if rep := send(t, url, "Create", props); rep.Status != "SUCCESS" || rep.Data["Result"] != "migrated" {
			t.Fatalf("Create: %+v", rep)
		}
		if n := count(t); n != len(versions) {
			t.Fatalf("after Create: %d migrations recorded, want %d", n, len(versions))
		}
		// A redeploy (or CloudFormation retrying) changes nothing.
		if rep := send(t, url, "Update", props); rep.Status != "SUCCESS" {
			t.Fatalf("Update: %+v", rep)
		}
		// Deleting the stack leaves the schema alone.
		if rep := send(t, url, "Delete", props); rep.Status != "SUCCESS" {
			t.Fatalf("Delete: %+v", rep)
		}
		if n := count(t); n != len(versions) {
			t.Fatalf("after Update and Delete: %d migrations recorded, want %d", n, len(versions))
		}
	})
	t.Run("placeholder", func(t *testing.T) {
		// What the stack's generated placeholder secret holds: not a URL.
		url, _ := startRIE(t, rie, bootstrap, append(env, "DATABASE_URL=Xq3placeholder0random0value0abcd")...)
		rep := send(t, url, "Create", map[string]any{"DatabaseUrlIsPlaceholder": "true"})
		if rep.Status != "SUCCESS" || !strings.HasPrefix(fmt.Sprint(rep.Data["Result"]), "skipped") {
			t.Fatalf("placeholder: %+v", rep)
		}
		// Without the stack saying it is a placeholder, it is an error.
		rep = send(t, url, "Update", map[string]any{})
		if rep.Status != "FAILED" || !strings.Contains(rep.Reason, "DATABASE_URL") {
			t.Fatalf("invalid URL, no placeholder: %+v", rep)
		}
	})
	t.Run("unreachable database", func(t *testing.T) {
		// Reported to CloudFormation, which rolls the deploy back, rather
		// than a crash it would wait on.
		url, _ := startRIE(t, rie, bootstrap, append(env, "DATABASE_URL=postgres://postgres@127.0.0.1:9/chat?sslmode=disable")...)
		rep := send(t, url, "Create", map[string]any{})
		if rep.Status != "FAILED" || !strings.Contains(rep.Reason, "PostgreSQL") {
			t.Fatalf("unreachable database: %+v", rep)
		}
	})
}

// initReport matches the emulator's log line closing the init phase.
var initReport = regexp.MustCompile(`INIT REPORT\(durationMs: ([0-9.]+)\)`)
