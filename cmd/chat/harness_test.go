package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parleychat/parley/api/auth"
	"github.com/parleychat/parley/db/dbtest"
	"github.com/parleychat/parley/internal/chat"
	"github.com/parleychat/parley/internal/contracttest"
)

// These end-to-end tests run the real binary as separate processes, against
// a fresh database, talking to it over real HTTP and real WebSockets.

const testSecret = "end-to-end-test-secret-0123456789"

var chatBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "chat-e2e")
	if err != nil {
		panic(err)
	}
	chatBin = filepath.Join(dir, "chat")
	build := exec.Command("go", "build", "-o", chatBin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build chat:", err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// env is one deployment: a database and the addresses its processes use.
type env struct {
	t       *testing.T
	dbURL   string
	pool    *pgxpool.Pool
	http    string
	gateway string // chat gateway's /ws (chat dev serves /ws on http)
	admin   string
	s3      string
	// metrics is a free address for a test that serves /metrics (see
	// withMetrics); the others turn the listener off, as several
	// processes of one deployment cannot share one address.
	metrics string
	dataDir string
	extra   []string
	// secret signs the tests' tokens; empty means testSecret.
	secret string
	// tokenFor, if set, makes the tests' tokens instead (a key set's).
	tokenFor func(user int64) string
}

// token is a JWT for user, signed as this deployment expects.
func (e *env) token(user int64) string {
	e.t.Helper()
	if e.tokenFor != nil {
		return e.tokenFor(user)
	}
	secret := e.secret
	if secret == "" {
		secret = testSecret
	}
	s, err := auth.Issue([]byte(secret), user, time.Hour, time.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dbURL, pool := dbtest.New(t)
	return &env{t: t, dbURL: dbURL, pool: pool, http: freeAddr(t), gateway: freeAddr(t), admin: freeAddr(t), s3: freeAddr(t), metrics: freeAddr(t), dataDir: t.TempDir()}
}

// gatewayView is the same deployment seen through chat gateway: its health
// check and WebSocket clients use the gateway's address.
func (e *env) gatewayView() *env {
	g := *e
	g.http = e.gateway
	return &g
}

func (e *env) vars() []string {
	return append([]string{
		"DATABASE_URL=" + e.dbURL,
		"JWT_SECRET=" + testSecret,
		"CHAT_HTTP_ADDR=" + e.http,
		"CHAT_GATEWAY_ADDR=" + e.gateway,
		"CHAT_GATEWAY_ADMIN_ADDR=" + e.admin,
		"CHAT_GATEWAY_ADMIN_SECRET=test-gateway-management-secret",
		"CHAT_S3_ADDR=" + e.s3,
		"CHAT_METRICS_ADDR=off",
		"CHAT_DATA_DIR=" + e.dataDir,
		"CHAT_LOG_LEVEL=debug",
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + os.Getenv("HOME"),
	}, append(noRateLimits(), e.extra...)...)
}

// noRateLimits switches every per-user rate limit off: the tests write as
// fast as they like, as few users.
func noRateLimits() []string {
	var out []string
	for _, w := range chat.Writes() {
		out = append(out, "CHAT_RATE_"+strings.ToUpper(w.String())+"=0")
	}
	return out
}

type proc struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	out    bytes.Buffer
	done   chan struct{}
	exited error
}

func (p *proc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// start runs `chat args...` and waits until url (if any) answers.
func (e *env) start(args ...string) *proc {
	e.t.Helper()
	p := &proc{cmd: exec.Command(chatBin, args...), done: make(chan struct{})}
	p.cmd.Env = e.vars()
	p.cmd.Stdout, p.cmd.Stderr = p, p
	if err := p.cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	go func() { p.exited = p.cmd.Wait(); close(p.done) }()
	e.t.Cleanup(func() {
		p.kill()
		if e.t.Failed() {
			e.t.Logf("chat %s output:\n%s", strings.Join(args, " "), tail(p.output(), 80))
		}
	})
	return p
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (p *proc) kill() {
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// stop sends SIGTERM and returns the exit error.
func (p *proc) stop(t *testing.T) error {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.exited
	case <-time.After(30 * time.Second):
		t.Fatal("process did not stop within 30s of SIGTERM")
		return nil
	}
}

func (e *env) waitHTTP(p *proc) {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			e.t.Fatalf("process exited early: %v\n%s", p.exited, tail(p.output(), 40))
		default:
		}
		resp, err := http.Get("http://" + e.http + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	e.t.Fatalf("server at %s never became healthy", e.http)
}

func userToken(t *testing.T, user int64) string {
	t.Helper()
	s, err := auth.Issue([]byte(testSecret), user, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// call does one REST request as user and decodes the JSON answer into out.
func (e *env) call(user int64, method, path string, body any, out any) int {
	e.t.Helper()
	var rd io.Reader
	var sent []byte
	if body != nil {
		sent, _ = json.Marshal(body)
		rd = bytes.NewReader(sent)
	}
	req, _ := http.NewRequest(method, "http://"+e.http+"/api/v1/chat"+path, rd)
	req.Header.Set("Content-Type", "application/json")
	if user > 0 {
		req.Header.Set("Authorization", "Bearer "+e.token(user))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	// The binary's answers are held to the OpenAPI document too.
	if err := contracttest.Check(req, sent, resp, raw); err != nil {
		e.t.Fatal(err)
	}
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			e.t.Fatalf("%s %s: decode %q: %v", method, path, raw, err)
		}
	}
	return resp.StatusCode
}

type message struct {
	ID             string  `json:"id"`
	ConversationID string  `json:"conversation_id"`
	Seq            int64   `json:"seq"`
	SenderID       int64   `json:"sender_id"`
	TextContent    *string `json:"text_content"`
	DeliveredAt    *string `json:"delivered_at"`
	ReadAt         *string `json:"read_at"`
	ThumbnailURL   *string `json:"media_thumbnail_url"`
	MediaURL       *string `json:"media_url"`
}

func (e *env) send(user, to int64, text string) message {
	e.t.Helper()
	return e.post(user, map[string]any{"recipient_id": to, "content_type": "text", "text_content": text})
}

// post sends a message as user, with a client_message_id of its own.
func (e *env) post(user int64, body map[string]any) message {
	e.t.Helper()
	var m message
	body["client_message_id"] = fmt.Sprintf("harness-%d", time.Now().UnixNano())
	// As a client should: a 503 (a worker still starting makes the queues
	// lag, and sends are refused as overloaded) is retried with the same
	// client_message_id, a bounded number of times.
	for attempt := 0; ; attempt++ {
		code := e.call(user, "POST", "/messages", body, &m)
		if code == 200 {
			return m
		}
		if code != 503 || attempt == 20 {
			e.t.Fatalf("send: status %d", code)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// messages waits until the conversation shows at least n stored messages
// to user and returns them in sequence order.
func (e *env) messages(user int64, conv string, n int) []message {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		all := e.catchUp(user, conv, 0)
		if len(all) >= n {
			return all
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("conversation %s shows %d messages, want %d", conv, len(all), n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// catchUp pages through a conversation after sequence after, as a client
// does after a gap.
func (e *env) catchUp(user int64, conv string, after int64) []message {
	e.t.Helper()
	var all []message
	for {
		var page struct {
			Data    []message `json:"data"`
			HasMore bool      `json:"has_more"`
		}
		if code := e.call(user, "GET", fmt.Sprintf("/conversations/%s/messages?after_seq=%d&page_size=100", conv, after), nil, &page); code != 200 {
			e.t.Fatalf("catch up: status %d", code)
		}
		all = append(all, page.Data...)
		if len(page.Data) == 0 || !page.HasMore {
			return all
		}
		after = page.Data[len(page.Data)-1].Seq
	}
}

// wsClient is a real WebSocket client with a frame inbox.
type wsClient struct {
	t     *testing.T
	conn  *websocket.Conn
	inbox chan map[string]any
}

func (e *env) dial(user int64) *wsClient {
	e.t.Helper()
	c := e.dialNoGreeting(user)
	c.expect("connected", nil)
	return c
}

// dialNoGreeting connects without waiting for the greeting, which fanout
// sends: for tests where fanout is not running.
func (e *env) dialNoGreeting(user int64) *wsClient {
	e.t.Helper()
	return e.dialQuery(user, "")
}

// dialQuery connects as user with more query parameters (query: "&k=v"),
// without waiting for the greeting.
func (e *env) dialQuery(user int64, query string) *wsClient {
	e.t.Helper()
	conn, resp, err := contracttest.Dialer(e.t).Dial("ws://"+e.http+"/ws?token="+e.token(user)+query, nil)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		e.t.Fatalf("dial as %d: %v (status %d)", user, err, status)
	}
	c := &wsClient{t: e.t, conn: conn, inbox: make(chan map[string]any, 1000)}
	go func() {
		defer close(c.inbox)
		for {
			_, b, err := conn.ReadMessage()
			if err != nil {
				return
			}
			var f map[string]any
			if json.Unmarshal(b, &f) == nil {
				c.inbox <- f
			}
		}
	}()
	e.t.Cleanup(func() { _ = conn.Close() })
	return c
}

func (c *wsClient) send(v any) {
	c.t.Helper()
	if err := c.conn.WriteJSON(v); err != nil {
		c.t.Fatalf("ws write: %v", err)
	}
}

// expect waits for a frame of type typ matching match (nil: any), skipping
// others, and returns it.
func (c *wsClient) expect(typ string, match func(map[string]any) bool) map[string]any {
	c.t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case f, ok := <-c.inbox:
			if !ok {
				c.t.Fatalf("connection closed while waiting for %q", typ)
			}
			if f["type"] == typ && (match == nil || match(f)) {
				return f
			}
		case <-deadline:
			c.t.Fatalf("no %q frame within 20s", typ)
		}
	}
}

// quiet asserts that no frame of type typ arrives within d; other frames
// are kept for later expects.
func (c *wsClient) quiet(typ string, d time.Duration) {
	c.t.Helper()
	var others []map[string]any
	defer func() {
		for _, f := range others {
			c.inbox <- f
		}
	}()
	deadline := time.After(d)
	for {
		select {
		case f, ok := <-c.inbox:
			if !ok {
				return
			}
			if f["type"] == typ {
				c.t.Fatalf("unexpected %q frame: %v", typ, f)
			}
			others = append(others, f)
		case <-deadline:
			return
		}
	}
}

func data(f map[string]any) map[string]any {
	d, _ := f["data"].(map[string]any)
	return d
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitFor(t, what, 30*time.Second, cond)
}

// waitFor polls cond until it holds, failing the test after d.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting until %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func count(t *testing.T, pool *pgxpool.Pool, query string, args ...any) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

func issueAt(t *testing.T, user int64, at time.Time) string {
	t.Helper()
	s, err := auth.Issue([]byte(testSecret), user, time.Hour, at)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// runCmd runs a one-shot chat command to completion and returns its exit code.
func runCmd(t *testing.T, e *env, args ...string) int {
	t.Helper()
	cmd := exec.Command(chatBin, args...)
	cmd.Env = e.vars()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Logf("chat %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return cmd.ProcessState.ExitCode()
}
