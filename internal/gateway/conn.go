package gateway

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	lambdaevents "github.com/aws/aws-lambda-go/events"
	"github.com/gorilla/websocket"

	"github.com/parleychat/parley/internal/wsproto"
)

// closeMode says how a connection ends.
type closeMode int

const (
	// closeGraceful flushes queued messages, sends a close frame and waits
	// briefly for the peer's.
	closeGraceful closeMode = iota + 1
	// closeQuiet: the close frame is already sent (an echo of the peer's,
	// or gorilla's 1009), so nothing more is written.
	closeQuiet
	// closeAbort cuts the socket at once (slow or dead peer, I/O error).
	closeAbort
)

// conn is one client. One goroutine reads and runs the routes; a writer
// goroutine drains the queue, since gorilla allows a single concurrent
// writer. The writer runs only while there is something to write: an idle
// connection holds no writer goroutine (its stack was a third of what an
// idle connection cost), and the queue is a slice rather than a buffered
// channel so that it holds no buffer either.
type conn struct {
	id          string
	sourceIP    string
	userAgent   string
	host        string
	domain      string
	connectedAt time.Time
	// credentialsExpireAt, when set, closes the connection with
	// wsproto.CloseTokenExpired (see ExpiresHeader).
	credentialsExpireAt time.Time
	// ws and nc are set once the handshake is done; nc is guarded by mu
	// until the connection's goroutines start.
	ws *websocket.Conn
	nc net.Conn

	lastActive atomic.Int64 // unix ns of the last inbound data frame
	lastPong   atomic.Int64 // unix ns

	mu     sync.Mutex
	queue  [][]byte
	closed bool
	// served: the socket is attached and serve runs, so a writer may start.
	served bool
	// writing: a writer goroutine runs; once the connection is closed it
	// stays set, so that the writer's final step runs once.
	writing bool
	// writeFailed: the socket failed a write; nothing more is written.
	writeFailed bool

	done       chan struct{} // closed by terminate
	writerDone chan struct{} // closed by the writer's final step

	expiry *time.Timer // idle and age limit; guarded by mu

	once        sync.Once
	closeCode   int
	closeReason string
	mode        closeMode
}

func (c *conn) netConn() net.Conn {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nc
}

// attach sets the socket of a registered connection. A connection cut
// during the handshake is cut now.
func (g *Gateway) attach(c *conn, ws *websocket.Conn) {
	c.mu.Lock()
	c.ws, c.nc = ws, ws.NetConn()
	c.mu.Unlock()
	if c.isDone() && c.mode == closeAbort {
		_ = c.nc.Close()
	}
}

func (c *conn) isDone() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// push queues msg without blocking; it reports full when the buffer is.
func (g *Gateway) push(c *conn, msg []byte, limit int) (ok, full bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false, false
	}
	if len(c.queue) >= limit {
		return false, true
	}
	c.queue = append(c.queue, msg)
	g.startWriterLocked(c)
	return true, false
}

// startWriterLocked starts a writer if c has something to do (a queued
// message, or its close) and none runs. c.mu is held.
func (g *Gateway) startWriterLocked(c *conn) {
	if !c.served || c.writing || (len(c.queue) == 0 && !c.closed) {
		return
	}
	c.writing = true
	go g.writeLoop(c)
}

// next is the writer's next step: a message to write, or else whether the
// connection is closing (the final step). When there is neither, the
// writer is done for now and exits.
func (c *conn) next() (msg []byte, closing bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.queue) > 0 && !c.writeFailed {
		msg = c.queue[0]
		c.queue[0] = nil
		c.queue = c.queue[1:]
		if len(c.queue) == 0 {
			c.queue = nil // release the backing array of a burst
		}
		return msg, false
	}
	if c.closed {
		return nil, true
	}
	c.writing = false
	return nil, false
}

// send queues msg for c. A full buffer means the client does not keep up:
// it is dropped, as API Gateway would rather than buffer without bound.
func (g *Gateway) send(c *conn, msg []byte) bool {
	ok, full := g.push(c, msg, g.cfg.SendBuffer)
	if full {
		g.log.Warn("gateway: send buffer full, dropping slow client", "connection_id", c.id)
		g.terminate(c, websocket.ClosePolicyViolation, "Slow consumer", closeAbort)
	}
	return ok
}

// terminate starts closing c; only the first call counts. It unregisters c
// at once so that posts get 410 from then on; the serving goroutine then
// finishes the close and runs $disconnect.
func (g *Gateway) terminate(c *conn, code int, reason string, mode closeMode) {
	c.once.Do(func() {
		c.closeCode, c.closeReason, c.mode = code, reason, mode
		g.unregister(c)
		c.mu.Lock()
		c.closed = true
		if mode != closeGraceful {
			c.queue = nil
		}
		nc := c.nc
		close(c.done)
		g.startWriterLocked(c) // for the close frame
		c.mu.Unlock()
		if mode == closeAbort && nc != nil {
			_ = nc.Close()
		}
	})
}

// serve runs the connection until it closes, then runs $disconnect.
func (g *Gateway) serve(base context.Context, c *conn) {
	c.ws.SetPongHandler(func(string) error {
		c.lastPong.Store(time.Now().UnixNano())
		return nil
	})
	c.ws.SetCloseHandler(func(code int, _ string) error {
		// Echo the peer's close unless ours is already on its way.
		if !c.isDone() {
			_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, ""),
				time.Now().Add(g.closeGrace))
		}
		return nil
	})
	g.startExpiry(c)
	stopPings := g.startPings(c)
	c.mu.Lock()
	c.served = true
	g.startWriterLocked(c) // posts made during the handshake, or a close
	c.mu.Unlock()

	code, reason, mode, err := g.readLoop(base, c)
	g.terminate(c, code, reason, mode)
	c.mu.Lock()
	c.expiry.Stop()
	c.mu.Unlock()
	stopPings()
	<-c.writerDone
	if errors.Is(err, websocket.ErrReadLimit) {
		g.lingerClose(c.nc)
	} else {
		// The close handshake is over (or given up on): per RFC 6455 the
		// server closes the TCP connection first.
		_ = c.nc.Close()
	}
	g.log.Debug("gateway: disconnected", "connection_id", c.id, "code", c.closeCode, "reason", c.closeReason)
	g.disconnect(base, c)
}

// startExpiry arms one timer for the idle and age limits and the
// credentials' expiry. It does
// not move on every message: when it fires early it re-arms for the new
// deadline. A timer rather than a read deadline keeps the reader usable to
// receive the client's close frame.
func (g *Gateway) startExpiry(c *conn) {
	maxAgeAt := c.connectedAt.Add(g.cfg.MaxConnectionAge)
	tokenAt := c.credentialsExpireAt
	next := func() time.Time {
		idleAt := time.Unix(0, c.lastActive.Load()).Add(g.cfg.IdleTimeout)
		at := min(maxAgeAt.UnixNano(), idleAt.UnixNano())
		if !tokenAt.IsZero() {
			at = min(at, tokenAt.UnixNano())
		}
		return time.Unix(0, at)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expiry = time.AfterFunc(time.Until(next()), func() {
		if d := time.Until(next()); d > 0 {
			c.mu.Lock()
			if !c.closed {
				c.expiry.Reset(d)
			}
			c.mu.Unlock()
			return
		}
		if !tokenAt.IsZero() && !time.Now().Before(tokenAt) {
			// Told why first, so the client reconnects with a fresh token
			// instead of retrying the old one.
			if g.cfg.ExpiredFrame != nil {
				g.push(c, g.cfg.ExpiredFrame, g.cfg.SendBuffer+1)
			}
			g.terminate(c, wsproto.CloseTokenExpired, wsproto.CloseTokenExpiredReason, closeGraceful)
			return
		}
		// API Gateway says "Going away" for both of its limits.
		g.terminate(c, websocket.CloseGoingAway, "Going away", closeGraceful)
	})
}

// readLoop reads messages and runs $default for each, in order. It returns
// why the connection ended when the reason is on the reading side.
func (g *Gateway) readLoop(base context.Context, c *conn) (int, string, closeMode, error) {
	for {
		if c.isDone() {
			// Closing: wait only briefly for the peer's close frame.
			_ = c.ws.SetReadDeadline(time.Now().Add(g.closeGrace))
		}
		mt, data, err := c.ws.ReadMessage()
		if err != nil {
			code, reason, mode := readError(c, err)
			return code, reason, mode, err
		}
		if c.isDone() {
			continue // discard what the peer sent before it saw our close
		}
		c.lastActive.Store(time.Now().UnixNano())
		g.framesIn.Add(1)
		if mt == websocket.BinaryMessage {
			// API Gateway does not take binary frames and closes with 1003.
			g.terminate(c, websocket.CloseUnsupportedData, "Binary frames are not supported", closeGraceful)
			continue
		}
		g.handleMessage(base, c, data)
	}
}

func readError(c *conn, err error) (int, string, closeMode) {
	var ce *websocket.CloseError
	switch {
	case c.isDone():
		// We started the close; terminate has recorded why.
		return 0, "", 0
	case errors.As(err, &ce):
		return ce.Code, ce.Text, closeQuiet
	case errors.Is(err, websocket.ErrReadLimit):
		// gorilla has sent the 1009 close frame.
		return websocket.CloseMessageTooBig, "Message too big", closeQuiet
	default:
		return websocket.CloseAbnormalClosure, "Connection lost", closeAbort
	}
}

func (g *Gateway) handleMessage(base context.Context, c *conn, data []byte) {
	ev := lambdaevents.APIGatewayWebsocketProxyRequest{
		RequestContext: g.requestContext(c, "$default", "MESSAGE", time.Now()),
		Body:           string(data),
	}
	ev.RequestContext.MessageID = g.newID()
	if g.routes.Default == nil {
		g.send(c, errorFrame("Forbidden", c.id, ev.RequestContext.RequestID))
		return
	}
	resp, err := g.invoke(base, g.routes.Default, ev)
	if err != nil {
		g.log.ErrorContext(base, "gateway: $default failed", "connection_id", c.id,
			"request_id", ev.RequestContext.RequestID, "err", err)
		g.send(c, errorFrame("Internal server error", c.id, ev.RequestContext.RequestID))
		return
	}
	if resp.Body == "" {
		return
	}
	body := []byte(resp.Body)
	if resp.IsBase64Encoded {
		if b, err := base64.StdEncoding.DecodeString(resp.Body); err == nil {
			body = b
		}
	}
	g.send(c, body)
}

// writeLoop writes what is queued and exits when the queue is empty; push
// starts it again. It is the only writer of data frames. Its final step,
// once the connection is closing, sends the close frame (after the queue,
// when graceful) and wakes the reader to wait only briefly for the peer's.
func (g *Gateway) writeLoop(c *conn) {
	for {
		msg, closing := c.next()
		switch {
		case msg != nil:
			_ = c.ws.SetWriteDeadline(time.Now().Add(g.cfg.WriteTimeout))
			if err := c.ws.WriteMessage(websocket.TextMessage, msg); err != nil {
				c.mu.Lock()
				c.writeFailed = true
				c.mu.Unlock()
				g.terminate(c, websocket.CloseAbnormalClosure, "Write failed", closeAbort)
				_ = c.nc.Close() // also when a graceful close was under way
			} else {
				g.framesOut.Add(1)
			}
		case closing:
			c.mu.Lock()
			failed := c.writeFailed
			c.mu.Unlock()
			if c.mode == closeGraceful && !failed {
				msg := websocket.FormatCloseMessage(c.closeCode, c.closeReason)
				_ = c.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(g.closeGrace))
			}
			_ = c.ws.SetReadDeadline(time.Now().Add(g.closeGrace))
			close(c.writerDone)
			return
		default:
			return
		}
	}
}

// startPings sends protocol pings every PingInterval, when set, and drops
// a peer that missed two pongs. A timer rather than a goroutine: gorilla
// lets WriteControl run alongside the writer. It returns the stop.
func (g *Gateway) startPings(c *conn) (stop func()) {
	if g.cfg.PingInterval <= 0 {
		return func() {}
	}
	var (
		mu      sync.Mutex
		stopped bool
		t       *time.Timer
	)
	mu.Lock()
	defer mu.Unlock()
	t = time.AfterFunc(g.cfg.PingInterval, func() {
		if time.Since(time.Unix(0, c.lastPong.Load())) > 2*g.cfg.PingInterval+g.cfg.PingInterval/2 {
			g.terminate(c, websocket.CloseAbnormalClosure, "Ping timeout", closeAbort)
			return
		}
		if err := c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(g.cfg.WriteTimeout)); err != nil {
			g.terminate(c, websocket.CloseAbnormalClosure, "Write failed", closeAbort)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if !stopped {
			t.Reset(g.cfg.PingInterval)
		}
	})
	return func() {
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		t.Stop()
	}
}

// lingerClose half-closes and discards what the peer still sends (the rest
// of an oversize message) before closing: closing a socket with unread input
// sends a reset, which can make the peer lose our close frame.
func (g *Gateway) lingerClose(nc net.Conn) {
	defer nc.Close()
	cw, ok := nc.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		return
	}
	_ = nc.SetReadDeadline(time.Now().Add(g.closeGrace))
	_, _ = io.Copy(io.Discard, io.LimitReader(nc, int64(g.cfg.MaxMessageBytes)+64<<10))
}
