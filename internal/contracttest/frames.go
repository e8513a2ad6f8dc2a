package contracttest

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/gorilla/websocket"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/parleychat/parley/internal/wsproto"
)

// Frames validates WebSocket frames against the payload schemas of the
// AsyncAPI document: a client frame by its "action", a server frame by its
// "type".
type Frames struct {
	schemas map[string]*jsonschema.Schema // by message name: "action.ping", "frame.pong"
}

var loadFrames = sync.OnceValues(func() (*Frames, error) { return NewFrames(wsproto.AsyncAPI()) })

// AsyncAPI returns the validator of the protocol's own document.
func AsyncAPI() (*Frames, error) { return loadFrames() }

// NewFrames compiles every message payload of doc, an AsyncAPI 3 document
// whose payloads are JSON Schema (draft 7, AsyncAPI's default).
func NewFrames(doc []byte) (*Frames, error) {
	var d struct {
		Components struct {
			Messages map[string]struct {
				Payload json.RawMessage `json:"payload"`
			} `json:"messages"`
		} `json:"components"`
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		return nil, fmt.Errorf("parse the AsyncAPI document: %w", err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft7)
	c.AssertFormat()
	f := &Frames{schemas: map[string]*jsonschema.Schema{}}
	for name, m := range d.Components.Messages {
		payload, err := jsonschema.UnmarshalJSON(bytes.NewReader(m.Payload))
		if err != nil {
			return nil, fmt.Errorf("message %s: %w", name, err)
		}
		url := "asyncapi:///" + name + ".json"
		if err := c.AddResource(url, payload); err != nil {
			return nil, fmt.Errorf("message %s: %w", name, err)
		}
		if f.schemas[name], err = c.Compile(url); err != nil {
			return nil, fmt.Errorf("message %s: %w", name, err)
		}
	}
	if len(f.schemas) == 0 {
		return nil, fmt.Errorf("the AsyncAPI document has no messages")
	}
	return f, nil
}

// Server checks a frame the server sent.
func (f *Frames) Server(frame []byte) error { return f.check(frame, "type", "frame.") }

// Client checks a frame a client sent.
func (f *Frames) Client(frame []byte) error { return f.check(frame, "action", "action.") }

func (f *Frames) check(frame []byte, key, prefix string) error {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(frame))
	if err != nil {
		return fmt.Errorf("frame %.200q is not JSON: %w", frame, err)
	}
	obj, _ := v.(map[string]any)
	name, _ := obj[key].(string)
	s, ok := f.schemas[prefix+name]
	if !ok {
		return fmt.Errorf("frame %.200q: its %s %q names no message of the AsyncAPI document", frame, key, name)
	}
	if err := s.Validate(v); err != nil {
		return fmt.Errorf("frame %.500q does not match message %s%s: %v", frame, prefix, name, err)
	}
	return nil
}

// Dialer is a WebSocket dialer whose connections check every frame in
// both directions when the test ends (connections are closed by then: it
// registers its check before the caller can register a Close). Every frame
// the server sends must match its message. A client frame the document
// refuses is allowed only as a test of refusal: the server must answer at
// least as many error frames as such frames were sent, else the server
// accepted what its document says it refuses.
func Dialer(t testing.TB) *websocket.Dialer {
	t.Helper()
	frames, err := AsyncAPI()
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{frames: frames}
	t.Cleanup(func() {
		for _, p := range rec.report() {
			t.Error(p)
		}
	})
	return rec.dialer()
}

// dialer is a dialer whose connections report their frames to r.
func (r *recorder) dialer() *websocket.Dialer {
	var d net.Dialer
	return &websocket.Dialer{
		HandshakeTimeout: websocket.DefaultDialer.HandshakeTimeout,
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			conn := &tapConn{Conn: c}
			conn.read = stream{onMessage: r.server, http: true}
			conn.written = stream{onMessage: r.client, http: true}
			return conn, nil
		},
	}
}

// recorder collects what the frames of one test's connections broke.
type recorder struct {
	frames *Frames

	mu          sync.Mutex
	problems    []string
	refused     []string // client frames the document refuses
	errorFrames int
}

func (r *recorder) server(frame []byte) {
	err := r.frames.Server(frame)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.problems = append(r.problems, "server sent a frame off its AsyncAPI contract: "+err.Error())
	}
	var f struct {
		Type string `json:"type"`
	}
	if json.Unmarshal(frame, &f) == nil && f.Type == wsproto.TypeError {
		r.errorFrames++
	}
}

func (r *recorder) client(frame []byte) {
	if err := r.frames.Client(frame); err != nil {
		r.mu.Lock()
		r.refused = append(r.refused, err.Error())
		r.mu.Unlock()
	}
}

func (r *recorder) report() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := slices.Clone(r.problems)
	if len(r.refused) > r.errorFrames {
		out = append(out, fmt.Sprintf("%d client frames are off the AsyncAPI contract but only %d error frames came back; the server accepted what its document refuses:\n%s",
			len(r.refused), r.errorFrames, strings.Join(r.refused, "\n")))
	}
	return out
}

// tapConn passes bytes through unchanged and parses both directions as
// WebSocket frames (RFC 6455 §5.2), after the HTTP upgrade.
type tapConn struct {
	net.Conn
	read    stream
	written stream
}

func (c *tapConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.read.feed(p[:n])
	return n, err
}

func (c *tapConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.written.feed(p[:n])
	return n, err
}

// stream reassembles one direction's messages. Reads and writes of one
// direction are not concurrent (gorilla allows one reader and one writer).
type stream struct {
	onMessage func([]byte)
	http      bool // still in the upgrade's request or response
	off       bool // the upgrade was refused: what follows is not frames
	buf       []byte
	message   []byte
	inMessage bool
}

func (s *stream) feed(p []byte) {
	if s.off {
		return
	}
	s.buf = append(s.buf, p...)
	if s.http {
		end := bytes.Index(s.buf, []byte("\r\n\r\n"))
		if end < 0 {
			return
		}
		head := s.buf[:end]
		if bytes.HasPrefix(head, []byte("HTTP/")) && !bytes.HasPrefix(head, []byte("HTTP/1.1 101")) {
			s.off, s.buf = true, nil
			return
		}
		s.http, s.buf = false, s.buf[end+4:]
	}
	for s.next() {
	}
}

// next consumes one whole frame from buf, if there is one.
func (s *stream) next() bool {
	b := s.buf
	if len(b) < 2 {
		return false
	}
	fin, opcode := b[0]&0x80 != 0, b[0]&0x0f
	compressed := b[0]&0x40 != 0
	masked := b[1]&0x80 != 0
	n, i := uint64(b[1]&0x7f), 2
	switch n {
	case 126:
		if len(b) < 4 {
			return false
		}
		n, i = uint64(binary.BigEndian.Uint16(b[2:4])), 4
	case 127:
		if len(b) < 10 {
			return false
		}
		n, i = binary.BigEndian.Uint64(b[2:10]), 10
	}
	var key []byte
	if masked {
		if len(b) < i+4 {
			return false
		}
		key, i = b[i:i+4], i+4
	}
	if uint64(len(b)-i) < n {
		return false
	}
	payload := append([]byte(nil), b[i:i+int(n)]...)
	for j := range payload {
		if masked {
			payload[j] ^= key[j%4]
		}
	}
	s.buf = b[i+int(n):]
	switch {
	case opcode >= 8: // close, ping, pong: not protocol messages
		return true
	case opcode == websocket.TextMessage || opcode == websocket.BinaryMessage:
		s.message, s.inMessage = payload, true
	case opcode == 0 && s.inMessage: // continuation
		s.message = append(s.message, payload...)
	}
	if compressed {
		// The dialer does not offer compression, so nothing should come.
		s.onMessage([]byte(`{"compressed frame":"cannot be checked"}`))
		s.inMessage = false
		return true
	}
	if fin && s.inMessage {
		s.onMessage(s.message)
		s.message, s.inMessage = nil, false
	}
	return true
}
