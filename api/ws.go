package api

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	lambdaevents "github.com/aws/aws-lambda-go/events"

	"github.com/parleychat/parley/api/auth"
	"github.com/parleychat/parley/internal/chat"
	"github.com/parleychat/parley/internal/gateway"
	"github.com/parleychat/parley/internal/wsproto"
)

// WSRoutes are the API Gateway WebSocket route handlers ($connect,
// $disconnect, $default) as plain functions over the proxy request, so the
// same code runs as Lambdas and inside the local gateway.
type WSRoutes struct {
	svc      *chat.Service
	sessions *chat.Sessions
	verifier *auth.Verifier
	logger   *slog.Logger
}

// NewWSRoutes builds the routes. ttl is how long a connection record lives
// without a ping (0: chat.DefaultSessionTTL; API Gateway's own hard limit is
// 2 hours).
func NewWSRoutes(svc *chat.Service, verifier *auth.Verifier, conns chat.Connections, ttl time.Duration, logger *slog.Logger) *WSRoutes {
	return &WSRoutes{svc: svc, sessions: svc.Sessions(conns, ttl), verifier: verifier, logger: logger}
}

// ForgetGateway removes the records of a local gateway's previous life and
// announces its users offline (see chat.Sessions.ForgetGateway).
func (w *WSRoutes) ForgetGateway(ctx context.Context, gateway string) (int, error) {
	return w.sessions.ForgetGateway(ctx, gateway)
}

type response = lambdaevents.APIGatewayProxyResponse
type wsRequest = lambdaevents.APIGatewayWebsocketProxyRequest

// FeedParam is the $connect query parameter that opens a connection in
// feed mode (connstore.Connection.Feed): 1 or true; absent, empty, 0 or
// false open it in the default mode.
const FeedParam = "feed"

// feedMode parses FeedParam. Anything else is refused rather than read as
// false, so that a client's typo does not silently get the other frames.
func feedMode(q map[string]string) (bool, error) {
	switch q[FeedParam] {
	case "", "0", "false":
		return false, nil
	case "1", "true":
		return true, nil
	default:
		return false, chat.Errorf(chat.CodeBadRequest, "%s must be 1 or 0", FeedParam)
	}
}

// Connect authenticates the upgrade (token in ?token= or a bearer header)
// and records the connection, in feed mode with ?feed=1. A refusal happens
// before the upgrade completes, so the client sees the HTTP status, in API
// Gateway's shape.
func (w *WSRoutes) Connect(ctx context.Context, req wsRequest) (response, error) {
	token := req.QueryStringParameters["token"]
	var err error
	if token == "" {
		for k, v := range req.Headers {
			if strings.EqualFold(k, "Authorization") {
				token, err = bearerToken(v)
			}
		}
	}
	var claims auth.Claims
	if err == nil {
		claims, err = authenticate(ctx, w.verifier, token)
	}
	if err != nil {
		w.logger.DebugContext(ctx, "websocket connect refused", "err", err)
		return response{StatusCode: http.StatusUnauthorized, Body: `{"message":"Unauthorized"}`}, nil
	}
	id := req.RequestContext.ConnectionID
	// After authentication: a bad token answers 401 whatever else is wrong.
	feed, err := feedMode(req.QueryStringParameters)
	if err != nil {
		return w.refuseConnect(ctx, id, err), nil
	}
	// The API id names the gateway holding the connection: API Gateway's
	// on AWS, the local gateway's identity otherwise, which lets a
	// restarted local gateway forget the connections it lost.
	if err := w.sessions.Connect(ctx, id, claims.UserID, feed, req.RequestContext.APIID, claims.ValidUntil); err != nil {
		return w.refuseConnect(ctx, id, err), nil
	}
	// The local gateway closes the connection when its token expires. On
	// API Gateway the header has no such effect; there the record's token
	// expiry refuses the connection's frames (Sessions.Lookup).
	return response{StatusCode: http.StatusOK, Headers: map[string]string{
		gateway.ExpiresHeader: strconv.FormatInt(claims.ValidUntil.UnixMilli(), 10),
	}}, nil
}

// TokenExpiredFrame is the error frame a connection gets when its token
// expires, before it is closed.
func TokenExpiredFrame() []byte {
	e := chat.ErrTokenExpired()
	b, _ := wsproto.Encode(wsproto.NewError("", string(e.Code), e.Message)) // plain strings
	return b
}

// refuseConnect answers a $connect the service refused with the code's
// HTTP status, its reason and Retry-After, in API Gateway's shape.
func (w *WSRoutes) refuseConnect(ctx context.Context, connID string, err error) response {
	e := chat.AsError(err)
	status := httpStatus(e.Code)
	if logged(e.Code) {
		w.logger.ErrorContext(ctx, "record connection", "connection_id", connID, "err", e)
	} else {
		w.logger.DebugContext(ctx, "websocket connect refused", "connection_id", connID, "code", e.Code, "err", e.Message)
	}
	body, _ := json.Marshal(map[string]string{"message": e.Message, "code": string(e.Code)}) // strings only
	resp := response{StatusCode: status, Body: string(body), Headers: map[string]string{"Content-Type": "application/json"}}
	if ra, ok := retryAfter(e); ok {
		resp.Headers["Retry-After"] = ra
	}
	return resp
}

// Disconnect forgets the connection.
func (w *WSRoutes) Disconnect(ctx context.Context, req wsRequest) (response, error) {
	if err := w.sessions.Disconnect(ctx, req.RequestContext.ConnectionID); err != nil {
		// The record expires anyway; fanout also deletes it on its first 410.
		w.logger.WarnContext(ctx, "forget connection", "connection_id", req.RequestContext.ConnectionID, "err", err)
	}
	return response{StatusCode: http.StatusOK}, nil
}

// Default dispatches a client frame on its action. Every failure answers an
// error frame; the connection stays open.
func (w *WSRoutes) Default(ctx context.Context, req wsRequest) (response, error) {
	id := req.RequestContext.ConnectionID
	conn, err := w.sessions.Lookup(ctx, id)
	if err != nil {
		return w.fail(ctx, id, "", err), nil
	}
	in, err := decodeFrame(req.Body)
	if err != nil {
		return w.fail(ctx, id, "", err), nil
	}
	var out wsproto.Frame
	switch in.Action {
	case wsproto.ActionSendMessage:
		out, err = action(in.Data, func(d *chat.SendInput) (wsproto.Frame, error) {
			d.SourceConnectionID = conn.ID
			m, err := w.svc.Send(ctx, conn.UserID, *d)
			return wsproto.NewAcknowledgment(m.ID, m.ConversationID, d.ClientMessageID, m.CreatedAt), err
		})
	case wsproto.ActionPing:
		out, err = wsproto.NewPong(), w.sessions.Ping(ctx, id, conn.UserID)
	case wsproto.ActionTyping:
		out, err = action(in.Data, func(d *chat.TypingInput) (wsproto.Frame, error) {
			return nil, w.svc.Typing(ctx, conn.UserID, *d)
		})
	case wsproto.ActionMarkRead:
		out, err = action(in.Data, func(d *chat.ReadInput) (wsproto.Frame, error) {
			res, err := w.svc.MarkRead(ctx, conn.UserID, *d)
			return wsproto.NewReadAcknowledgment(d.ConversationID, res.Read, res.Ignored), err
		})
	case wsproto.ActionEditMessage:
		out, err = action(in.Data, func(d *chat.EditInput) (wsproto.Frame, error) {
			d.SourceConnectionID = conn.ID
			return changeAck(in.Action)(w.svc.EditMessage(ctx, conn.UserID, *d))
		})
	case wsproto.ActionUnsendMessage:
		out, err = action(in.Data, func(d *chat.MessageRef) (wsproto.Frame, error) {
			d.SourceConnectionID = conn.ID
			return changeAck(in.Action)(w.svc.UnsendMessage(ctx, conn.UserID, *d))
		})
	case wsproto.ActionSetReaction:
		out, err = action(in.Data, func(d *chat.ReactionInput) (wsproto.Frame, error) {
			d.SourceConnectionID = conn.ID
			return changeAck(in.Action)(w.svc.SetReaction(ctx, conn.UserID, *d))
		})
	case wsproto.ActionRemoveReaction:
		out, err = action(in.Data, func(d *chat.MessageRef) (wsproto.Frame, error) {
			d.SourceConnectionID = conn.ID
			return changeAck(in.Action)(w.svc.RemoveReaction(ctx, conn.UserID, *d))
		})
	case "":
		err = chat.Errorf(chat.CodeBadRequest, "action is required")
	default:
		err = chat.Errorf(chat.CodeBadRequest, "unknown action %q (known: %s)", in.Action, strings.Join(wsproto.Actions(), ", "))
	}
	if err != nil {
		return w.fail(ctx, id, in.Action, err), nil
	}
	if out == nil {
		return response{StatusCode: http.StatusOK}, nil
	}
	return w.reply(out), nil
}

// changeAck answers an accepted change of a message.
func changeAck(action string) func(chat.ChangeResult, error) (wsproto.Frame, error) {
	return func(res chat.ChangeResult, err error) (wsproto.Frame, error) {
		if err != nil {
			return nil, err
		}
		return wsproto.NewChangeAcknowledgment(action, res.MessageID, res.ConversationID, res.At), nil
	}
}

// action decodes a frame's data into the action's input and runs it. The
// service's errors name fields in camelCase, as the client wrote them.
func action[In any](data json.RawMessage, run func(*In) (wsproto.Frame, error)) (wsproto.Frame, error) {
	var in In
	if err := decodeData(data, &in); err != nil {
		return nil, err
	}
	out, err := run(&in)
	if err != nil {
		return nil, wsWire.rename(err, &in)
	}
	return out, nil
}

// fail answers err as an error frame, logging what is the server's fault.
func (w *WSRoutes) fail(ctx context.Context, connID, action string, err error) response {
	e := chat.AsError(err)
	if logged(e.Code) {
		w.logger.ErrorContext(ctx, "websocket action failed", "action", action, "connection_id", connID, "err", e)
	}
	f := wsproto.NewError(action, string(e.Code), e.Message)
	if e.RetryAfter > 0 {
		f = f.WithRetryAfter(e.RetryAfter)
	}
	return w.reply(f)
}

func (w *WSRoutes) reply(f wsproto.Frame) response {
	b, err := wsproto.Encode(f)
	if err != nil {
		w.logger.Error("encode websocket reply", "err", err)
		return response{StatusCode: http.StatusOK}
	}
	return response{StatusCode: http.StatusOK, Body: string(b)}
}
