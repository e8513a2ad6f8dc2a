package api

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/parleychat/parley/api/auth"
	"github.com/parleychat/parley/internal/chat"
)

// Prefix is where the chat's REST API lives, as the mobile app expects.
const Prefix = "/api/v1/chat"

// maxJSONBody bounds every JSON request body.
const maxJSONBody = 64 << 10

// REST serves the chat's HTTP API.
type REST struct {
	svc      *chat.Service
	verifier *auth.Verifier
	logger   *slog.Logger
	mux      *http.ServeMux
	routes   []string // patterns, in registration order
	// uploadTimeout is the read deadline of an upload's body, replacing
	// the server's ReadTimeout; 0 keeps the server's.
	uploadTimeout time.Duration
}

// RESTOption configures a REST handler.
type RESTOption func(*REST)

// WithUploadTimeout gives POST /upload's body d to arrive, from when the
// upload is accepted, instead of the server's ReadTimeout: files are far
// larger than JSON bodies.
func WithUploadTimeout(d time.Duration) RESTOption { return func(r *REST) { r.uploadTimeout = d } }

// NewREST builds the handler, media routes included. Extra routes (the
// WebSocket endpoint) are added with Handle before serving.
func NewREST(svc *chat.Service, verifier *auth.Verifier, logger *slog.Logger, opts ...RESTOption) *REST {
	r := &REST{svc: svc, verifier: verifier, logger: logger, mux: http.NewServeMux()}
	for _, o := range opts {
		o(r)
	}
	r.Handle("GET /health", http.HandlerFunc(r.health))
	registerContracts(r)
	r.Handle("GET "+Prefix+"/conversations", r.authed(r.listConversations))
	r.Handle("POST "+Prefix+"/conversations", r.authed(r.createConversation))
	r.Handle("GET "+Prefix+"/conversations/{id}", r.authed(r.getConversation))
	r.Handle("GET "+Prefix+"/conversations/{id}/messages", r.authed(r.listMessages))
	r.Handle("PATCH "+Prefix+"/conversations/{id}/settings", r.authed(r.updateSettings))
	r.Handle("DELETE "+Prefix+"/conversations/{id}", r.authed(r.deleteConversation))
	r.Handle("POST "+Prefix+"/messages", r.authed(r.sendMessage))
	r.Handle("POST "+Prefix+"/messages/read", r.authed(r.markRead))
	r.Handle("DELETE "+Prefix+"/messages/{id}", r.authed(r.deleteMessage))
	r.Handle("PATCH "+Prefix+"/messages/{id}", r.authed(r.editMessage))
	r.Handle("POST "+Prefix+"/messages/{id}/unsend", r.authed(r.unsendMessage))
	r.Handle("PUT "+Prefix+"/messages/{id}/reaction", r.authed(r.setReaction))
	r.Handle("DELETE "+Prefix+"/messages/{id}/reaction", r.authed(r.removeReaction))
	r.Handle("POST "+Prefix+"/blocks", r.authed(r.block))
	r.Handle("DELETE "+Prefix+"/blocks/{user_id}", r.authed(r.unblock))
	r.Handle("GET "+Prefix+"/blocks", r.authed(r.listBlocks))
	r.Handle("POST "+Prefix+"/reports", r.authed(r.report))
	r.Handle("GET "+Prefix+"/presence", r.authed(r.presence))
	r.Handle("GET "+Prefix+"/presence/settings", r.authed(r.presenceSettings))
	r.Handle("PUT "+Prefix+"/presence/settings", r.authed(r.updatePresenceSettings))
	r.Handle("GET "+Prefix+"/sync", r.authed(r.sync))
	r.Handle("POST "+Prefix+"/devices", r.authed(r.registerDevice))
	r.Handle("DELETE "+Prefix+"/devices/{token}", r.authed(r.unregisterDevice))
	registerGroups(r)
	registerMedia(r, svc)
	// The fallback is not a route: it answers what no route matches.
	r.mux.HandleFunc(Prefix+"/", func(w http.ResponseWriter, req *http.Request) {
		r.fail(w, req, chat.Errorf(chat.CodeNotFound, "no such endpoint: %s %s", req.Method, req.URL.Path))
	})
	return r
}

// Handle adds a route, e.g. uploads or the WebSocket endpoint. Every route
// goes through it, so Routes lists them all.
func (r *REST) Handle(pattern string, h http.Handler) {
	r.mux.Handle(pattern, h)
	r.routes = append(r.routes, pattern)
}

// Routes lists the patterns of every route, as registered ("GET /health"):
// the contract tests check each is in the OpenAPI document and back.
func (r *REST) Routes() []string { return slices.Clone(r.routes) }

func (r *REST) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	defer func() {
		if p := recover(); p != nil {
			r.logger.Error("handler panic", "method", req.Method, "path", req.URL.Path, "panic", p)
			if !sw.wrote {
				r.fail(sw, req, fmt.Errorf("panic: %v", p)) // AsError: internal
			}
		}
		r.logger.Debug("request", "method", req.Method, "path", req.URL.Path, "status", sw.status, "duration", time.Since(start))
	}()
	r.mux.ServeHTTP(sw, req)
}

type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (s *statusWriter) WriteHeader(code int) {
	if !s.wrote {
		s.status, s.wrote = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	s.wrote = true
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (WebSocket upgrade).
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (r *REST) authed(h func(http.ResponseWriter, *http.Request, int64)) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		token, err := bearerToken(req.Header.Get("Authorization"))
		if err == nil {
			var c auth.Claims
			if c, err = authenticate(req.Context(), r.verifier, token); err == nil {
				h(w, req, c.UserID)
				return
			}
		}
		r.fail(w, req, err)
	}
}

func (r *REST) health(w http.ResponseWriter, req *http.Request) {
	if err := r.svc.Ping(req.Context()); err != nil {
		r.logger.Warn("health check: database unreachable", "err", err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unhealthy", "reason": "database unreachable"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "healthy"})
}

type page[T any] struct {
	Data     []T   `json:"data"`
	Total    int64 `json:"total"`
	Page     int   `json:"page"`
	PageSize int   `json:"page_size"`
}

func (r *REST) listConversations(w http.ResponseWriter, req *http.Request, user int64) {
	q := req.URL.Query()
	if err := onlyParams(q, "page", "page_size", "archived"); err != nil {
		r.fail(w, req, err)
		return
	}
	pg, size, err := pagination(q, 20)
	if err != nil {
		r.fail(w, req, err)
		return
	}
	var archived *bool
	if v := q.Get("archived"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			r.fail(w, req, chat.Errorf(chat.CodeBadRequest, "archived must be true or false"))
			return
		}
		archived = &b
	}
	rows, total, err := r.svc.ListConversations(req.Context(), user, chat.ListParams{Page: pg, PageSize: size, Archived: archived})
	if err != nil {
		r.fail(w, req, err)
		return
	}
	writeJSON(w, http.StatusOK, page[chat.ConversationView]{Data: rows, Total: total, Page: pg, PageSize: size})
}

func (r *REST) createConversation(w http.ResponseWriter, req *http.Request, user int64) {
	var in chat.ConversationInput
	if err := decodeJSON(w, req, &in); err != nil {
		r.fail(w, req, err)
		return
	}
	c, err := r.svc.CreateConversation(req.Context(), user, in)
	if err != nil {
		r.fail(w, req, err)
		return
	}
	writeJSON(w, http.StatusOK, c)
}

func (r *REST) getConversation(w http.ResponseWriter, req *http.Request, user int64) {
	id, err := pathUUID(req, "id")
	if err != nil {
		r.fail(w, req, err)
		return
	}
	c, err := r.svc.Conversation(req.Context(), user, id)
	if err != nil {
		r.fail(w, req, err)
		return
	}
	writeJSON(w, http.StatusOK, c)
}

func (r *REST) listMessages(w http.ResponseWriter, req *http.Request, user int64) {
	id, err := pathUUID(req, "id")
	if err != nil {
		r.fail(w, req, err)
		return
	}
	q := req.URL.Query()
	if err := onlyParams(q, "page", "page_size", "after_seq", "before_seq", "limit"); err != nil {
		r.fail(w, req, err)
		return
	}
	if q.Has("limit") && !q.Has("page_size") {
		q.Set("page_size", q.Get("limit"))
	}
	pg, size, err := pagination(q, 50)
	if err != nil {
		r.fail(w, req, err)
		return
	}
	mq := chat.MessageQuery{Page: pg, PageSize: size}
	for name, dst := range map[string]**int64{"after_seq": &mq.AfterSeq, "before_seq": &mq.BeforeSeq} {
		if !q.Has(name) {
			continue
		}
		n, err := strconv.ParseInt(q.Get(name), 10, 64)
		if err != nil || n < 0 {
			r.fail(w, req, chat.Errorf(chat.CodeBadRequest, "%s must be a non-negative integer", name))
			return
		}
		*dst = &n
	}
	if mq.AfterSeq != nil && mq.BeforeSeq != nil {
		r.fail(w, req, chat.Errorf(chat.CodeBadRequest, "give after_seq or before_seq, not both"))
		return
	}
	if (mq.AfterSeq != nil || mq.BeforeSeq != nil) && q.Has("page") {
		r.fail(w, req, chat.Errorf(chat.CodeBadRequest, "page cannot be combined with after_seq or before_seq"))
		return
	}
	msgs, total, err := r.svc.Messages(req.Context(), user, id, mq)
	if err != nil {
		r.fail(w, req, err)
		return
	}
	if total < 0 { // cursor mode
		resp := map[string]any{"data": msgs, "page_size": size, "has_more": len(msgs) == size}
		if n := len(msgs); n > 0 {
			resp["next_after_seq"] = max(msgs[0].Seq, msgs[n-1].Seq)
			resp["next_before_seq"] = min(msgs[0].Seq, msgs[n-1].Seq)
		}
		writeJSON(w, http.StatusOK, resp)
		return
	}
	writeJSON(w, http.StatusOK, page[chat.MessageView]{Data: msgs, Total: total, Page: pg, PageSize: size})
}

// sync answers the caller's feed after ?since= (0: from the start), at
// most ?limit= changes.
func (r *REST) sync(w http.ResponseWriter, req *http.Request, user int64) {
	q := req.URL.Query()
	if err := onlyParams(q, "since", "epoch", "limit"); err != nil {
		r.fail(w, req, err)
		return
	}
	var since, epoch, limit int64
	for name, dst := range map[string]*int64{"since": &since, "epoch": &epoch, "limit": &limit} {
		vals, ok := q[name]
		if !ok {
			continue
		}
		n, ok := decimal(vals)
		if !ok {
			r.fail(w, req, chat.Errorf(chat.CodeBadRequest, "%s must be a non-negative integer in canonical decimal, given once", name))
			return
		}
		*dst = n
	}
	if q.Has("limit") && limit == 0 {
		r.fail(w, req, chat.Errorf(chat.CodeBadRequest, "limit must be at least 1"))
		return
	}
	res, err := r.svc.Sync(req.Context(), user, since, epoch, int(min(limit, math.MaxInt32)))
	if err != nil {
		r.fail(w, req, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// decimal reads a query parameter given once as a non-negative integer in
// canonical decimal (no sign, no leading zero).
func decimal(vals []string) (int64, bool) {
	if len(vals) != 1 {
		return 0, false
	}
	n, err := strconv.ParseInt(vals[0], 10, 64)
	return n, err == nil && n >= 0 && strconv.FormatInt(n, 10) == vals[0]
}

func (r *REST) sendMessage(w http.ResponseWriter, req *http.Request, user int64) {
	var in chat.SendInput
	if err := decodeJSON(w, req, &in); err != nil {
		r.fail(w, req, err)
		return
	}
	m, err := r.svc.Send(req.Context(), user, in)
	if err != nil {
		r.fail(w, req, err)
		return
	}
	writeJSON(w, http.StatusOK, m)
}

func (r *REST) markRead(w http.ResponseWriter, req *http.Request, user int64) {
	var in chat.ReadInput
	if err := decodeJSON(w, req, &in); err != nil {
		r.fail(w, req, err)
		return
	}
	res, err := r.svc.MarkRead(req.Context(), user, in)
	if err != nil {
		r.fail(w, req, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "read": res.Read, "ignored": res.Ignored})
}

func (r *REST) updateSettings(w http.ResponseWriter, req *http.Request, user int64) {
	id, err := pathUUID(req, "id")
	if err != nil {
		r.fail(w, req, err)
		return
	}
	var st chat.Settings
	if err := decodeJSON(w, req, &st); err != nil {
		r.fail(w, req, err)
		return
	}
	if err := r.svc.UpdateSettings(req.Context(), user, id, st); err != nil {
		r.fail(w, req, err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"status": "accepted", "conversation_id": id, "settings": st})
}

func (r *REST) deleteConversation(w http.ResponseWriter, req *http.Request, user int64) {
	id, err := pathUUID(req, "id")
	if err != nil {
		r.fail(w, req, err)
		return
	}
	yes := true
	if err := r.svc.UpdateSettings(req.Context(), user, id, chat.Settings{Deleted: &yes}); err != nil {
		r.fail(w, req, err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"status": "accepted", "conversation_id": id})
}

func (r *REST) deleteMessage(w http.ResponseWriter, req *http.Request, user int64) {
	id, err := pathUUID(req, "id")
	if err != nil {
		r.fail(w, req, err)
		return
	}
	if err := r.svc.DeleteMessage(req.Context(), user, id); err != nil {
		r.fail(w, req, err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"status": "accepted", "message_id": id})
}

func (r *REST) editMessage(w http.ResponseWriter, req *http.Request, user int64) {
	var in chat.EditInput
	if err := decodeChange(w, req, &in, &in.MessageID); err != nil {
		r.fail(w, req, err)
		return
	}
	r.changed(w, req)(r.svc.EditMessage(req.Context(), user, in))
}

func (r *REST) unsendMessage(w http.ResponseWriter, req *http.Request, user int64) {
	var in chat.MessageRef
	if err := pathMessage(req, &in.MessageID); err != nil {
		r.fail(w, req, err)
		return
	}
	r.changed(w, req)(r.svc.UnsendMessage(req.Context(), user, in))
}

func (r *REST) setReaction(w http.ResponseWriter, req *http.Request, user int64) {
	var in chat.ReactionInput
	if err := decodeChange(w, req, &in, &in.MessageID); err != nil {
		r.fail(w, req, err)
		return
	}
	r.changed(w, req)(r.svc.SetReaction(req.Context(), user, in))
}

func (r *REST) removeReaction(w http.ResponseWriter, req *http.Request, user int64) {
	var in chat.MessageRef
	if err := pathMessage(req, &in.MessageID); err != nil {
		r.fail(w, req, err)
		return
	}
	r.changed(w, req)(r.svc.RemoveReaction(req.Context(), user, in))
}

// decodeChange reads a change's body into in and the path's message id
// into its messageID field; a body naming another message is refused.
func decodeChange(w http.ResponseWriter, req *http.Request, in any, messageID *string) error {
	if err := decodeJSON(w, req, in); err != nil {
		return err
	}
	return pathMessage(req, messageID)
}

func pathMessage(req *http.Request, messageID *string) error {
	id, err := pathUUID(req, "id")
	if err != nil {
		return err
	}
	if *messageID != "" && *messageID != id.String() {
		return chat.Errorf(chat.CodeBadRequest, "message_id %q in the body is not the message %s of the path", *messageID, id)
	}
	*messageID = id.String()
	return nil
}

// changed answers an accepted change of a message, or its refusal.
func (r *REST) changed(w http.ResponseWriter, req *http.Request) func(chat.ChangeResult, error) {
	return func(res chat.ChangeResult, err error) {
		if err != nil {
			r.fail(w, req, err)
			return
		}
		writeJSON(w, http.StatusAccepted, map[string]any{"status": "accepted", "message_id": res.MessageID,
			"conversation_id": res.ConversationID, "at": res.At})
	}
}

func (r *REST) registerDevice(w http.ResponseWriter, req *http.Request, user int64) {
	var in chat.DeviceInput
	if err := decodeJSON(w, req, &in); err != nil {
		r.fail(w, req, err)
		return
	}
	d, err := r.svc.RegisterDevice(req.Context(), user, in)
	if err != nil {
		r.fail(w, req, err)
		return
	}
	writeJSON(w, http.StatusOK, d)
}

func (r *REST) unregisterDevice(w http.ResponseWriter, req *http.Request, user int64) {
	if err := r.svc.UnregisterDevice(req.Context(), user, req.PathValue("token")); err != nil {
		r.fail(w, req, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// errorBody is the JSON shape of every error.
type errorBody struct {
	Error struct {
		Code    chat.Code `json:"code"`
		Message string    `json:"message"`
	} `json:"error"`
}

func (r *REST) fail(w http.ResponseWriter, req *http.Request, err error) {
	e := chat.AsError(err)
	status := httpStatus(e.Code)
	if ra, ok := retryAfter(e); ok {
		w.Header().Set("Retry-After", ra)
	}
	if logged(e.Code) {
		r.logger.Error("request failed", "method", req.Method, "path", req.URL.Path, "code", e.Code, "err", e)
	} else {
		r.logger.Debug("request refused", "method", req.Method, "path", req.URL.Path, "code", e.Code, "err", e.Message)
	}
	var b errorBody
	b.Error.Code, b.Error.Message = e.Code, e.Message
	writeJSON(w, status, b)
}

// WriteJSON writes v with status; exported for routes added with Handle.
func WriteJSON(w http.ResponseWriter, status int, v any) { writeJSON(w, status, v) }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	// Presigned URLs carry & in their query: keep it as it is, not \u0026.
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// pathUserID reads the {user_id} of a path: a positive integer.
func pathUserID(req *http.Request) (int64, error) {
	v := req.PathValue("user_id")
	id, err := strconv.ParseInt(v, 10, 64)
	if err != nil || id <= 0 {
		return 0, chat.Errorf(chat.CodeBadRequest, "user_id %q is not a positive integer", v)
	}
	return id, nil
}

func pathUUID(req *http.Request, name string) (uuid.UUID, error) {
	v := req.PathValue(name)
	if len(v) != 36 {
		return uuid.Nil, chat.Errorf(chat.CodeBadRequest, "%s %q is not a UUID", name, v)
	}
	id, err := uuid.Parse(v)
	if err != nil {
		return uuid.Nil, chat.Errorf(chat.CodeBadRequest, "%s %q is not a UUID", name, v)
	}
	return id, nil
}

func pagination(q map[string][]string, defaultSize int) (int, int, error) {
	get := func(name string, def, lo, hi int) (int, error) {
		vals, ok := q[name]
		if !ok || len(vals) == 0 || vals[0] == "" {
			return def, nil
		}
		n, err := strconv.Atoi(vals[0])
		if err != nil || n < lo || n > hi {
			return 0, chat.Errorf(chat.CodeBadRequest, "%s must be an integer from %d to %d", name, lo, hi)
		}
		return n, nil
	}
	pg, err := get("page", 1, 1, 1_000_000)
	if err != nil {
		return 0, 0, err
	}
	size, err := get("page_size", defaultSize, 1, 100)
	if err != nil {
		return 0, 0, err
	}
	return pg, size, nil
}

func onlyParams(q map[string][]string, allowed ...string) error {
	for k := range q {
		ok := false
		for _, a := range allowed {
			if k == a {
				ok = true
			}
		}
		if !ok {
			return chat.Errorf(chat.CodeBadRequest, "unknown query parameter %q", k)
		}
	}
	return nil
}
