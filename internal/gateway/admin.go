package gateway

import (
	"context"
	"crypto/subtle"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi/types"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/gorilla/websocket"
)

// AdminHandler serves the API Gateway Management API:
// POST, GET and DELETE /@connections/{id}, also under /{stage}/. Errors carry
// x-amzn-ErrorType so that the SDK returns its typed errors (GoneException,
// PayloadTooLargeException, ForbiddenException). Signatures are not
// checked: a request must carry Config.AdminSecret in SecretHeader, and
// callers from anywhere but loopback are refused; serve it on a listener
// bound to loopback, as the root handler (ids may hold %2F).
func (g *Gateway) AdminHandler() http.Handler {
	return http.HandlerFunc(g.serveAdmin)
}

// SecretHeader carries the management API's shared secret.
const SecretHeader = "X-Parley-Gateway-Secret"

// WithSecret makes a Management API client send secret with every request,
// as the local gateway requires.
func WithSecret(secret string) func(*apigatewaymanagementapi.Options) {
	return func(o *apigatewaymanagementapi.Options) {
		o.APIOptions = append(o.APIOptions, func(s *middleware.Stack) error {
			// Before signing (Finalize), so the signature covers it.
			return s.Build.Add(middleware.BuildMiddlewareFunc("GatewaySecret", func(ctx context.Context, in middleware.BuildInput, next middleware.BuildHandler) (middleware.BuildOutput, middleware.Metadata, error) {
				if req, ok := in.Request.(*smithyhttp.Request); ok {
					req.Header.Set(SecretHeader, secret)
				}
				return next.HandleBuild(ctx, in)
			}), middleware.After)
		})
	}
}

func (g *Gateway) serveAdmin(w http.ResponseWriter, r *http.Request) {
	if ip := net.ParseIP(hostOnly(r.RemoteAddr)); ip == nil || !ip.IsLoopback() {
		writeAWSError(w, http.StatusForbidden, "ForbiddenException", "Forbidden")
		return
	}
	if !g.authorizedAdmin(r) {
		writeAWSError(w, http.StatusForbidden, "ForbiddenException", "Forbidden: missing or wrong "+SecretHeader)
		return
	}
	id, ok := g.connectionID(r.URL.EscapedPath())
	if !ok {
		writeAWSError(w, http.StatusNotFound, "NotFoundException", "Not Found")
		return
	}
	switch r.Method {
	case http.MethodPost:
		g.postToConnection(w, r, id)
	case http.MethodGet:
		g.getConnection(w, id)
	case http.MethodDelete:
		g.deleteConnection(w, r, id)
	default:
		w.Header().Set("Allow", "GET, POST, DELETE")
		writeAWSError(w, http.StatusMethodNotAllowed, "MethodNotAllowedException", "Method Not Allowed")
	}
}

// authorizedAdmin reports whether r carries the configured secret; with
// none configured, nothing is authorized.
func (g *Gateway) authorizedAdmin(r *http.Request) bool {
	got := r.Header.Get(SecretHeader)
	return g.cfg.AdminSecret != "" && subtle.ConstantTimeCompare([]byte(got), []byte(g.cfg.AdminSecret)) == 1
}

// connectionID takes the id from /@connections/{id} or
// /{stage}/@connections/{id}. It splits the escaped path because ids are
// base64 and may hold "/" (sent as %2F).
func (g *Gateway) connectionID(escapedPath string) (string, bool) {
	parts := strings.Split(strings.TrimPrefix(escapedPath, "/"), "/")
	if len(parts) == 3 {
		if stage, err := url.PathUnescape(parts[0]); err != nil || stage != g.cfg.Stage {
			return "", false
		}
		parts = parts[1:]
	}
	if len(parts) != 2 {
		return "", false
	}
	if seg, err := url.PathUnescape(parts[0]); err != nil || seg != "@connections" {
		return "", false
	}
	id, err := url.PathUnescape(parts[1])
	if err != nil || id == "" {
		return "", false
	}
	return id, true
}

func (g *Gateway) postToConnection(w http.ResponseWriter, r *http.Request, id string) {
	limit := int64(g.cfg.MaxMessageBytes)
	data, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		writeAWSError(w, http.StatusBadRequest, "BadRequestException", "Could not read the request body")
		return
	}
	_, err = g.PostToConnection(r.Context(), &apigatewaymanagementapi.PostToConnectionInput{ConnectionId: aws.String(id), Data: data})
	var tooLarge *types.PayloadTooLargeException
	switch {
	case errors.As(err, &tooLarge):
		writeAWSError(w, http.StatusRequestEntityTooLarge, "PayloadTooLargeException", "Message too long")
	case err != nil:
		writeGone(w)
	default:
		w.WriteHeader(http.StatusOK)
	}
}

func (g *Gateway) getConnection(w http.ResponseWriter, id string) {
	c := g.lookup(id)
	if c == nil {
		writeGone(w)
		return
	}
	// Field names and ISO 8601 timestamps as the SDK's GetConnection
	// deserializer reads them.
	type identity struct {
		SourceIP  string `json:"sourceIp"`
		UserAgent string `json:"userAgent"`
	}
	writeJSON(w, http.StatusOK, struct {
		ConnectedAt  string   `json:"connectedAt"`
		Identity     identity `json:"identity"`
		LastActiveAt string   `json:"lastActiveAt"`
	}{
		ConnectedAt:  isoTime(c.connectedAt),
		Identity:     identity{SourceIP: c.sourceIP, UserAgent: c.userAgent},
		LastActiveAt: isoTime(time.Unix(0, c.lastActive.Load())),
	})
}

func (g *Gateway) deleteConnection(w http.ResponseWriter, r *http.Request, id string) {
	if _, err := g.DeleteConnection(r.Context(), &apigatewaymanagementapi.DeleteConnectionInput{ConnectionId: aws.String(id)}); err != nil {
		writeGone(w)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func isoTime(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}

func writeGone(w http.ResponseWriter) {
	writeAWSError(w, http.StatusGone, "GoneException", "Gone")
}

func writeAWSError(w http.ResponseWriter, status int, errType, message string) {
	w.Header().Set("x-amzn-ErrorType", errType)
	writeJSON(w, status, map[string]string{"message": message})
}

// PostToConnection sends data to one connection in-process, with the
// Management API's answers as the SDK returns them (GoneException for a
// connection that is not here, PayloadTooLargeException): a fanout worker
// in the same process posts through it instead of over HTTP, which under
// load cost more than the post itself (a request, a signature and a
// loopback round trip per frame).
func (g *Gateway) PostToConnection(_ context.Context, in *apigatewaymanagementapi.PostToConnectionInput, _ ...func(*apigatewaymanagementapi.Options)) (*apigatewaymanagementapi.PostToConnectionOutput, error) {
	if len(in.Data) > g.cfg.MaxMessageBytes {
		return nil, &types.PayloadTooLargeException{Message: aws.String("Message too long")}
	}
	c := g.lookup(aws.ToString(in.ConnectionId))
	if c == nil || !g.send(c, in.Data) {
		return nil, &types.GoneException{Message: aws.String("Gone")}
	}
	return &apigatewaymanagementapi.PostToConnectionOutput{}, nil
}

// DeleteConnection closes one connection in-process, as the Management
// API's DELETE does (GoneException for a connection that is not here).
func (g *Gateway) DeleteConnection(_ context.Context, in *apigatewaymanagementapi.DeleteConnectionInput, _ ...func(*apigatewaymanagementapi.Options)) (*apigatewaymanagementapi.DeleteConnectionOutput, error) {
	c := g.lookup(aws.ToString(in.ConnectionId))
	if c == nil {
		return nil, &types.GoneException{Message: aws.String("Gone")}
	}
	g.terminate(c, websocket.CloseNormalClosure, "", closeGraceful)
	return &apigatewaymanagementapi.DeleteConnectionOutput{}, nil
}
