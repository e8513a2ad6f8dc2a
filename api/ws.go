package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	lambdaevents "github.com/aws/aws-lambda-go/events"
	"github.com/google/uuid"

	"github.com/parleychat/parley/api/auth"
	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/internal/connstore"
)

// Connections is what the WebSocket routes need of the connection store.
type Connections interface {
	Put(ctx context.Context, c connstore.Connection) error
	Get(ctx context.Context, id string) (connstore.Connection, error)
	Delete(ctx context.Context, id string) error
	Touch(ctx context.Context, id string, at, expiresAt time.Time) error
}

// WSRoutes are the API Gateway WebSocket route handlers ($connect,
// $disconnect, $default) as plain functions over the proxy request, so the
// same code runs as Lambdas and inside the local gateway.
type WSRoutes struct {
	svc      *Service
	verifier *auth.Verifier
	conns    Connections
	ttl      time.Duration
	logger   *slog.Logger
}

// NewWSRoutes builds the routes. ttl is how long a connection record lives
// without a ping (API Gateway's own hard limit is 2 hours).
func NewWSRoutes(svc *Service, verifier *auth.Verifier, conns Connections, ttl time.Duration, logger *slog.Logger) *WSRoutes {
	if ttl <= 0 {
		ttl = 2*time.Hour + 5*time.Minute
	}
	return &WSRoutes{svc: svc, verifier: verifier, conns: conns, ttl: ttl, logger: logger}
}

type response = lambdaevents.APIGatewayProxyResponse
type wsRequest = lambdaevents.APIGatewayWebsocketProxyRequest

// Connect authenticates the upgrade (token in ?token= or a bearer header)
// and records the connection. A refusal happens before the upgrade
// completes, so the client sees the HTTP status.
func (w *WSRoutes) Connect(ctx context.Context, req wsRequest) (response, error) {
	token := req.QueryStringParameters["token"]
	if token == "" {
		for k, v := range req.Headers {
			if strings.EqualFold(k, "Authorization") {
				token, _ = strings.CutPrefix(v, "Bearer ")
			}
		}
	}
	user, err := w.verifier.UserID(strings.TrimSpace(token))
	if err != nil {
		w.logger.Debug("websocket connect refused", "err", err)
		return response{StatusCode: http.StatusUnauthorized, Body: `{"message":"Unauthorized"}`}, nil
	}
	id := req.RequestContext.ConnectionID
	now := w.svc.clock()
	if err := w.conns.Put(ctx, connstore.Connection{ID: id, UserID: user, ConnectedAt: now, LastPingAt: now, ExpiresAt: now.Add(w.ttl)}); err != nil {
		w.logger.Error("record connection", "connection_id", id, "err", err)
		return response{StatusCode: http.StatusInternalServerError, Body: `{"message":"Internal server error"}`}, nil
	}
	// API Gateway cannot send on a connection before $connect returns, so
	// fanout greets it once this event arrives.
	env, err := events.New(uuid.Must(uuid.NewV7()).String(), now, user, "", events.ConnectedV1{ConnectionID: id, UserID: user})
	if err == nil {
		err = w.svc.bus.Publish(ctx, env)
	}
	if err != nil {
		w.logger.Warn("could not publish the connection greeting", "connection_id", id, "err", err)
	}
	return response{StatusCode: http.StatusOK}, nil
}

// Disconnect forgets the connection.
func (w *WSRoutes) Disconnect(ctx context.Context, req wsRequest) (response, error) {
	if err := w.conns.Delete(ctx, req.RequestContext.ConnectionID); err != nil {
		// The record expires anyway; fanout also deletes it on its first 410.
		w.logger.Warn("forget connection", "connection_id", req.RequestContext.ConnectionID, "err", err)
	}
	return response{StatusCode: http.StatusOK}, nil
}

type frame struct {
	Action string          `json:"action"`
	Data   json.RawMessage `json:"data"`
}

// Default dispatches a client frame on its action. Every failure answers an
// error frame; the connection stays open.
func (w *WSRoutes) Default(ctx context.Context, req wsRequest) (response, error) {
	id := req.RequestContext.ConnectionID
	conn, err := w.conns.Get(ctx, id)
	if errors.Is(err, connstore.ErrNotFound) {
		return w.reply(errorFrame("", Errorf(CodeUnauthenticated, "this connection is not registered; reconnect"))), nil
	}
	if err != nil {
		return w.reply(errorFrame("", unavailable("the connection store", err))), nil
	}
	var f frame
	dec := json.NewDecoder(strings.NewReader(req.Body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil || dec.More() {
		return w.reply(errorFrame("", Errorf(CodeBadRequest, `frame must be a JSON object {"action":...,"data":{...}}`))), nil
	}
	var out any
	switch f.Action {
	case "sendMessage":
		out, err = w.sendMessage(ctx, conn, f.Data)
	case "ping":
		now := w.svc.clock()
		err = w.conns.Touch(ctx, id, now, now.Add(w.ttl))
		out = map[string]string{"type": "pong"}
	case "typing":
		err = w.typing(ctx, conn, f.Data)
	case "markRead":
		out, err = w.markRead(ctx, conn, f.Data)
	case "":
		err = Errorf(CodeBadRequest, "action is required")
	default:
		err = Errorf(CodeBadRequest, "unknown action %q (known: sendMessage, ping, typing, markRead)", f.Action)
	}
	if err != nil {
		e := AsError(err)
		if e.Code.HTTPStatus() >= 500 {
			w.logger.Error("websocket action failed", "action", f.Action, "connection_id", id, "err", e)
		}
		return w.reply(errorFrame(f.Action, e)), nil
	}
	if out == nil {
		return response{StatusCode: http.StatusOK}, nil
	}
	return w.reply(out), nil
}

func (w *WSRoutes) reply(v any) response {
	b, err := json.Marshal(v)
	if err != nil {
		w.logger.Error("encode websocket reply", "err", err)
		return response{StatusCode: http.StatusOK}
	}
	return response{StatusCode: http.StatusOK, Body: string(b)}
}

type errFrame struct {
	Type    string `json:"type"`
	Code    Code   `json:"code"`
	Message string `json:"message"`
	Action  string `json:"action,omitempty"`
}

func errorFrame(action string, err error) errFrame {
	e := AsError(err)
	return errFrame{Type: "error", Code: e.Code, Message: e.Message, Action: action}
}

// decodeData decodes a frame's data strictly, like REST bodies.
func decodeData(raw json.RawMessage, dst any) error {
	if len(raw) == 0 || string(raw) == "null" {
		return Errorf(CodeBadRequest, "data is required")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		var typ *json.UnmarshalTypeError
		if errors.As(err, &typ) {
			return Errorf(CodeBadRequest, "field %q must be %s", typ.Field, typ.Type)
		}
		return Errorf(CodeBadRequest, "invalid data: %s", strings.TrimPrefix(err.Error(), "json: "))
	}
	return nil
}

type wsSend struct {
	RecipientID     int64  `json:"recipientId"`
	ConversationID  string `json:"conversationId"`
	ContentType     string `json:"contentType"`
	TextContent     string `json:"textContent"`
	MediaKey        string `json:"mediaKey"`
	MediaURL        string `json:"mediaUrl"`
	AudioDuration   *int32 `json:"audioDuration"`
	ReplyToID       string `json:"replyToId"`
	ClientMessageID string `json:"clientMessageId"`
}

type ack struct {
	Type            string    `json:"type"`
	MessageID       string    `json:"messageId"`
	ConversationID  string    `json:"conversationId"`
	ClientMessageID string    `json:"clientMessageId,omitempty"`
	CreatedAt       time.Time `json:"createdAt"`
}

func (w *WSRoutes) sendMessage(ctx context.Context, conn connstore.Connection, raw json.RawMessage) (any, error) {
	var d wsSend
	if err := decodeData(raw, &d); err != nil {
		return nil, err
	}
	m, err := w.svc.Send(ctx, conn.UserID, SendInput{
		RecipientID: d.RecipientID, ConversationID: d.ConversationID, ContentType: d.ContentType,
		TextContent: d.TextContent, MediaKey: d.MediaKey, MediaURL: d.MediaURL, AudioDuration: d.AudioDuration,
		ReplyToID: d.ReplyToID, ClientMessageID: d.ClientMessageID, SourceConnectionID: conn.ID,
	})
	if err != nil {
		return nil, err
	}
	return ack{Type: "acknowledgment", MessageID: m.ID, ConversationID: m.ConversationID,
		ClientMessageID: d.ClientMessageID, CreatedAt: m.CreatedAt}, nil
}

func (w *WSRoutes) typing(ctx context.Context, conn connstore.Connection, raw json.RawMessage) error {
	var d struct {
		ConversationID string `json:"conversationId"`
		RecipientID    int64  `json:"recipientId"`
		IsTyping       bool   `json:"isTyping"`
	}
	if err := decodeData(raw, &d); err != nil {
		return err
	}
	if d.ConversationID == "" {
		return Errorf(CodeBadRequest, "conversationId is required")
	}
	return w.svc.Typing(ctx, conn.UserID, d.ConversationID, d.RecipientID, d.IsTyping)
}

func (w *WSRoutes) markRead(ctx context.Context, conn connstore.Connection, raw json.RawMessage) (any, error) {
	var d struct {
		ConversationID string   `json:"conversationId"`
		MessageIDs     []string `json:"messageIds"`
	}
	if err := decodeData(raw, &d); err != nil {
		return nil, err
	}
	res, err := w.svc.MarkRead(ctx, conn.UserID, d.ConversationID, d.MessageIDs)
	if err != nil {
		return nil, err
	}
	return map[string]any{"type": "readAcknowledgment", "conversationId": d.ConversationID, "read": res.Read, "ignored": res.Ignored}, nil
}
