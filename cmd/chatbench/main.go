// Command chatbench is a load tool for the chat's WebSocket path. It
// connects users in pairs (or, with -group-size, in groups it creates over
// REST), sends messages at a fixed total rate over WebSocket and measures
// send→receive latency at each recipient (in groups also to a message's
// last member), deliveries
// per second, refusals (error frames), with -db the chat database's
// PostgreSQL transactions per message sent, and (with -server-pid) the
// server's memory per connection. With -feed the connections are opened
// in feed mode and latency is measured to each message's feedChange frame.
//
// It talks only to loopback addresses, and bounds its sends in flight and
// its run time.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
	"github.com/jackc/pgx/v5"

	"github.com/parleychat/parley/api/auth"
)

// devSecret matches `chat dev`'s development JWT secret.
const devSecret = "parley-development-secret-do-not-use-in-production"

type options struct {
	wsURL      string
	secret     string
	users      int
	rate       float64
	duration   time.Duration
	warmup     time.Duration
	idle       time.Duration
	serverPID  int
	sourceIPs  []string
	firstUser  int64
	dialConc   int
	settleTime time.Duration
	dbDSN      string
	statsLag   time.Duration
	// groupSize > 2 puts the users in groups of that many instead of
	// pairs; each message then goes to groupSize-1 members.
	groupSize int
	apiURL    string // the REST API that creates the groups
	// feed opens every connection in feed mode (?feed=1): messages arrive
	// as feedChange frames once stored, and latency is measured to those.
	feed bool
}

// Bounds of one run: sends in flight beyond maxInFlight are skipped (and
// counted), and a run sends for at most maxDuration.
const (
	maxInFlight = 2000
	maxDuration = 10 * time.Minute
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "chatbench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	var o options
	var sources string
	fs := flag.NewFlagSet("chatbench", flag.ContinueOnError)
	fs.StringVar(&o.wsURL, "url", "ws://127.0.0.1:8080/ws", "WebSocket endpoint")
	fs.StringVar(&o.secret, "secret", envOr("JWT_SECRET", devSecret), "HS256 secret to mint user tokens (default: chat dev's, or $JWT_SECRET)")
	fs.IntVar(&o.users, "users", 200, "connections to open, one user each, paired 1↔2, 3↔4, …")
	fs.Float64Var(&o.rate, "rate", 1000, "messages per second, all senders together (0: connect only)")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "how long to measure, after -warmup")
	fs.StringVar(&o.dbDSN, "db", "", "the chat database (postgres://…/chat): report its PostgreSQL transactions per message")
	fs.DurationVar(&o.statsLag, "stats-lag", 11*time.Second, "with -db: wait before each reading of pg_stat_database, which idle backends report up to 10s late")
	fs.DurationVar(&o.warmup, "warmup", 3*time.Second, "sending before measuring starts")
	fs.DurationVar(&o.idle, "idle", 0, "with -rate 0: hold the connections open this long before measuring memory")
	fs.IntVar(&o.serverPID, "server-pid", 0, "server process to read VmRSS from (/proc/PID/status)")
	fs.StringVar(&sources, "source-ips", "", "comma-separated local addresses to dial from, e.g. 127.0.0.2,127.0.0.3 (more ports for many connections)")
	fs.Int64Var(&o.firstUser, "first-user", 100000, "user id of the first connection")
	fs.IntVar(&o.dialConc, "dial-concurrency", 50, "connections opened at once")
	fs.DurationVar(&o.settleTime, "settle", 3*time.Second, "wait for in-flight deliveries after sending stops")
	fs.IntVar(&o.groupSize, "group-size", 2, "users per conversation: 2 pairs them in direct conversations, more puts them in groups of that many")
	fs.StringVar(&o.apiURL, "api", "", "the REST API's base URL, for creating groups (default: -url's host, http)")
	fs.BoolVar(&o.feed, "feed", false, "open the connections in feed mode (?feed=1): measure to the feedChange frame of each message")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.users < 2 || o.users%2 != 0 {
		return errors.New("-users must be an even number >= 2")
	}
	if o.groupSize < 2 || o.users%o.groupSize != 0 {
		return errors.New("-group-size must be at least 2 and divide -users")
	}
	if o.rate < 0 || o.duration <= 0 || o.warmup < 0 || o.warmup+o.duration > maxDuration {
		return fmt.Errorf("-rate must be >= 0, -duration > 0, and -warmup plus -duration at most %s", maxDuration)
	}
	u, err := url.Parse(o.wsURL)
	if err != nil {
		return fmt.Errorf("-url: %w", err)
	}
	if !loopback(u.Hostname()) {
		return fmt.Errorf("-url %s: only loopback servers", o.wsURL)
	}
	if o.apiURL == "" {
		o.apiURL = "http://" + u.Host
	}
	if a, err := url.Parse(o.apiURL); err != nil || !loopback(a.Hostname()) {
		return fmt.Errorf("-api %s: only a loopback server", o.apiURL)
	}
	if o.dbDSN != "" {
		cfg, err := pgx.ParseConfig(o.dbDSN)
		if err != nil {
			return fmt.Errorf("-db: %w", err)
		}
		if !loopback(cfg.Host) {
			return fmt.Errorf("-db: only a loopback PostgreSQL, not %s", cfg.Host)
		}
	}
	for _, s := range strings.Split(sources, ",") {
		if s = strings.TrimSpace(s); s != "" {
			if net.ParseIP(s) == nil {
				return fmt.Errorf("-source-ips: %q is not an IP address", s)
			}
			o.sourceIPs = append(o.sourceIPs, s)
		}
	}
	return bench(ctx, o, out)
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

type client struct {
	user int64
	peer int64
	conv string // the group's conversation id, in group mode
	conn *websocket.Conn
	wmu  sync.Mutex
}

type stats struct {
	mu        sync.Mutex
	latencies []time.Duration // send → newMessage at the recipient, measured window only
	refusals  map[string]int  // error frames by code
	// refusals that arrived in the measured window: those before it are
	// the run's start, where every pair's first message also creates its
	// conversation.
	refusedMeasured int
	sent            atomic.Int64
	received        atomic.Int64
	errors          atomic.Int64 // failed writes
	skipped         atomic.Int64 // sends not made: maxInFlight reached
	measuring       atomic.Bool
	// In group mode: deliveries per message (by its send number), and
	// the latency to a message's last member once all have it.
	members int // recipients of each message
	reached map[int64]int
	toLast  []time.Duration
	seq     atomic.Int64
}

func bench(ctx context.Context, o options, out io.Writer) error {
	rssBefore := rss(o.serverPID)
	st := &stats{refusals: map[string]int{}, members: o.groupSize - 1, reached: map[int64]int{}}
	fmt.Fprintf(out, "connecting %d users to %s …\n", o.users, o.wsURL)
	t0 := time.Now()
	clients, err := connectAll(ctx, o, st)
	defer func() {
		for _, c := range clients {
			if c != nil {
				_ = c.conn.Close()
			}
		}
	}()
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "connected %d in %s\n", len(clients), time.Since(t0).Round(time.Millisecond))
	if o.groupSize > 2 {
		if err := makeGroups(ctx, o, clients); err != nil {
			return err
		}
		fmt.Fprintf(out, "created %d groups of %d members\n", len(clients)/o.groupSize, o.groupSize)
	}

	if o.rate == 0 {
		if o.idle > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(o.idle):
			}
		}
		report(out, o, st, 0, rssBefore)
		return nil
	}

	var before int64
	if o.dbDSN != "" {
		fmt.Fprintf(out, "waiting %s for PostgreSQL's statistics to settle …\n", o.statsLag)
		if before, err = xacts(ctx, o); err != nil {
			return err
		}
	}
	sendCtx, cancel := context.WithTimeout(ctx, o.warmup+o.duration)
	defer cancel()
	interval := time.Duration(float64(time.Second) / o.rate)
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	sendStart := time.Now()
	measureStart := sendStart.Add(o.warmup)
	var measuredAt time.Time
	var recvAtMeasure, sentAtMeasure int64
	inFlight := make(chan struct{}, maxInFlight)
	var wg sync.WaitGroup
	next := 0
loop:
	for {
		select {
		case <-sendCtx.Done():
			break loop
		case now := <-ticker.C:
			if !st.measuring.Load() && now.After(measureStart) {
				recvAtMeasure, sentAtMeasure = st.received.Load(), st.sent.Load()
				measuredAt = now
				st.measuring.Store(true)
			}
			// A ticker drops the ticks a busy loop misses: send what is
			// due by now, so that the offered rate holds on a loaded
			// machine too.
			due := int(float64(now.Sub(sendStart))/float64(interval)) + 1
			for ; next < due; next++ {
				c := clients[next%len(clients)]
				select {
				case inFlight <- struct{}{}:
				default:
					st.skipped.Add(1)
					continue
				}
				wg.Go(func() {
					defer func() { <-inFlight }()
					send(c, st)
				})
			}
		}
	}
	wg.Wait()
	sendStop := time.Now()
	time.Sleep(o.settleTime)
	st.measuring.Store(false)
	window := sendStop.Sub(measuredAt)
	st.mu.Lock()
	refused := 0
	for _, n := range st.refusals {
		refused += n
	}
	fmt.Fprintf(out, "sent %d, delivered %d, refused %d %v (%d in the measured window), failed writes %d, skipped (over %d in flight) %d\n",
		st.sent.Load(), st.received.Load(), refused, st.refusals, st.refusedMeasured, st.errors.Load(), maxInFlight, st.skipped.Load())
	st.mu.Unlock()
	fmt.Fprintf(out, "sent/s (measured window): %.0f of %.0f offered\n", float64(st.sent.Load()-sentAtMeasure)/window.Seconds(), o.rate)
	deliveries := float64(st.received.Load()-recvAtMeasure) / (window + o.settleTime).Seconds()
	report(out, o, st, deliveries, rssBefore)
	if o.dbDSN != "" {
		after, err := xacts(ctx, o)
		if err != nil {
			return err
		}
		tpm, err := txPerMessage(before, after, st.sent.Load())
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "PostgreSQL transactions: %d for %d messages sent (warm-up included): %.2f per message\n",
			after-before-ownXacts, st.sent.Load(), tpm)
	}
	return nil
}

// ownXacts is how many of the counted transactions are chatbench's own:
// the first reading's (the second reading's is not in its own count).
const ownXacts = 1

// txPerMessage is the chat database's transactions (commits and rollbacks,
// every autocommit statement included) between two readings, less
// chatbench's own, per message sent between them.
func txPerMessage(before, after, sent int64) (float64, error) {
	if sent <= 0 {
		return 0, errors.New("no messages sent: no transactions per message")
	}
	n := after - before - ownXacts
	if n < 0 {
		return 0, fmt.Errorf("pg_stat_database went back from %d to %d (statistics reset?)", before, after)
	}
	return float64(n) / float64(sent), nil
}

// xacts reads the chat database's transaction count once the servers'
// backends have reported theirs, on a connection of its own, closed at
// once so that it reports its own single transaction.
func xacts(ctx context.Context, o options) (int64, error) {
	select {
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(o.statsLag):
	}
	conn, err := pgx.Connect(ctx, o.dbDSN)
	if err != nil {
		return 0, fmt.Errorf("-db: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var n int64
	if err := conn.QueryRow(ctx, `SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()`).Scan(&n); err != nil {
		return 0, fmt.Errorf("-db: read pg_stat_database: %w", err)
	}
	return n, nil
}

func connectAll(ctx context.Context, o options, st *stats) ([]*client, error) {
	clients := make([]*client, o.users)
	sem := make(chan struct{}, o.dialConc)
	var wg sync.WaitGroup
	var firstErr error
	var mu sync.Mutex
	for i := range o.users {
		user := o.firstUser + int64(i)
		peer := user + 1
		if i%2 == 1 {
			peer = user - 1
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := dial(ctx, o, user, i)
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = fmt.Errorf("connect user %d: %w", user, err)
				}
				mu.Unlock()
				return
			}
			c.peer = peer
			clients[i] = c
			go readLoop(c, st)
		}()
		if ctx.Err() != nil {
			break
		}
	}
	wg.Wait()
	return clients, firstErr
}

func dial(ctx context.Context, o options, user int64, i int) (*client, error) {
	tok, err := auth.Issue([]byte(o.secret), user, 24*time.Hour, time.Now())
	if err != nil {
		return nil, err
	}
	d := websocket.Dialer{HandshakeTimeout: 30 * time.Second, ReadBufferSize: 1024, WriteBufferSize: 1024}
	if len(o.sourceIPs) > 0 {
		local := &net.TCPAddr{IP: net.ParseIP(o.sourceIPs[i%len(o.sourceIPs)])}
		nd := &net.Dialer{LocalAddr: local, Timeout: 30 * time.Second}
		d.NetDialContext = nd.DialContext
	}
	q := "?token=" + url.QueryEscape(tok)
	if o.feed {
		q += "&feed=1"
	}
	conn, _, err := d.DialContext(ctx, o.wsURL+q, nil)
	if err != nil {
		return nil, err
	}
	return &client{user: user, conn: conn}, nil
}

type inFrame struct {
	Type      string `json:"type"`
	Code      string `json:"code"`
	MessageID string `json:"messageId"`
	Data      struct {
		TextContent string `json:"textContent"`
		SenderID    int64  `json:"senderId"`
		// A feedChange's entry: its kind and the change's data.
		Kind   string `json:"kind"`
		Change struct {
			TextContent string `json:"textContent"`
			SenderID    int64  `json:"senderId"`
		} `json:"data"`
	} `json:"data"`
}

func readLoop(c *client, st *stats) {
	for {
		_, b, err := c.conn.ReadMessage()
		if err != nil {
			return
		}
		var f inFrame
		if json.Unmarshal(b, &f) != nil {
			continue
		}
		if f.Type == "feedChange" && f.Data.Kind == "newMessage" {
			f.Type, f.Data.TextContent, f.Data.SenderID = "newMessage", f.Data.Change.TextContent, f.Data.Change.SenderID
		}
		switch f.Type {
		case "newMessage":
			if f.Data.SenderID == c.user {
				continue // another device of ours
			}
			ns, k, ok := parseBody(f.Data.TextContent)
			if !ok {
				continue
			}
			st.received.Add(1)
			lat := time.Since(time.Unix(0, ns))
			st.mu.Lock()
			if st.measuring.Load() {
				st.latencies = append(st.latencies, lat)
			}
			if st.members > 1 {
				st.reached[k]++
				if st.reached[k] == st.members {
					delete(st.reached, k)
					if st.measuring.Load() {
						st.toLast = append(st.toLast, lat)
					}
				}
			}
			st.mu.Unlock()
		case "error":
			st.mu.Lock()
			st.refusals[f.Code]++
			if st.measuring.Load() {
				st.refusedMeasured++
			}
			st.mu.Unlock()
		}
	}
}

// A message's text is "bench:<send time in ns>:<send number>".
func parseBody(text string) (ns, k int64, ok bool) {
	rest, ok := strings.CutPrefix(text, "bench:")
	if !ok {
		return 0, 0, false
	}
	a, b, ok := strings.Cut(rest, ":")
	if !ok {
		return 0, 0, false
	}
	ns, err1 := strconv.ParseInt(a, 10, 64)
	k, err2 := strconv.ParseInt(b, 10, 64)
	return ns, k, err1 == nil && err2 == nil
}

func send(c *client, st *stats) {
	to := fmt.Sprintf(`"recipientId":%d`, c.peer)
	if c.conv != "" {
		to = fmt.Sprintf(`"conversationId":%q`, c.conv)
	}
	msg := fmt.Sprintf(`{"action":"sendMessage","data":{%s,"contentType":"text","textContent":"bench:%d:%d"}}`, to, time.Now().UnixNano(), st.seq.Add(1))
	c.wmu.Lock()
	_ = c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second)) // bounds the wait for a stuck server
	err := c.conn.WriteMessage(websocket.TextMessage, []byte(msg))
	c.wmu.Unlock()
	if err != nil {
		st.errors.Add(1)
		return
	}
	st.sent.Add(1)
}

func report(out io.Writer, o options, st *stats, deliveries float64, rssBefore int64) {
	st.mu.Lock()
	lat := slices.Clone(st.latencies)
	st.mu.Unlock()
	slices.Sort(lat)
	if len(lat) > 0 {
		fmt.Fprintf(out, "send→receive latency over %d deliveries: p50 %s  p99 %s  p99.9 %s  max %s\n", len(lat),
			pct(lat, 50), pct(lat, 99), pct(lat, 99.9), lat[len(lat)-1].Round(time.Microsecond))
		fmt.Fprintf(out, "deliveries/s (measured window and settle time): %.0f\n", deliveries)
	}
	if st.members > 1 {
		toLast := slices.Clone(st.toLast)
		slices.Sort(toLast)
		if len(toLast) > 0 {
			fmt.Fprintf(out, "send→last of %d members over %d messages: p50 %s  p99 %s  p99.9 %s  max %s\n", st.members, len(toLast),
				pct(toLast, 50), pct(toLast, 99), pct(toLast, 99.9), toLast[len(toLast)-1].Round(time.Microsecond))
		}
	}
	if o.serverPID > 0 {
		after := rss(o.serverPID)
		fmt.Fprintf(out, "server RSS: before %s, after %s, per connection %.1f KiB\n", kib(rssBefore), kib(after),
			float64(after-rssBefore)/float64(o.users)/1024)
	}
}

func pct(sorted []time.Duration, p float64) time.Duration {
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	i = max(0, min(i, len(sorted)-1))
	return sorted[i].Round(time.Microsecond)
}

func kib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/1024/1024) }

// rss reads a process's resident set size in bytes from /proc.
func rss(pid int) int64 {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n * 1024
			}
		}
	}
	return 0
}

// makeGroups creates a group for every groupSize consecutive users, by its
// first member over REST, and gives each member the conversation id.
func makeGroups(ctx context.Context, o options, clients []*client) error {
	hc := &http.Client{Timeout: 30 * time.Second}
	for g := 0; g < len(clients); g += o.groupSize {
		owner := clients[g]
		ids := make([]int64, 0, o.groupSize-1)
		for _, c := range clients[g+1 : g+o.groupSize] {
			ids = append(ids, c.user)
		}
		body, err := json.Marshal(map[string]any{"title": fmt.Sprintf("bench %d", g/o.groupSize), "member_ids": ids})
		if err != nil {
			return err
		}
		tok, err := auth.Issue([]byte(o.secret), owner.user, time.Hour, time.Now())
		if err != nil {
			return err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, o.apiURL+"/api/v1/chat/groups", bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			return fmt.Errorf("create group: %w", err)
		}
		var conv struct {
			ID string `json:"id"`
		}
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		_ = resp.Body.Close()
		if resp.StatusCode/100 != 2 || json.Unmarshal(raw, &conv) != nil || conv.ID == "" {
			return fmt.Errorf("create group: status %d: %s", resp.StatusCode, raw)
		}
		for _, c := range clients[g : g+o.groupSize] {
			c.conv = conv.ID
		}
	}
	return nil
}
