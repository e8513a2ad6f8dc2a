package main

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// archiveAt puts an event that occurred age ago into the archive.
func archiveAt(t *testing.T, e *env, age time.Duration) {
	t.Helper()
	if _, err := e.pool.Exec(context.Background(), `INSERT INTO event_archive (id, type, occurred_at, envelope)
		VALUES ($1, 'Connected', $2, '{}')`, uuid.New(), time.Now().Add(-age)); err != nil {
		t.Fatal(err)
	}
}

// TestArchiveRetention: `chat archive prune` deletes what is older than
// --before; the persister's process prunes what is older than
// CHAT_ARCHIVE_RETENTION on its own; a retention too short to replay from
// is refused at start.
func TestArchiveRetention(t *testing.T) {
	e := newEnv(t)
	if code := runCmd(t, e, "migrate"); code != 0 {
		t.Fatalf("migrate exited %d", code)
	}
	for _, age := range []time.Duration{10 * 24 * time.Hour, 9 * 24 * time.Hour, 2 * 24 * time.Hour, time.Minute} {
		archiveAt(t, e, age)
	}
	archived := func() int { return count(t, e.pool, `SELECT count(*) FROM event_archive`) }

	if code := runCmd(t, e, "archive", "--before", "192h", "prune"); code != 0 {
		t.Fatalf("archive prune exited %d", code)
	}
	if n := archived(); n != 2 {
		t.Fatalf("%d archived events after pruning those older than 8 days, want 2", n)
	}
	// The default retention (7 days) keeps the rest.
	if code := runCmd(t, e, "archive", "prune"); code != 0 || archived() != 2 {
		t.Fatalf("archive prune with the default retention: exit %d, %d left, want 2", code, archived())
	}

	short := *e
	short.extra = []string{"CHAT_ARCHIVE_RETENTION=10m"}
	if code := runCmd(t, &short, "archive", "prune"); code == 0 {
		t.Error("CHAT_ARCHIVE_RETENTION=10m was accepted")
	}

	day := *e
	day.extra = []string{"CHAT_ARCHIVE_RETENTION=24h", "CHAT_ARCHIVE_PRUNE_BATCH=1"}
	pers := day.start("worker", "persister")
	// Its whole run, logged once done: a run prunes batch after batch
	// until nothing is older, so an event archived meanwhile would go too.
	waitUntil(t, "the persister's process pruned the 2-day-old event", func() bool {
		return strings.Contains(pers.output(), "pruned the event archive") && archived() == 1
	})

	// Fanout's process does not prune: one pruner per deployment.
	archiveAt(t, e, 3*24*time.Hour)
	fan := day.start("worker", "fanout")
	waitUntil(t, "fanout started", func() bool { return strings.Contains(fan.output(), "msg=started") })
	if n := archived(); n != 2 {
		// The persister prunes again only after CHAT_ARCHIVE_PRUNE_INTERVAL (1h).
		t.Fatalf("%d archived events with fanout started, want 2", n)
	}
}

// TestDeadLettersPurge: `chat deadletters purge` deletes one dead letter by
// id, a worker's, or all; an unknown id fails.
func TestDeadLettersPurge(t *testing.T) {
	e := newEnv(t)
	if code := runCmd(t, e, "migrate"); code != 0 {
		t.Fatalf("migrate exited %d", code)
	}
	insert := func(worker string) int64 {
		var id int64
		if err := e.pool.QueryRow(context.Background(), `INSERT INTO dead_letters (worker, event_id, event_type, envelope, error, attempts)
			VALUES ($1, $2, 'Connected', '{}', 'boom', 5) RETURNING id`, worker, uuid.New()).Scan(&id); err != nil {
			t.Fatal(err)
		}
		return id
	}
	one := insert("fanout")
	insert("fanout")
	insert("persister")
	insert("thumbnailer")
	left := func() int { return count(t, e.pool, `SELECT count(*) FROM dead_letters`) }
	if out := chatOutput(t, e, "deadletters", "list"); !strings.Contains(out, fmt.Sprintf("\n%d  ", one)) || !strings.Contains(out, "boom") {
		t.Fatalf("list does not show dead letter %d:\n%s", one, out)
	}

	out := chatOutput(t, e, "deadletters", "purge", fmt.Sprint(one))
	if !strings.Contains(out, "purged 1 dead letters") || left() != 3 {
		t.Fatalf("purge %d: %q, %d left", one, out, left())
	}
	if code := runCmd(t, e, "deadletters", "purge", fmt.Sprint(one)); code == 0 {
		t.Error("purging a dead letter that is gone succeeded")
	}
	if out := chatOutput(t, e, "deadletters", "--worker", "fanout", "purge"); !strings.Contains(out, "purged 1 dead letters") || left() != 2 {
		t.Fatalf("purge fanout's: %q, %d left", out, left())
	}
	if out := chatOutput(t, e, "deadletters", "list"); strings.Contains(out, "fanout") || !strings.Contains(out, "persister") {
		t.Fatalf("list after purging fanout's:\n%s", out)
	}
	if out := chatOutput(t, e, "deadletters", "purge"); !strings.Contains(out, "purged 2 dead letters") || left() != 0 {
		t.Fatalf("purge all: %q, %d left", out, left())
	}
}

// chatOutput runs a one-shot command that must succeed and returns its
// standard output.
func chatOutput(t *testing.T, e *env, args ...string) string {
	t.Helper()
	cmd := exec.Command(chatBin, args...)
	cmd.Env = e.vars()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chat %s: %v", strings.Join(args, " "), err)
	}
	return string(out)
}
