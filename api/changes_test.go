package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"testing"

	"github.com/parleychat/parley/api"
	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/internal/chat"
	"github.com/parleychat/parley/internal/pipelinetest"
)

// archivedChange returns the participant_ids of the archived change event
// of type typ for message id.
func archivedChange(t *testing.T, e *pipelinetest.Env, typ, id string) []int64 {
	t.Helper()
	var raw []byte
	err := e.Pool.QueryRow(context.Background(),
		`SELECT envelope FROM event_archive WHERE type = $1 AND envelope->'data'->>'message_id' = $2 ORDER BY occurred_at DESC LIMIT 1`, typ, id).Scan(&raw)
	if err != nil {
		t.Fatalf("archived %s of %s: %v", typ, id, err)
	}
	var env events.Envelope
	if err := json.Unmarshal(raw, &env); err != nil {
		t.Fatal(err)
	}
	var d struct {
		ParticipantIDs []int64 `json:"participant_ids"`
	}
	if err := json.Unmarshal(env.Data, &d); err != nil {
		t.Fatal(err)
	}
	return d.ParticipantIDs
}

// Changes through REST: the views show the newest text and the counts,
// bad input is refused with a reason, and a participant who blocks the
// one changing a message is not told of it.
func TestMessageChangesThroughREST(t *testing.T) {
	t.Parallel()
	e := pipelinetest.New(t, pipelinetest.Options{})
	const a, b = 7001, 7002
	conv := e.Conversation(t, a, b)
	m := e.Send(t, a, text(conv, "tpyo"))
	e.AwaitMessages(t, b, conv, 1)
	path := api.Prefix + "/messages/" + m.ID

	var ok struct {
		Status string `json:"status"`
		At     string `json:"at"`
	}
	e.MustDo(t, a, http.MethodPatch, path, map[string]any{"text_content": "typo"}, http.StatusAccepted, &ok)
	if ok.Status != "accepted" || ok.At == "" {
		t.Fatalf("edit answered %+v", ok)
	}
	if got := archivedChange(t, e, events.TypeMessageEdited, m.ID); !slices.Equal(got, []int64{a, b}) {
		t.Fatalf("edit tells %v, want both participants", got)
	}
	e.MustDo(t, b, http.MethodPut, path+"/reaction", map[string]any{"emoji": "😂"}, http.StatusAccepted, nil)
	pipelinetest.Eventually(t, "the edit and the reaction in b's view", func() (bool, string) {
		v := e.AwaitMessages(t, b, conv, 1)[0]
		return v.TextContent != nil && *v.TextContent == "typo" && v.EditedAt != nil &&
			len(v.Reactions) == 1 && v.Reactions[0] == chat.ReactionCount{Emoji: "😂", Count: 1, Mine: true}, ""
	})

	for _, c := range []struct {
		name   string
		user   int64
		method string
		path   string
		body   any
		status int
		code   chat.Code
	}{
		{"edit by the recipient", b, http.MethodPatch, path, map[string]any{"text_content": "x"}, http.StatusForbidden, chat.CodeForbidden},
		{"edit naming another message", a, http.MethodPatch, path, map[string]any{"text_content": "x", "message_id": conv}, http.StatusBadRequest, chat.CodeBadRequest},
		{"edit of an unknown message", a, http.MethodPatch, api.Prefix + "/messages/0195e4a2-7b3c-7d10-8a4b-9c2d3e4f5a6b", map[string]any{"text_content": "x"}, http.StatusNotFound, chat.CodeNotFound},
		{"empty emoji", b, http.MethodPut, path + "/reaction", map[string]any{"emoji": ""}, http.StatusUnprocessableEntity, chat.CodeInvalid},
		{"two emoji", b, http.MethodPut, path + "/reaction", map[string]any{"emoji": "😂😂"}, http.StatusUnprocessableEntity, chat.CodeInvalid},
		{"unsend by an outsider", 7003, http.MethodPost, path + "/unsend", nil, http.StatusForbidden, chat.CodeForbidden},
	} {
		t.Run(c.name, func(t *testing.T) {
			wantError(t, c.name, e.Do(t, c.user, c.method, c.path, c.body), c.status, c.code)
		})
	}

	// b blocks a: a's later changes are not announced to b, a may no
	// longer edit what b is shown, and b's views do not count a's
	// reactions.
	e.MustDo(t, b, http.MethodPost, api.Prefix+"/blocks", map[string]any{"user_id": a}, http.StatusOK, nil)
	e.MustDo(t, a, http.MethodPut, path+"/reaction", map[string]any{"emoji": "👍"}, http.StatusAccepted, nil)
	if got := archivedChange(t, e, events.TypeReactionChanged, m.ID); !slices.Equal(got, []int64{a}) {
		t.Fatalf("a's reaction after the block tells %v, want a only", got)
	}
	wantError(t, "a's edit after the block", e.Do(t, a, http.MethodPatch, path, map[string]any{"text_content": "what b sees"}), http.StatusForbidden, chat.CodeForbidden)
	pipelinetest.Eventually(t, "a's reaction in a's view", func() (bool, string) {
		v := e.AwaitMessages(t, a, conv, 1)[0]
		return len(v.Reactions) == 2, fmt.Sprint(v.Reactions)
	})
	if v := e.AwaitMessages(t, b, conv, 1)[0]; !slices.Equal(v.Reactions, []chat.ReactionCount{{Emoji: "😂", Count: 1, Mine: true}}) ||
		*v.TextContent != "typo" {
		t.Fatalf("b's view after the block: %q, reactions %v; want b's own reaction only", *v.TextContent, v.Reactions)
	}
	e.MustDo(t, a, http.MethodPost, path+"/unsend", nil, http.StatusAccepted, nil)
	pipelinetest.Eventually(t, "the tombstone in a's view", func() (bool, string) {
		v := e.AwaitMessages(t, a, conv, 1)[0]
		return v.UnsentAt != nil && v.TextContent == nil && v.Seq == 1 && len(v.Reactions) == 0, ""
	})
	// b never read it; a tombstone is not unread, and the preview says
	// what it is.
	if c := e.ConversationOf(t, b, conv); c.UnreadCount != 0 || c.LastMessage == nil || c.LastMessage.UnsentAt == nil || c.LastMessage.TextContent != nil {
		t.Fatalf("b's conversation after unsend: unread %d, last %+v", c.UnreadCount, c.LastMessage)
	}
}

// A participant who deleted the conversation after a message was sent is
// not shown it: they are not told of its changes and may make none.
func TestChangesOfMessagesHiddenByDeletion(t *testing.T) {
	t.Parallel()
	e := pipelinetest.New(t, pipelinetest.Options{})
	const a, b = 7101, 7102
	conv := e.Conversation(t, a, b)
	m := e.Send(t, a, text(conv, "before b deleted"))
	e.AwaitMessages(t, b, conv, 1)
	e.MustDo(t, b, http.MethodDelete, api.Prefix+"/conversations/"+conv, nil, http.StatusAccepted, nil)
	pipelinetest.Eventually(t, "the conversation deleted for b", func() (bool, string) {
		v := e.Do(t, b, http.MethodGet, api.Prefix+"/conversations/"+conv+"/messages", nil)
		var page struct {
			Total int `json:"total"`
		}
		if err := json.Unmarshal(v.Body, &page); err != nil {
			return false, err.Error()
		}
		return v.Status == http.StatusOK && page.Total == 0, string(v.Body)
	})
	path := api.Prefix + "/messages/" + m.ID
	e.MustDo(t, a, http.MethodPatch, path, map[string]any{"text_content": "edited"}, http.StatusAccepted, nil)
	if got := archivedChange(t, e, events.TypeMessageEdited, m.ID); !slices.Equal(got, []int64{a}) {
		t.Fatalf("the edit tells %v, want a only", got)
	}
	wantError(t, "b's reaction to a hidden message", e.Do(t, b, http.MethodPut, path+"/reaction", map[string]any{"emoji": "👍"}), http.StatusNotFound, chat.CodeNotFound)
}
