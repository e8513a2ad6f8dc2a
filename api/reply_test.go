package api_test

import (
	"net/http"
	"testing"

	"github.com/google/uuid"

	"github.com/parleychat/parley/events/pgbus"
	"github.com/parleychat/parley/internal/chat"
	"github.com/parleychat/parley/internal/pipelinetest"
)

// A reply stays in its conversation: a reply to a stored message of
// another conversation is refused at ingress; one accepted before the
// message it names was stored, there, loses the reference when stored,
// and never becomes a dead letter.
func TestRepliesStayInTheirConversation(t *testing.T) {
	t.Parallel()
	e := pipelinetest.New(t, pipelinetest.Options{NoPersister: true})
	here, elsewhere := e.Conversation(t, 1, 2), e.Conversation(t, 1, 3)
	reply := func(conv, to, s string) map[string]any {
		m := text(conv, s)
		m["reply_to_id"] = to
		return m
	}

	// Not stored yet: accepted at ingress, checked by the persister.
	early := e.Send(t, 1, text(elsewhere, "in the other conversation"))
	smuggled := e.Send(t, 1, reply(here, early.ID, "a reply to the other conversation"))
	unknown := uuid.Must(uuid.NewV7()).String()
	pending := e.Send(t, 1, reply(here, unknown, "a reply to a message not stored (yet)"))
	e.StartPersister(t, pgbus.ConsumerConfig{})
	stored := e.AwaitMessages(t, 2, here, 2)
	if stored[0].ID != smuggled.ID || stored[0].ReplyToID != nil {
		t.Fatalf("the reply to another conversation was stored as %+v, want no reply_to_id", stored[0])
	}
	if stored[1].ID != pending.ID || stored[1].ReplyToID == nil || *stored[1].ReplyToID != unknown {
		t.Fatalf("the reply to an unknown message was stored as %+v, want reply_to_id %s", stored[1], unknown)
	}
	e.AwaitMessages(t, 3, elsewhere, 1)
	if n := e.Count(t, "dead_letters"); n != 0 {
		t.Fatalf("%d dead letters", n)
	}

	// Stored: refused at ingress, naming the field.
	runRefusals(t, e, []refusal{
		{"a reply to a stored message of another conversation", 1, "", http.MethodPost, sendPath, reply(here, early.ID, "again"), http.StatusUnprocessableEntity, chat.CodeInvalid},
	})
	ok := e.Send(t, 2, reply(here, smuggled.ID, "a reply in the same conversation"))
	got := e.AwaitMessages(t, 1, here, 3)
	if got[2].ID != ok.ID || got[2].ReplyToID == nil || *got[2].ReplyToID != smuggled.ID {
		t.Fatalf("the reply in the same conversation was stored as %+v", got[2])
	}
}
