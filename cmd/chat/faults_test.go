package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parleychat/parley/api/auth"
	"github.com/parleychat/parley/internal/contracttest"
	"github.com/parleychat/parley/internal/testbin"
)

// TestSystemSurvivesFaults runs the pieces as separate processes on a
// private PostgreSQL cluster, sends messages over REST and WebSocket the way
// a client does (retrying with the same client_message_id until
// acknowledged), and meanwhile SIGKILLs each worker, the api and the
// gateway, and restarts PostgreSQL without a clean shutdown. Once the load
// stops: every queue drains, nothing acknowledged is lost or stored twice,
// every conversation's sequence is gap-free, each sender's messages are
// stored in the order it sent them, no event is a dead letter, and every
// WebSocket recipient, after a REST catch-up, has every message sent to it.
//
// FAULT_ROUNDS (default 1) repeats the round of faults; BENCHMARKS.md has
// the long form's figures.
func TestSystemSurvivesFaults(t *testing.T) {
	rounds := 1
	if v := os.Getenv("FAULT_ROUNDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("FAULT_ROUNDS=%q: want a positive integer", v)
		}
		rounds = n
	}
	pg := startCluster(t)
	e := &env{t: t, dbURL: pg.url("chat"), http: freeAddr(t), gateway: freeAddr(t), admin: freeAddr(t), s3: freeAddr(t), dataDir: t.TempDir()}
	// A process that loses PostgreSQL answers 503 and keeps running; the
	// log level keeps the output of a failing run readable.
	e.extra = append(e.extra, "CHAT_LOG_LEVEL=info")
	if code := runCmd(t, e, "migrate"); code != 0 {
		t.Fatalf("migrate exited %d", code)
	}
	pool, err := pgxpool.New(context.Background(), e.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	e.pool = pool

	gwEnv := e.gatewayView()
	procs := map[string]*proc{}
	var procsMu sync.Mutex
	startPiece := func(name string) {
		var p *proc
		switch name {
		case "api":
			p = e.start("api")
			e.waitHTTP(p)
		case "gateway":
			p = gwEnv.start("gateway")
			gwEnv.waitHTTP(p)
		default:
			// Started, so that each fault finds the pieces running.
			p = e.start("worker", name)
			waitLogged(t, p, "msg=started")
		}
		procsMu.Lock()
		procs[name] = p
		procsMu.Unlock()
	}
	pieces := []string{"api", "gateway", "persister", "fanout", "notifier"}
	for _, name := range pieces {
		startPiece(name)
	}

	const (
		restSenders = 3
		wsSenders   = 3
	)
	load := newFaultLoad(e, gwEnv)
	for i := range restSenders {
		load.run(func(stop <-chan struct{}) { load.restSender(stop, int64(1+i), int64(101+i)) })
	}
	for i := range wsSenders {
		load.run(func(stop <-chan struct{}) { load.wsSender(stop, int64(11+i), int64(111+i)) })
	}
	var recipients []*faultRecipient
	for i := range restSenders + wsSenders {
		user := int64(101 + i)
		if i >= restSenders {
			user = int64(111 + i - restSenders)
		}
		r := &faultRecipient{user: user, got: map[string]bool{}}
		recipients = append(recipients, r)
		load.run(func(stop <-chan struct{}) { load.receive(stop, r) })
	}
	t.Cleanup(load.stop)

	// progress waits until both transports have had more sends acknowledged:
	// the system recovered from the last fault. Generous, for a loaded
	// machine; it measures nothing.
	progress := func(what string) {
		t.Helper()
		rest, ws := load.restAcked.Load(), load.wsAcked.Load()
		deadline := time.Now().Add(2 * time.Minute)
		for load.restAcked.Load() < rest+10 || load.wsAcked.Load() < ws+10 {
			if time.Now().After(deadline) {
				t.Fatalf("no progress within 2m after %s: %d REST and %d WebSocket sends acknowledged since", what, load.restAcked.Load()-rest, load.wsAcked.Load()-ws)
			}
			if err := load.failure(); err != nil {
				t.Fatal(err)
			}
			procsMu.Lock()
			for name, p := range procs {
				select {
				case <-p.done:
					t.Fatalf("chat %s exited on its own after %s: %v\n%s", name, what, p.exited, tail(p.output(), 40))
				default:
				}
			}
			procsMu.Unlock()
			time.Sleep(20 * time.Millisecond)
		}
	}
	progress("start")
	faults := 0
	for range rounds {
		for _, name := range pieces {
			procsMu.Lock()
			p := procs[name]
			procsMu.Unlock()
			p.kill() // SIGKILL: no shutdown, whatever was in flight is cut
			faults++
			startPiece(name)
			progress("SIGKILL of " + name)
		}
		pg.restart(t)
		faults++
		progress("a PostgreSQL restart")
	}
	load.stop()
	ended := time.Now()
	if err := load.failure(); err != nil {
		t.Fatal(err)
	}
	// Every piece survived what it did not die of.
	for name, p := range procs {
		select {
		case <-p.done:
			t.Fatalf("chat %s exited on its own: %v\n%s", name, p.exited, tail(p.output(), 40))
		default:
		}
	}

	// Every queue drains.
	queues := pgStrings(t, pool, `SELECT table_name::text FROM information_schema.tables WHERE table_name LIKE 'queue\_%' ORDER BY 1`)
	if len(queues) == 0 {
		t.Fatal("no queue tables")
	}
	waitLong(t, "every queue table is empty", func() bool {
		for _, q := range queues {
			if pgCount(t, pool, `SELECT count(*) FROM `+q) > 0 {
				return false
			}
		}
		return true
	})
	drained := time.Since(ended)
	if n := pgCount(t, pool, `SELECT count(*) FROM dead_letters`); n != 0 {
		t.Errorf("%d dead letters, want none: %v", n, pgStrings(t, pool, `SELECT worker || ': ' || event_type || ': ' || error FROM dead_letters LIMIT 5`))
	}

	// Nothing acknowledged is lost, nothing is stored twice.
	acked := load.acknowledged()
	stored := map[string]storedMessage{}
	rows, err := pool.Query(context.Background(), `SELECT id::text, conversation_id::text, seq, sender_id, recipient_id, coalesce(client_message_id, '') FROM messages`)
	if err != nil {
		t.Fatal(err)
	}
	byClientID := map[string]int{}
	for rows.Next() {
		var m storedMessage
		if err := rows.Scan(&m.id, &m.conv, &m.seq, &m.sender, &m.recipient, &m.clientID); err != nil {
			t.Fatal(err)
		}
		stored[m.id] = m
		byClientID[fmt.Sprintf("%d/%s", m.sender, m.clientID)]++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	lost, duplicated := 0, 0
	for _, a := range acked {
		if _, ok := stored[a.id]; !ok {
			lost++
			if lost <= 5 {
				t.Errorf("acknowledged message %s (%s) is not stored", a.id, a.clientID)
			}
		}
	}
	for k, n := range byClientID {
		if n > 1 {
			duplicated += n - 1
			t.Errorf("client message %s stored %d times", k, n)
		}
	}

	// Gap-free sequences, and each sender's messages in the order it sent
	// them (a sender sends the next only once the last is acknowledged).
	if n := pgCount(t, pool, `SELECT count(*) FROM (SELECT conversation_id FROM messages GROUP BY 1 HAVING min(seq) <> 1 OR max(seq) <> count(*)) g`); n != 0 {
		t.Errorf("%d conversations have gaps in their sequence", n)
	}
	last := map[int64]int64{} // sender → seq of its previous acknowledged message
	for _, a := range acked {
		m, ok := stored[a.id]
		if !ok {
			continue
		}
		if prev, seen := last[a.sender]; seen && m.seq <= prev {
			t.Errorf("sender %d: message %s stored at seq %d, after its previous one at seq %d", a.sender, a.clientID, m.seq, prev)
		}
		last[a.sender] = m.seq
	}

	// WebSocket recipients: what was pushed, plus a REST catch-up from the
	// last sequence number the recipient saw pushed, is everything.
	pushed := 0
	for _, r := range recipients {
		r.mu.Lock()
		got := r.got
		r.mu.Unlock()
		pushed += len(got)
		all := map[string]bool{}
		for id := range got {
			if _, ok := stored[id]; !ok {
				t.Errorf("user %d was pushed message %s, which is not stored", r.user, id)
			}
			all[id] = true
		}
		var conv string
		for _, a := range acked {
			if m, ok := stored[a.id]; ok && a.recipient == r.user {
				conv = m.conv
				break
			}
		}
		if conv != "" {
			// A client resumes after the last sequence below which it has
			// every message, not after the highest one pushed.
			for _, m := range e.catchUp(r.user, conv, contiguous(got, stored, conv)) {
				all[m.ID] = true
			}
		}
		for _, a := range acked {
			if a.recipient == r.user && !all[a.id] {
				t.Errorf("user %d: message %s missing after pushes and catch-up", r.user, a.id)
			}
		}
	}
	if load.retries.Load() == 0 || pushed == 0 {
		t.Errorf("%d retried sends and %d pushes: the faults never reached a client, or nothing was pushed", load.retries.Load(), pushed)
	}
	t.Logf("fault test: %d rounds, %d faults; %d messages acknowledged (%d REST, %d WebSocket), %d retried sends; %d lost, %d duplicated; %d pushed to recipients; queues drained %v after the load ended",
		rounds, faults, len(acked), load.restAcked.Load(), load.wsAcked.Load(), load.retries.Load(), lost, duplicated, pushed, drained.Round(time.Millisecond))
}

// TestWorkerStartsBeforePostgreSQL: a process started while PostgreSQL is
// down (restarting, or a machine still booting) waits for it and starts
// once it is up, instead of exiting.
func TestWorkerStartsBeforePostgreSQL(t *testing.T) {
	pg := startCluster(t)
	e := &env{t: t, dbURL: pg.url("chat"), http: freeAddr(t), gateway: freeAddr(t), admin: freeAddr(t), s3: freeAddr(t), dataDir: t.TempDir()}
	if code := runCmd(t, e, "migrate"); code != 0 {
		t.Fatalf("migrate exited %d", code)
	}
	pg.stop(t)
	p := e.start("worker", "persister")
	waitLogged(t, p, "waiting for PostgreSQL")
	pg.start(t)
	waitLogged(t, p, "msg=started")
}

// waitLogged waits until p has logged s, failing if p exits first.
func waitLogged(t *testing.T, p *proc, s string) {
	t.Helper()
	waitFor(t, fmt.Sprintf("chat %s logged %q", strings.Join(p.cmd.Args[1:], " "), s), time.Minute, func() bool {
		select {
		case <-p.done:
			t.Fatalf("chat %s exited: %v\n%s", strings.Join(p.cmd.Args[1:], " "), p.exited, tail(p.output(), 40))
		default:
		}
		return strings.Contains(p.output(), s)
	})
}

type storedMessage struct {
	id, conv, clientID string
	seq                int64
	sender, recipient  int64
}

// contiguous is the highest sequence n of conv such that got holds every
// message with seq ≤ n: where a client that kept what was pushed resumes.
func contiguous(got map[string]bool, stored map[string]storedMessage, conv string) int64 {
	seqs := map[int64]bool{}
	for id := range got {
		if m, ok := stored[id]; ok && m.conv == conv {
			seqs[m.seq] = true
		}
	}
	n := int64(0)
	for seqs[n+1] {
		n++
	}
	return n
}

// ackedSend is a send the server acknowledged.
type ackedSend struct {
	id, clientID      string
	sender, recipient int64
}

// faultLoad is the clients: senders that retry until acknowledged and
// recipients that reconnect, all reporting instead of failing the test
// (they run off its goroutine).
type faultLoad struct {
	e, gw     *env
	done      chan struct{}
	wg        sync.WaitGroup
	stopOnce  sync.Once
	restAcked atomic.Int64
	wsAcked   atomic.Int64
	retries   atomic.Int64

	mu    sync.Mutex
	acked []ackedSend
	err   error
}

func newFaultLoad(e, gw *env) *faultLoad {
	return &faultLoad{e: e, gw: gw, done: make(chan struct{})}
}

func (l *faultLoad) run(f func(stop <-chan struct{})) {
	l.wg.Go(func() { f(l.done) })
}

func (l *faultLoad) stop() {
	l.stopOnce.Do(func() { close(l.done) })
	l.wg.Wait()
}

func (l *faultLoad) fail(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err == nil {
		l.err = err
	}
}

func (l *faultLoad) failure() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

func (l *faultLoad) record(a ackedSend) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.acked = append(l.acked, a)
}

func (l *faultLoad) acknowledged() []ackedSend {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]ackedSend(nil), l.acked...)
}

// retryBackoff pauses between retries; false once the load is stopping.
// A send in flight when the load stops is abandoned unacknowledged, which
// a client may do: it is then neither required nor forbidden to be stored.
func retryBackoff(stop <-chan struct{}, d time.Duration) bool {
	select {
	case <-stop:
		return false
	case <-time.After(d):
		return true
	}
}

// errPermanent is an answer no retry can change: a bug.
var errPermanent = errors.New("refused")

// restSender sends to one recipient over REST, one message at a time.
func (l *faultLoad) restSender(stop <-chan struct{}, user, to int64) {
	tok, err := auth.Issue([]byte(testSecret), user, 24*time.Hour, time.Now())
	if err != nil {
		l.fail(err)
		return
	}
	client := &http.Client{Timeout: 10 * time.Second}
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		cid := fmt.Sprintf("rest-%d-%d", user, i)
		body, _ := json.Marshal(map[string]any{"recipient_id": to, "content_type": "text", "text_content": fmt.Sprintf("%d #%d", user, i), "client_message_id": cid})
		for attempt := 0; ; attempt++ {
			if attempt > 0 {
				l.retries.Add(1)
				if !retryBackoff(stop, 100*time.Millisecond) {
					return
				}
			}
			id, err := postMessage(client, l.e.http, tok, body)
			if errors.Is(err, errPermanent) {
				l.fail(fmt.Errorf("user %d, %s: %w", user, cid, err))
				return
			}
			if err == nil {
				l.record(ackedSend{id: id, clientID: cid, sender: user, recipient: to})
				l.restAcked.Add(1)
				break
			}
		}
	}
}

// postMessage is one attempt: the message id, a retryable error (no answer,
// 5xx, 429), or errPermanent.
func postMessage(client *http.Client, addr, tok string, body []byte) (string, error) {
	req, err := http.NewRequest("POST", "http://"+addr+"/api/v1/chat/messages", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	switch {
	case resp.StatusCode == http.StatusOK:
		var m message
		if err := json.Unmarshal(raw, &m); err != nil || m.ID == "" {
			return "", fmt.Errorf("%w: undecodable answer %q", errPermanent, raw)
		}
		return m.ID, nil
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		return "", fmt.Errorf("status %d", resp.StatusCode)
	default:
		return "", fmt.Errorf("%w: status %d: %s", errPermanent, resp.StatusCode, raw)
	}
}

// wsSender sends to one recipient over the gateway's WebSocket, one message
// at a time, reconnecting when the connection breaks.
func (l *faultLoad) wsSender(stop <-chan struct{}, user, to int64) {
	var conn *websocket.Conn
	defer func() {
		if conn != nil {
			_ = conn.Close()
		}
	}()
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		cid := fmt.Sprintf("ws-%d-%d", user, i)
		frame := map[string]any{"action": "sendMessage", "data": map[string]any{"recipientId": to, "contentType": "text", "textContent": fmt.Sprintf("%d #%d", user, i), "clientMessageId": cid}}
		for attempt := 0; ; attempt++ {
			if attempt > 0 {
				l.retries.Add(1)
				if !retryBackoff(stop, 100*time.Millisecond) {
					return
				}
			}
			if conn == nil {
				c, err := dialWS(l.gw, user)
				if err != nil {
					continue
				}
				conn = c
			}
			id, err := wsSend(conn, frame)
			if errors.Is(err, errPermanent) {
				l.fail(fmt.Errorf("user %d, %s: %w", user, cid, err))
				return
			}
			if err == nil {
				l.record(ackedSend{id: id, clientID: cid, sender: user, recipient: to})
				l.wsAcked.Add(1)
				break
			}
			var retry retryLater
			if !errors.As(err, &retry) {
				_ = conn.Close() // broken or silent: a new connection
				conn = nil
			}
		}
	}
}

// retryLater is a refusal the server asks to retry (overloaded,
// unavailable) on the same connection.
type retryLater struct{ code string }

func (r retryLater) Error() string { return "retry later: " + r.code }

func dialWS(e *env, user int64) (*websocket.Conn, error) {
	tok, err := auth.Issue([]byte(testSecret), user, 24*time.Hour, time.Now())
	if err != nil {
		return nil, err
	}
	d := contracttest.Dialer(e.t)
	d.HandshakeTimeout = 10 * time.Second
	conn, _, err := d.Dial("ws://"+e.http+"/ws?token="+tok, nil)
	return conn, err
}

// wsSend writes one sendMessage frame and reads until its answer: the
// acknowledgment or an error frame. Other frames (the greeting) are skipped.
func wsSend(conn *websocket.Conn, frame any) (string, error) {
	_ = conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if err := conn.WriteJSON(frame); err != nil {
		return "", err
	}
	_ = conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	for {
		var f struct {
			Type      string `json:"type"`
			MessageID string `json:"messageId"`
			Code      string `json:"code"`
			Message   string `json:"message"`
		}
		if err := conn.ReadJSON(&f); err != nil {
			return "", err
		}
		switch f.Type {
		case "acknowledgment":
			return f.MessageID, nil
		case "error":
			if f.Code == "overloaded" || f.Code == "unavailable" {
				return "", retryLater{f.Code}
			}
			return "", fmt.Errorf("%w: error frame %s: %s", errPermanent, f.Code, f.Message)
		}
	}
}

// faultRecipient is one user's device: the message ids pushed to it.
type faultRecipient struct {
	user int64
	mu   sync.Mutex
	got  map[string]bool
}

// receive keeps a connection open as r, reconnecting after every break.
func (l *faultLoad) receive(stop <-chan struct{}, r *faultRecipient) {
	for {
		conn, err := dialWS(l.gw, r.user)
		if err != nil {
			if !retryBackoff(stop, 100*time.Millisecond) {
				return
			}
			continue
		}
		closed := make(chan struct{})
		go func() {
			select {
			case <-stop:
			case <-closed:
			}
			_ = conn.Close()
		}()
		for {
			var f struct {
				Type string `json:"type"`
				Data struct {
					ID string `json:"id"`
				} `json:"data"`
			}
			if err := conn.ReadJSON(&f); err != nil {
				break
			}
			if f.Type == "newMessage" {
				r.mu.Lock()
				r.got[f.Data.ID] = true
				r.mu.Unlock()
			}
		}
		close(closed)
		select {
		case <-stop:
			return
		default:
		}
	}
}

// cluster is a PostgreSQL cluster of this test's own, so that restarting it
// disturbs no other test on the machine's server.
type cluster struct {
	pgCtl, dir, port string
	cred             *syscall.Credential // the owner, when the test runs as root
}

func startCluster(t *testing.T) *cluster {
	t.Helper()
	initdb := testbin.FindPostgres(t, "initdb")
	c := &cluster{pgCtl: testbin.FindPostgres(t, "pg_ctl")}
	// PostgreSQL refuses to run as root; then the cluster belongs to the
	// postgres user, in a directory it can reach.
	parent, err := os.MkdirTemp("", "parley-pg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(parent) })
	c.dir = filepath.Join(parent, "data")
	if err := os.Mkdir(c.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("running as root, PostgreSQL needs another user: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		c.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chmod(parent, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(c.dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	addr := freeAddr(t)
	c.port = addr[strings.LastIndex(addr, ":")+1:]
	if out, err := c.command(initdb, "-D", c.dir, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync").CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	c.start(t)
	t.Cleanup(func() { _ = c.command(c.pgCtl, "-D", c.dir, "stop", "-m", "immediate", "-w").Run() })
	return c
}

// command runs a PostgreSQL program as the cluster's owner.
func (c *cluster) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Dir = c.dir
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	}
	return cmd
}

func (c *cluster) url(database string) string {
	return "postgres://postgres@127.0.0.1:" + c.port + "/" + database + "?sslmode=disable"
}

func (c *cluster) start(t *testing.T) {
	t.Helper()
	// TCP only (socket paths under a temporary directory can exceed the
	// length Unix allows). fsync is off: the test kills processes, not the
	// machine, and what a process wrote survives its death without it.
	opts := "-c listen_addresses=127.0.0.1 -c port=" + c.port + " -c unix_socket_directories= -c fsync=off -c max_connections=100"
	out, err := c.command(c.pgCtl, "-D", c.dir, "-l", filepath.Join(c.dir, "server.log"), "-o", opts, "-w", "-t", "120", "start").CombinedOutput()
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(c.dir, "server.log"))
		t.Fatalf("pg_ctl start: %v\n%s\n%s", err, out, tail(string(log), 30))
	}
}

// restart stops the server as a crash would (immediate: no checkpoint,
// every connection cut) and starts it again, which replays the WAL.
func (c *cluster) restart(t *testing.T) {
	t.Helper()
	c.stop(t)
	c.start(t)
}

// stop stops the server as a crash would.
func (c *cluster) stop(t *testing.T) {
	t.Helper()
	if out, err := c.command(c.pgCtl, "-D", c.dir, "stop", "-m", "immediate", "-w").CombinedOutput(); err != nil {
		t.Fatalf("pg_ctl stop: %v\n%s", err, out)
	}
}

// pgCount is count that survives the test's own pool meeting a connection
// the restart cut.
func pgCount(t *testing.T, pool *pgxpool.Pool, query string) int {
	t.Helper()
	var n int
	err := retryQuery(func() error { return pool.QueryRow(context.Background(), query).Scan(&n) })
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

func pgStrings(t *testing.T, pool *pgxpool.Pool, query string) []string {
	t.Helper()
	var out []string
	err := retryQuery(func() error {
		out = nil
		rows, err := pool.Query(context.Background(), query)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				return err
			}
			out = append(out, s)
		}
		return rows.Err()
	})
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return out
}

func retryQuery(f func() error) error {
	var err error
	for range 5 {
		if err = f(); err == nil {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return err
}

// waitLong is waitUntil with the patience a loaded machine needs to drain
// what piled up during the faults.
func waitLong(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitFor(t, what, 3*time.Minute, cond)
}
