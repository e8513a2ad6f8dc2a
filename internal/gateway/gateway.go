// Package gateway is a local stand-in for an API Gateway WebSocket API.
//
// It accepts WebSocket clients, invokes the same route handlers that run as
// Lambdas on AWS ($connect, $disconnect, $default) with the same event shapes,
// and serves the API Gateway Management API (POST/GET/DELETE
// /@connections/{id}) so that the aws-sdk-go-v2 apigatewaymanagementapi
// client pushes to clients unchanged.
//
// Mount ServeHTTP directly (no http.TimeoutHandler: the connection is
// hijacked) and serve AdminHandler as the root handler of a listener bound to
// loopback. http.Server.Shutdown does not see hijacked connections: call
// Gateway.Shutdown as well.
package gateway

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	lambdaevents "github.com/aws/aws-lambda-go/events"
	"github.com/gorilla/websocket"
)

// Handler is the shape of an API Gateway WebSocket route Lambda.
type Handler func(ctx context.Context, req lambdaevents.APIGatewayWebsocketProxyRequest) (lambdaevents.APIGatewayProxyResponse, error)

// Routes are the route handlers. A nil Connect accepts every client, a nil
// Disconnect is skipped, and a nil Default answers each message with the
// Forbidden frame API Gateway sends when no route matches.
type Routes struct {
	Connect, Disconnect, Default Handler
}

// ExpiresHeader, in a successful $connect response, is when the
// connection's credentials expire, in Unix milliseconds: the gateway then
// sends Config.ExpiredFrame and closes it with wsproto.CloseTokenExpired.
// API Gateway has no such feature.
const ExpiresHeader = "X-Parley-Connection-Expires"

// Config holds the limits. Zero values take API Gateway's defaults.
type Config struct {
	// MaxMessageBytes bounds an inbound message (larger closes with 1009)
	// and a posted payload (larger is refused with 413). Default 128 KiB.
	MaxMessageBytes int
	// IdleTimeout closes a connection that sent no data frame for that
	// long; control frames do not count. Default 10 minutes.
	IdleTimeout time.Duration
	// MaxConnectionAge closes every connection that old with 1001.
	// Default 2 hours.
	MaxConnectionAge time.Duration
	// SendBuffer is how many outbound messages may wait per connection;
	// a connection whose buffer is full is dropped. Default 256.
	SendBuffer int
	// WriteTimeout bounds one write to a client. Default 10 seconds.
	WriteTimeout time.Duration
	// PingInterval, when positive, sends protocol pings and drops a peer
	// that missed two pongs. API Gateway sends none, so it is off by default.
	PingInterval time.Duration
	// Stage is RequestContext.Stage and the optional path prefix of the
	// management API. Default "local".
	Stage string
	// DomainName is RequestContext.DomainName. Default: the Host of the
	// upgrade request.
	DomainName string
	// APIID is RequestContext.APIID: on AWS the WebSocket API's id, here
	// the gateway's identity, which a $connect handler may record with the
	// connection so that the gateway's next start can forget it. Default
	// empty.
	APIID string
	// ExpiredFrame is sent to a connection whose credentials expired (see
	// ExpiresHeader) before it is closed; nil sends none.
	ExpiredFrame []byte
	// AdminSecret is the shared secret every management API request must
	// carry in the SecretHeader header (WithSecret sets it on the SDK's
	// client): loopback alone would let any local process push frames to
	// any user. Empty refuses every request. API Gateway needs none: IAM
	// signs its calls.
	AdminSecret string
}

const (
	defaultMaxMessageBytes  = 128 << 10
	defaultIdleTimeout      = 10 * time.Minute
	defaultMaxConnectionAge = 2 * time.Hour
	defaultSendBuffer       = 256
	defaultWriteTimeout     = 10 * time.Second
	defaultStage            = "local"

	// handlerTimeout is API Gateway's integration timeout.
	handlerTimeout = 29 * time.Second
)

func (c Config) withDefaults() Config {
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = defaultMaxMessageBytes
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = defaultIdleTimeout
	}
	if c.MaxConnectionAge <= 0 {
		c.MaxConnectionAge = defaultMaxConnectionAge
	}
	if c.SendBuffer <= 0 {
		c.SendBuffer = defaultSendBuffer
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = defaultWriteTimeout
	}
	if c.PingInterval < 0 {
		c.PingInterval = 0
	}
	if c.Stage == "" {
		c.Stage = defaultStage
	}
	return c
}

// Gateway accepts WebSocket clients and runs the route handlers for them.
type Gateway struct {
	routes   Routes
	cfg      Config
	log      *slog.Logger
	upgrader websocket.Upgrader
	// closeGrace bounds the wait for a peer's close frame.
	closeGrace time.Duration
	// newID makes connection, request and message ids; tests replace it.
	newID func() string

	mu     sync.RWMutex
	conns  map[string]*conn
	closed bool
	// live counts connections from the $connect call to the end of their
	// $disconnect call, so Shutdown can wait for them.
	live sync.WaitGroup

	// framesIn and framesOut count data frames received from and written
	// to clients, for metrics: atomics, so the per-frame cost is one add.
	framesIn, framesOut atomic.Uint64
}

// New returns a Gateway. A nil logger discards logs.
func New(routes Routes, cfg Config, logger *slog.Logger) *Gateway {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.withDefaults()
	return &Gateway{
		routes: routes,
		cfg:    cfg,
		log:    logger,
		upgrader: websocket.Upgrader{
			HandshakeTimeout: cfg.WriteTimeout,
			// Small per-connection buffers and one shared write pool keep
			// idle connections cheap. The read buffer holds frame headers
			// and small frames; a read larger than it bypasses it.
			ReadBufferSize:  256,
			WriteBufferSize: 4 << 10,
			WriteBufferPool: &sync.Pool{},
			// API Gateway does not check Origin; a $connect handler can.
			CheckOrigin: func(*http.Request) bool { return true },
		},
		closeGrace: min(cfg.WriteTimeout, time.Second),
		newID:      randomID,
		conns:      make(map[string]*conn),
	}
}

// Len returns the number of live connections.
func (g *Gateway) Len() int {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return len(g.conns)
}

// FramesIn returns how many data frames clients have sent since New.
func (g *Gateway) FramesIn() uint64 { return g.framesIn.Load() }

// FramesOut returns how many data frames were written to clients since New.
func (g *Gateway) FramesOut() uint64 { return g.framesOut.Load() }

// ServeHTTP runs $connect on an upgrade request and, if it answers 2xx,
// completes the upgrade and hands the connection to its own goroutines.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !websocket.IsWebSocketUpgrade(r) {
		w.Header().Set("Upgrade", "websocket")
		http.Error(w, "Upgrade Required", http.StatusUpgradeRequired)
		return
	}
	// Checked before $connect so that a handler never sees a request the
	// upgrade would refuse anyway.
	if r.Method != http.MethodGet || r.Header.Get("Sec-Websocket-Key") == "" ||
		r.Header.Get("Sec-Websocket-Version") != "13" {
		http.Error(w, "Bad Request", http.StatusBadRequest)
		return
	}
	if !g.admit() {
		http.Error(w, "Service Unavailable", http.StatusServiceUnavailable)
		return
	}
	served := false
	defer func() {
		if !served {
			g.live.Done()
		}
	}()

	now := time.Now()
	c := &conn{
		id:          g.newID(),
		sourceIP:    hostOnly(r.RemoteAddr),
		userAgent:   r.UserAgent(),
		host:        r.Host,
		domain:      g.cfg.DomainName,
		connectedAt: now,
		done:        make(chan struct{}),
		writerDone:  make(chan struct{}),
	}
	if c.domain == "" {
		c.domain = r.Host
	}
	c.lastActive.Store(now.UnixNano())
	c.lastPong.Store(now.UnixNano())
	// Route handlers outlive the request, so they get a context of their
	// own: keeping the request's (even without its cancel) kept its chain
	// of contexts alive for the connection's life, and nothing reads its
	// values.
	base := context.Background()

	resp, err := g.invoke(r.Context(), g.routes.Connect, g.connectEvent(r, c, now))
	if err != nil {
		g.log.ErrorContext(r.Context(), "gateway: $connect failed", "connection_id", c.id, "err", err)
		writeJSON(w, http.StatusInternalServerError, map[string]string{"message": "Internal server error"})
		return
	}
	if resp.StatusCode != 0 && (resp.StatusCode < 200 || resp.StatusCode > 299) {
		writeProxyResponse(w, resp)
		return
	}

	if c.credentialsExpireAt, err = credentialsExpiry(resp); err != nil {
		// The connection is served without the bound rather than refused.
		g.log.ErrorContext(r.Context(), "gateway: $connect answered a bad header", "connection_id", c.id, "err", err)
	}

	// Registered before the handshake completes, so that the id can be
	// posted to as soon as the client sees 101; posts made meanwhile wait
	// in the queue.
	if !g.register(c) {
		http.Error(w, "Service Unavailable", http.StatusServiceUnavailable)
		c.closeCode, c.closeReason = websocket.CloseGoingAway, "Going away"
		g.disconnect(base, c)
		return
	}
	var hdr http.Header
	if p := responseHeader(resp, "Sec-Websocket-Protocol"); p != "" {
		hdr = http.Header{"Sec-Websocket-Protocol": {p}}
	}
	ws, err := g.upgrader.Upgrade(w, r, hdr)
	if err != nil {
		// The upgrader has answered the client; $connect succeeded, so its
		// side effects get their $disconnect.
		g.log.WarnContext(r.Context(), "gateway: upgrade failed", "connection_id", c.id, "err", err)
		g.terminate(c, websocket.CloseAbnormalClosure, "Upgrade failed", closeAbort)
		g.disconnect(base, c)
		return
	}
	ws.SetReadLimit(int64(g.cfg.MaxMessageBytes))
	g.attach(c, ws)

	g.log.DebugContext(r.Context(), "gateway: connected", "connection_id", c.id, "source_ip", c.sourceIP)
	// A new goroutine rather than this one: once the handler returns,
	// net/http frees its per-connection buffers and this goroutine's stack.
	served = true
	go func() {
		defer g.live.Done()
		g.serve(base, c)
	}()
}

// admit counts a new connection in unless the gateway is shutting down. It
// holds the lock so no count is added once Shutdown has started waiting.
func (g *Gateway) admit() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.live.Add(1)
	return true
}

func (g *Gateway) register(c *conn) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.conns[c.id] = c
	return true
}

func (g *Gateway) unregister(c *conn) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.conns[c.id] == c {
		delete(g.conns, c.id)
	}
}

func (g *Gateway) lookup(id string) *conn {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.conns[id]
}

// Shutdown closes every connection with 1001, runs $disconnect for each and
// waits for that, or until ctx is done, when the remaining sockets are cut.
// New upgrade requests are refused with 503 from the start.
func (g *Gateway) Shutdown(ctx context.Context) error {
	g.mu.Lock()
	g.closed = true
	conns := make([]*conn, 0, len(g.conns))
	for _, c := range g.conns {
		conns = append(conns, c)
	}
	g.mu.Unlock()

	for _, c := range conns {
		g.terminate(c, websocket.CloseGoingAway, "Going away", closeGraceful)
	}
	waited := make(chan struct{})
	go func() {
		g.live.Wait()
		close(waited)
	}()
	select {
	case <-waited:
		return nil
	case <-ctx.Done():
		for _, c := range conns {
			if nc := c.netConn(); nc != nil {
				_ = nc.Close()
			}
		}
		return fmt.Errorf("gateway: shutdown: %w", ctx.Err())
	}
}

// invoke runs a route handler with API Gateway's integration timeout and
// turns a panic into an error, as a crashed Lambda would be.
func (g *Gateway) invoke(ctx context.Context, h Handler, req lambdaevents.APIGatewayWebsocketProxyRequest) (resp lambdaevents.APIGatewayProxyResponse, err error) {
	if h == nil {
		return lambdaevents.APIGatewayProxyResponse{StatusCode: http.StatusOK}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, handlerTimeout)
	defer cancel()
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%s handler panicked: %v", req.RequestContext.RouteKey, p)
		}
	}()
	resp, err = h(ctx, req)
	if err != nil {
		return resp, fmt.Errorf("%s handler: %w", req.RequestContext.RouteKey, err)
	}
	return resp, nil
}

// disconnect runs $disconnect once the connection is unregistered and closed.
func (g *Gateway) disconnect(base context.Context, c *conn) {
	if g.routes.Disconnect == nil {
		return
	}
	ev := g.disconnectEvent(c, time.Now())
	if _, err := g.invoke(base, g.routes.Disconnect, ev); err != nil {
		g.log.ErrorContext(base, "gateway: $disconnect failed", "connection_id", c.id, "err", err)
	}
}

// randomID is shaped like API Gateway's connection ids: 11 random bytes in
// standard base64, 16 characters ending in "=".
func randomID() string {
	var b [11]byte
	_, _ = rand.Read(b[:]) // never fails since Go 1.24
	return base64.StdEncoding.EncodeToString(b[:])
}

func hostOnly(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return host
}

// responseHeader returns a header of a route's response; name is canonical.
func responseHeader(resp lambdaevents.APIGatewayProxyResponse, name string) string {
	for k, v := range resp.Headers {
		if http.CanonicalHeaderKey(k) == name {
			return v
		}
	}
	for k, vs := range resp.MultiValueHeaders {
		if http.CanonicalHeaderKey(k) == name && len(vs) > 0 {
			return vs[0]
		}
	}
	return ""
}

// credentialsExpiry reads ExpiresHeader; zero when absent or malformed.
func credentialsExpiry(resp lambdaevents.APIGatewayProxyResponse) (time.Time, error) {
	v := responseHeader(resp, http.CanonicalHeaderKey(ExpiresHeader))
	if v == "" {
		return time.Time{}, nil
	}
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil || ms <= 0 {
		return time.Time{}, fmt.Errorf("%s %q: want Unix milliseconds", ExpiresHeader, v)
	}
	return time.UnixMilli(ms), nil
}

// writeProxyResponse answers a refused upgrade the way API Gateway relays a
// non-2xx $connect response.
func writeProxyResponse(w http.ResponseWriter, resp lambdaevents.APIGatewayProxyResponse) {
	h := w.Header()
	for k, v := range resp.Headers {
		h.Set(k, v)
	}
	for k, vs := range resp.MultiValueHeaders {
		h.Del(k)
		for _, v := range vs {
			h.Add(k, v)
		}
	}
	body := []byte(resp.Body)
	if resp.IsBase64Encoded {
		if b, err := base64.StdEncoding.DecodeString(resp.Body); err == nil {
			body = b
		}
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v) // only plain structs and maps of strings come here
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
