-- The sync feed (user_feed): the persister appends, GET /sync reads, the
-- persister's process prunes.

-- name: FeedAudience :many
-- Who may learn of a batch's changes, in one lookup: the participants of
-- the batch's conversations.
SELECT p.conversation_id, p.user_id FROM conversation_participants p
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
-- Appends a batch's entries, each at its user's next position in batch
-- order, and raises the heads, in one statement; an entry already appended
-- (the same event, user and kind: a redelivery or a replay) is skipped.
-- The caller holds the heads' locks (TakeFeedHeads).
WITH input AS (
    SELECT g.ord,
           (@user_ids::bigint[])[g.ord] AS user_id,
           (@kinds::text[])[g.ord] AS kind,
           (@conversation_ids::uuid[])[g.ord] AS conversation_id,
           (@event_ids::uuid[])[g.ord] AS event_id,
           (@occurred_ats::timestamptz[])[g.ord] AS occurred_at,
           (@bodies::jsonb[])[g.ord] AS body
    FROM generate_series(1, cardinality(@user_ids::bigint[])) AS g(ord)
), done AS MATERIALIZED (
    -- By key (= ANY of the leading column), not an anti-join a planner
    -- may turn into a scan of the whole table.
    SELECT f.event_id, f.user_id, f.kind FROM user_feed f WHERE f.event_id = ANY(@event_ids::uuid[])
), fresh AS (
    SELECT DISTINCT ON (i.event_id, i.user_id, i.kind) i.* FROM input i
    WHERE NOT EXISTS (SELECT 1 FROM done d WHERE d.event_id = i.event_id AND d.user_id = i.user_id AND d.kind = i.kind)
    ORDER BY i.event_id, i.user_id, i.kind, i.ord
), heads AS MATERIALIZED (
    -- By key too, whatever plan the statement is cached with.
    SELECT h.user_id, h.head FROM user_feed_heads h WHERE h.user_id = ANY(@user_ids::bigint[])
), numbered AS (
    SELECT f.*, h.head + row_number() OVER (PARTITION BY f.user_id ORDER BY f.ord) AS position
    FROM fresh f JOIN heads h ON h.user_id = f.user_id
), ins AS (
    INSERT INTO user_feed (user_id, position, kind, conversation_id, event_id, occurred_at, body)
    SELECT n.user_id, n.position, n.kind, n.conversation_id, n.event_id, n.occurred_at, n.body FROM numbered n
    RETURNING user_id, position
), raised AS (
    UPDATE user_feed_heads h SET head = r.head
    FROM (SELECT i.user_id, max(i.position) AS head FROM ins i GROUP BY i.user_id) r
    WHERE h.user_id = ANY(ARRAY(SELECT i.user_id FROM ins i)) AND h.user_id = r.user_id
)
SELECT ins.user_id, ins.position FROM ins ORDER BY ins.user_id, ins.position;

-- name: ListFeed :many
-- A user's changes after a position, oldest first.
SELECT position, kind, conversation_id, occurred_at, body FROM user_feed
WHERE user_id = @user_id AND position > @since::bigint
ORDER BY position
LIMIT @page_limit;

-- name: FeedBounds :one
-- A user's head and the highest position pruned (0 when none).
SELECT COALESCE((SELECT h.head FROM user_feed_heads h WHERE h.user_id = @user_id), 0)::bigint AS head,
       COALESCE((SELECT f.pruned_through FROM user_feed_floors f WHERE f.user_id = @user_id), 0)::bigint AS pruned_through;

-- name: PruneFeed :one
-- Deletes up to batch_size entries appended before a time, oldest first,
-- and raises the floors of their users to the highest position deleted,
-- so that a client behind a floor is told to reload.
WITH del AS (
    -- By row address: a plan cached for any batch size deletes what it
    -- found, never scanning the table to match it.
    DELETE FROM user_feed f
    WHERE f.ctid = ANY(ARRAY(SELECT d.ctid FROM user_feed d
                             WHERE d.appended_at < @before::timestamptz
                             ORDER BY d.appended_at
                             LIMIT @batch_size))
    RETURNING f.user_id, f.position
), floors AS (
    INSERT INTO user_feed_floors (user_id, pruned_through)
    SELECT d.user_id, max(d.position) FROM del d GROUP BY d.user_id ORDER BY d.user_id
    ON CONFLICT (user_id) DO UPDATE
    SET pruned_through = GREATEST(user_feed_floors.pruned_through, EXCLUDED.pruned_through)
)
SELECT count(*)::bigint FROM del;
