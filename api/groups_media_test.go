package api_test

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/parleychat/parley/api"
	"github.com/parleychat/parley/api/auth"
	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/internal/chat"
	"github.com/parleychat/parley/internal/media"
	"github.com/parleychat/parley/internal/mediatest"
	"github.com/parleychat/parley/internal/pipelinetest"
)

// Names in this file start with "groupMedia" to stay clear of other tests
// of the package (groups_test.go and media_test.go have their own helpers).

// newGroupMediaHarness serves the real REST API with the media routes (the
// embedded S3 server) over the pipeline of pipelinetest: real PostgreSQL,
// the PostgreSQL bus and the persister consuming it. Not media_test.go's
// synchronous persister: a group change is published inside the
// transaction that wrote it, so a persister run inside Publish would wait
// for that transaction's rows, and the transaction for Publish.
func newGroupMediaHarness(t *testing.T) *mediaHarness {
	t.Helper()
	e := pipelinetest.New(t, pipelinetest.Options{})
	store := mediatest.Store(t, nil)
	limits := chat.DefaultLimits()
	limits.Rates = chat.Rates{}
	svc := chat.NewService(e.Pool, e.Bus, store, limits, mediaQuiet)
	secret := []byte("group-media-test-secret-with-enough-bytes")
	verifier, err := auth.NewVerifier(secret)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.NewREST(svc, verifier, mediaQuiet))
	t.Cleanup(srv.Close)
	return &mediaHarness{t: t, store: store, bus: e.Bus, url: srv.URL, secret: secret}
}

// groupMediaAwaitSeq waits until the persister stored conv's messages up to
// seq, as user sees the conversation.
func groupMediaAwaitSeq(t *testing.T, h *mediaHarness, user int64, conv string, seq int64) {
	t.Helper()
	pipelinetest.Eventually(t, fmt.Sprintf("conversation %s reaches seq %d", conv, seq), func() (bool, string) {
		r := h.do(user, http.MethodGet, api.Prefix+"/conversations/"+conv, "", nil)
		c := mediaDecode[chat.ConversationView](t, r, http.StatusOK)
		return c.LastSeq >= seq, fmt.Sprintf("last_seq %d", c.LastSeq)
	})
}

// groupMediaImage uploads a distinct JPEG as user and sends it to the group.
func groupMediaImage(t *testing.T, h *mediaHarness, user int64, conv string, w, hgt int) (chat.MessageView, []byte) {
	t.Helper()
	file := mediaJPEG(t, w, hgt)
	up := mediaDecode[chat.UploadView](t, h.upload(user, "g.jpg", "image/jpeg", file), http.StatusOK)
	msg := mediaDecode[chat.MessageView](t, h.send(user, map[string]any{
		"conversation_id": conv, "content_type": "image", "media_key": up.Key}), http.StatusOK)
	if msg.RecipientID != nil || msg.ConversationID != conv || msg.MediaKey == nil {
		t.Fatalf("group image message %+v: want no recipient, conversation %s, a media key", msg, conv)
	}
	return msg, file
}

// TestGroupMediaFollowsMembershipWindow: in a group of A, B and C, A sends
// an image m1, removes C, adds D and sends an image m2. The media (and the
// thumbnail) of a message is served exactly to those who see the message:
// the sender, and members whose membership held the message's creation.
func TestGroupMediaFollowsMembershipWindow(t *testing.T) {
	h := newGroupMediaHarness(t)
	const a, b, c, d, stranger = 9101, 9102, 9103, 9104, 9109

	g := mediaDecode[chat.ConversationView](t, h.doJSON(a, http.MethodPost, api.Prefix+"/groups",
		map[string]any{"title": "Photos", "member_ids": []int64{b, c}}), http.StatusCreated)
	if g.Kind != "group" || g.MemberCount != 3 {
		t.Fatalf("created group %+v, want a group of 3", g)
	}

	m1, file1 := groupMediaImage(t, h, a, g.ID, 64, 48)
	groupMediaAwaitSeq(t, h, a, g.ID, 2) // created, m1

	if r := h.do(a, http.MethodDelete, api.Prefix+"/groups/"+g.ID+"/members/"+strconv.FormatInt(c, 10), "", nil); r.status != http.StatusNoContent {
		t.Fatalf("remove C: status %d: %s", r.status, r.body)
	}
	if r := h.doJSON(a, http.MethodPost, api.Prefix+"/groups/"+g.ID+"/members", map[string]any{"user_ids": []int64{d}}); r.status != http.StatusOK {
		t.Fatalf("add D: status %d: %s", r.status, r.body)
	}

	m2, file2 := groupMediaImage(t, h, a, g.ID, 80, 60)
	groupMediaAwaitSeq(t, h, a, g.ID, 5) // created, m1, removed, added, m2
	if bytes.Equal(file1, file2) {
		t.Fatal("the two fixtures are the same bytes: a swapped redirect would go unnoticed")
	}

	// Thumbnails, as the thumbnailer leaves them, so that the thumbnail
	// variant of the route is checked against the same windows.
	thumbs := map[string][]byte{}
	for i, m := range []struct {
		msg  chat.MessageView
		w, h int
	}{{m1, 32, 24}, {m2, 40, 30}} {
		thumb := mediaJPEG(t, m.w, m.h)
		thumbKey := media.ThumbnailKey(*m.msg.MediaKey)
		if err := h.store.Put(t.Context(), thumbKey, thumb, "image/jpeg"); err != nil {
			t.Fatal(err)
		}
		members := []int64{b, c}
		if i == 1 {
			members = []int64{b, d}
		}
		ready, err := events.New(uuid.NewString(), time.Now(), a, g.ID, events.ThumbnailReadyV1{
			MessageID: m.msg.ID, ConversationID: g.ID, SenderID: a, MediaKey: *m.msg.MediaKey,
			ThumbnailKey: thumbKey, Width: m.w, Height: m.h, MemberIDs: members})
		if err != nil {
			t.Fatal(err)
		}
		if err := h.bus.Publish(t.Context(), ready); err != nil {
			t.Fatal(err)
		}
		thumbs[m.msg.ID] = thumb
		// The persister stores the thumbnail's key in a moment.
		path := api.Prefix + "/messages/" + m.msg.ID + "/media?thumbnail=true"
		pipelinetest.Eventually(t, "the thumbnail of message "+m.msg.ID+" is stored", func() (bool, string) {
			r := h.do(a, http.MethodGet, path, "", nil)
			return r.status == http.StatusFound, fmt.Sprintf("status %d: %s", r.status, r.body)
		})
	}

	files := map[string][]byte{m1.ID: file1, m2.ID: file2}
	names := map[string]string{m1.ID: "m1", m2.ID: "m2"}
	users := map[int64]string{a: "A (sender)", b: "B", c: "C (removed after m1)", d: "D (added before m2)", stranger: "a stranger"}
	for _, tt := range []struct {
		user int64
		msg  chat.MessageView
		sees bool
	}{
		{a, m1, true}, {a, m2, true},
		{b, m1, true}, {b, m2, true},
		{c, m1, true}, {c, m2, false},
		{d, m1, false}, {d, m2, true},
		{stranger, m1, false}, {stranger, m2, false},
	} {
		for _, variant := range []struct {
			query string
			want  []byte
		}{{"", files[tt.msg.ID]}, {"?thumbnail=true", thumbs[tt.msg.ID]}} {
			what := fmt.Sprintf("%s GETs the media%s of %s", users[tt.user], variant.query, names[tt.msg.ID])
			r := h.do(tt.user, http.MethodGet, api.Prefix+"/messages/"+tt.msg.ID+"/media"+variant.query, "", nil)
			if !tt.sees {
				if r.status != http.StatusForbidden || r.errorCode() != string(chat.CodeForbidden) || r.header.Get("Location") != "" {
					t.Errorf("%s: status %d (Location %q): %s, want 403 forbidden", what, r.status, r.header.Get("Location"), r.body)
				}
				continue
			}
			if r.status != http.StatusFound {
				t.Errorf("%s: status %d: %s, want 302", what, r.status, r.body)
				continue
			}
			if got := mediaFetch(t, r.header.Get("Location")); !bytes.Equal(got, variant.want) {
				t.Errorf("%s: the redirect serves %d bytes that are not that message's", what, len(got))
			}
		}
	}
}
