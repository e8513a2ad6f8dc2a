-- The sync feed (user_feed): the persister appends, GET /sync reads, the
-- persister's process prunes.

-- name: FeedAudience :many
-- Who may learn of a batch's changes, in one lookup: the participants of
-- the batch's conversations, with a group member's window (a direct
-- conversation's participants have none).
SELECT p.conversation_id, p.user_id, c.kind, p.joined_at, p.left_at FROM conversation_participants p
JOIN conversations c ON c.id = p.conversation_id
WHERE p.conversation_id = ANY(@conversation_ids::uuid[])
ORDER BY p.conversation_id, p.user_id;

-- name: TakeFeedHeads :exec
-- Locks the head row of every user a batch appends for, creating the
-- missing ones, in user id order so that two persisters never deadlock.
-- Taken after every other lock of the batch (the conversations', the
-- messages'), in a statement of its own, so that AppendFeed's snapshot sees
-- every entry committed before the locks were granted.
INSERT INTO user_feed_heads (user_id)
SELECT u FROM unnest(@user_ids::bigint[]) AS u ORDER BY u
ON CONFLICT (user_id) DO UPDATE SET head = user_feed_heads.head;

-- name: AppendFeed :many
-- Appends a batch's changes, each stored once (feed_changes) and pointed
-- at from the feed of every user it concerns, at that user's next position
-- in batch order, and raises the heads, in one statement. A change already
-- appended (the same event and kind: a redelivery or a replay) appends
-- nothing. The caller holds the heads' locks (TakeFeedHeads) and passes
-- each change once: entry_changes[k] is the ordinal (1-based) of the change
-- entry k is of, entry_users[k] its user.
WITH input AS (
    SELECT g.ord,
           (@kinds::text[])[g.ord] AS kind,
           (@conversation_ids::uuid[])[g.ord] AS conversation_id,
           (@event_ids::uuid[])[g.ord] AS event_id,
           (@occurred_ats::timestamptz[])[g.ord] AS occurred_at,
           (@bodies::jsonb[])[g.ord] AS body
    FROM generate_series(1, cardinality(@event_ids::uuid[])) AS g(ord)
), stored AS (
    INSERT INTO feed_changes (kind, conversation_id, event_id, occurred_at, body)
    SELECT i.kind, i.conversation_id, i.event_id, i.occurred_at, i.body FROM input i ORDER BY i.ord
    ON CONFLICT (event_id, kind) DO NOTHING
    RETURNING id, event_id, kind
), fresh AS (
    SELECT i.ord, s.id FROM input i JOIN stored s ON s.event_id = i.event_id AND s.kind = i.kind
), entries AS (
    SELECT (@entry_changes::int[])[g.k] AS ord, (@entry_users::bigint[])[g.k] AS user_id, g.k
    FROM generate_series(1, cardinality(@entry_users::bigint[])) AS g(k)
), heads AS MATERIALIZED (
    -- By key, whatever plan the statement is cached with.
    SELECT h.user_id, h.head, h.epoch FROM user_feed_heads h WHERE h.user_id = ANY(@entry_users::bigint[])
), numbered AS (
    SELECT e.user_id, f.id AS change_id,
           h.head + row_number() OVER (PARTITION BY e.user_id ORDER BY e.ord, e.k) AS position
    FROM entries e JOIN fresh f ON f.ord = e.ord JOIN heads h ON h.user_id = e.user_id
), ins AS (
    INSERT INTO user_feed (user_id, position, change_id)
    SELECT n.user_id, n.position, n.change_id FROM numbered n
    RETURNING user_id, position, change_id
), raised AS (
    UPDATE user_feed_heads h SET head = r.head
    FROM (SELECT i.user_id, max(i.position) AS head FROM ins i GROUP BY i.user_id) r
    WHERE h.user_id = ANY(ARRAY(SELECT i.user_id FROM ins i)) AND h.user_id = r.user_id
)
-- What was appended, for the persister to announce (FeedAppended).
SELECT ins.user_id, ins.position, ins.change_id, h.epoch
FROM ins JOIN heads h ON h.user_id = ins.user_id
ORDER BY ins.user_id, ins.position;

-- name: ListFeed :many
-- A user's changes after a position, oldest first.
SELECT f.position, c.kind, c.conversation_id, c.occurred_at, c.body
FROM user_feed f JOIN feed_changes c ON c.id = f.change_id
WHERE f.user_id = @user_id AND f.position > @since::bigint
ORDER BY f.position
LIMIT @page_limit;

-- name: ListFeedEntries :many
-- Announced feed entries (FeedAppended), by user, position and change,
-- with their feed's epoch now, for fanout to post to connections in feed
-- mode. Read from the feed itself and matched on all three, so that a
-- stale announcement (its transaction rolled back, the feed rebuilt since)
-- posts nothing but what the feed holds there (the caller also drops
-- entries of another epoch).
SELECT f.user_id, f.position, h.epoch, c.kind, c.conversation_id, c.occurred_at, c.body
FROM (SELECT (@user_ids::bigint[])[g.i] AS user_id, (@positions::bigint[])[g.i] AS position,
             (@change_ids::bigint[])[g.i] AS change_id
      FROM generate_series(1, cardinality(@user_ids::bigint[])) AS g(i)) k
JOIN user_feed f ON f.user_id = k.user_id AND f.position = k.position AND f.change_id = k.change_id
JOIN feed_changes c ON c.id = f.change_id
JOIN user_feed_heads h ON h.user_id = f.user_id
ORDER BY f.user_id, f.position;

-- name: FeedListeners :many
-- Which of these users hold a live connection opened in feed mode, or
-- removed one after closed_after: the persister announces their entries
-- only.
SELECT w.user_id FROM ws_connections w
WHERE w.user_id = ANY(@user_ids::bigint[]) AND w.feed AND w.expires_at > @now
UNION
SELECT h.user_id FROM user_feed_heads h
WHERE h.user_id = ANY(@user_ids::bigint[]) AND h.feed_closed_at > @closed_after::timestamptz;

-- name: FeedBounds :one
-- A user's head, epoch (0 while the user has no head) and the highest
-- position pruned (0 when none).
SELECT COALESCE((SELECT h.head FROM user_feed_heads h WHERE h.user_id = @user_id), 0)::bigint AS head,
       COALESCE((SELECT h.epoch FROM user_feed_heads h WHERE h.user_id = @user_id), 0)::bigint AS epoch,
       COALESCE((SELECT f.pruned_through FROM user_feed_floors f WHERE f.user_id = @user_id), 0)::bigint AS pruned_through;

-- name: RenewFeedEpochs :one
-- Gives the feeds of up to batch_size users after after_user a new epoch
-- (after a restore from a backup), in user id order, and answers how many
-- and the last of them, for the caller to go on from: no statement holds
-- many heads' locks for long.
WITH batch AS (
    SELECT h.user_id FROM user_feed_heads h WHERE h.user_id > @after_user::bigint
    ORDER BY h.user_id LIMIT @batch_size
), renewed AS (
    UPDATE user_feed_heads h
    SET epoch = (1 + floor(random() * 9007199254740990))::bigint
    FROM batch b WHERE h.user_id = b.user_id
    RETURNING h.user_id
)
SELECT count(*)::bigint AS renewed, COALESCE(max(r.user_id), 0)::bigint AS last_user FROM renewed r;

-- name: PruneFeed :one
-- Deletes up to batch_size entries appended before a time and raises the
-- floors of their users to the highest position deleted, so that a client
-- behind a floor is told to reload. Any old entries will do, not the
-- oldest first: a floor above an entry still there only makes a client
-- reload sooner, and the caller repeats until none is left.
WITH del AS (
    -- By row address: a plan cached for any batch size deletes what it
    -- found, never scanning the table to match it.
    DELETE FROM user_feed f
    WHERE f.ctid = ANY(ARRAY(SELECT d.ctid FROM user_feed d
                             WHERE d.appended_at < @before::timestamptz
                             LIMIT @batch_size))
    RETURNING f.user_id, f.position
), floors AS (
    INSERT INTO user_feed_floors (user_id, pruned_through)
    SELECT d.user_id, max(d.position) FROM del d GROUP BY d.user_id ORDER BY d.user_id
    ON CONFLICT (user_id) DO UPDATE
    SET pruned_through = GREATEST(user_feed_floors.pruned_through, EXCLUDED.pruned_through)
)
SELECT count(*)::bigint FROM del;

-- name: PruneFeedChanges :one
-- Deletes up to batch_size changes appended before a time. Run once
-- PruneFeed has deleted every entry appended before it: an entry is
-- written in its change's transaction, with the same appended_at.
WITH del AS (
    DELETE FROM feed_changes c
    WHERE c.ctid = ANY(ARRAY(SELECT d.ctid FROM feed_changes d
                             WHERE d.appended_at < @before::timestamptz
                             LIMIT @batch_size))
    RETURNING 1
)
SELECT count(*)::bigint FROM del;
