-- name: MessageExists :one
SELECT EXISTS (SELECT 1 FROM messages WHERE id = $1);

-- name: GetMessage :one
SELECT * FROM messages WHERE id = $1;

-- name: ListMessagesPage :many
-- Newest first, the seed's page/page_size listing, as the viewer sees it.
SELECT m.* FROM messages m
WHERE m.conversation_id = @conversation_id
  AND m.created_at > COALESCE(sqlc.narg('hidden_before')::timestamptz, '-infinity')
  -- A group member's window (NULL for a direct conversation's participants).
  AND m.created_at >= COALESCE(sqlc.narg('visible_from')::timestamptz, '-infinity')
  AND m.created_at <= COALESCE(sqlc.narg('visible_until')::timestamptz, 'infinity')
  AND NOT EXISTS (SELECT 1 FROM message_deletions d WHERE d.message_id = m.id AND d.user_id = @viewer_id)
ORDER BY m.seq DESC
LIMIT @page_limit OFFSET @page_offset;

-- name: CountMessages :one
SELECT count(*) FROM messages m
WHERE m.conversation_id = @conversation_id
  AND m.created_at > COALESCE(sqlc.narg('hidden_before')::timestamptz, '-infinity')
  -- A group member's window (NULL for a direct conversation's participants).
  AND m.created_at >= COALESCE(sqlc.narg('visible_from')::timestamptz, '-infinity')
  AND m.created_at <= COALESCE(sqlc.narg('visible_until')::timestamptz, 'infinity')
  AND NOT EXISTS (SELECT 1 FROM message_deletions d WHERE d.message_id = m.id AND d.user_id = @viewer_id);

-- name: ListMessagesAfter :many
-- Catch-up: everything after the last sequence a client saw, oldest first.
SELECT m.* FROM messages m
WHERE m.conversation_id = @conversation_id AND m.seq > @after_seq
  AND m.created_at > COALESCE(sqlc.narg('hidden_before')::timestamptz, '-infinity')
  -- A group member's window (NULL for a direct conversation's participants).
  AND m.created_at >= COALESCE(sqlc.narg('visible_from')::timestamptz, '-infinity')
  AND m.created_at <= COALESCE(sqlc.narg('visible_until')::timestamptz, 'infinity')
  AND NOT EXISTS (SELECT 1 FROM message_deletions d WHERE d.message_id = m.id AND d.user_id = @viewer_id)
ORDER BY m.seq ASC
LIMIT @page_limit;

-- name: ListMessagesBefore :many
-- History: older messages than a sequence, newest first.
SELECT m.* FROM messages m
WHERE m.conversation_id = @conversation_id AND m.seq < @before_seq
  AND m.created_at > COALESCE(sqlc.narg('hidden_before')::timestamptz, '-infinity')
  -- A group member's window (NULL for a direct conversation's participants).
  AND m.created_at >= COALESCE(sqlc.narg('visible_from')::timestamptz, '-infinity')
  AND m.created_at <= COALESCE(sqlc.narg('visible_until')::timestamptz, 'infinity')
  AND NOT EXISTS (SELECT 1 FROM message_deletions d WHERE d.message_id = m.id AND d.user_id = @viewer_id)
ORDER BY m.seq DESC
LIMIT @page_limit;

-- name: ListMessagesByIDs :many
SELECT id, conversation_id, sender_id, recipient_id, seq FROM messages
WHERE id = ANY(@ids::uuid[]);

-- name: MarkMessagesRead :many
-- Answers the ids it marked: those read before are not read again.
UPDATE messages SET read_at = @read_at
WHERE id = ANY(@ids::uuid[]) AND conversation_id = @conversation_id
  AND recipient_id = @reader_id AND read_at IS NULL
RETURNING id;

-- name: InsertPendingReads :exec
-- Records a read of messages not stored yet; InsertMessages applies it.
INSERT INTO pending_reads (message_id, reader_id, conversation_id, read_at)
SELECT unnest(@message_ids::uuid[]), @reader_id::bigint, @conversation_id::uuid, @read_at::timestamptz
ON CONFLICT DO NOTHING;

-- name: PrunePendingReads :exec
DELETE FROM pending_reads WHERE recorded_at < @before::timestamptz;

-- name: MaxSeqOfMessages :one
SELECT COALESCE(max(seq), 0)::bigint FROM messages
WHERE id = ANY(@ids::uuid[]) AND conversation_id = @conversation_id AND recipient_id = @reader_id;

-- name: MarkMessageDelivered :exec
UPDATE messages SET delivered_at = @delivered_at
WHERE id = @id AND delivered_at IS NULL;

-- name: SetMessageMedia :exec
-- Fills what the thumbnailer learned; never overwrites a value already set,
-- nor fills a tombstone.
UPDATE messages
SET media_thumbnail_key = COALESCE(media_thumbnail_key, sqlc.narg('thumbnail_key')),
    audio_duration = COALESCE(audio_duration, sqlc.narg('audio_duration'))
WHERE id = @id AND unsent_at IS NULL;

-- name: InsertMessageDeletion :execrows
INSERT INTO message_deletions (message_id, user_id, deleted_at)
VALUES ($1, $2, $3)
ON CONFLICT DO NOTHING;

-- name: InsertMessageDeletions :exec
-- Hides a batch of messages, each for one user: how a message withheld from
-- its recipient (who blocks its sender) stays the sender's only.
INSERT INTO message_deletions (message_id, user_id, deleted_at)
SELECT unnest(@message_ids::uuid[]), unnest(@user_ids::bigint[]), unnest(@deleted_ats::timestamptz[])
ON CONFLICT DO NOTHING;

-- name: InsertMessages :many
-- Stores a batch of messages, each with the next sequence of its
-- conversation in batch order, and moves each conversation's last message,
-- in one statement; messages already stored are skipped. Empty strings and
-- an audio duration of -1 stand for NULL (arrays cannot carry NULLs here).
-- The caller holds the conversations' row locks (LockConversations), taken
-- in an earlier statement so that this one's snapshot sees every message
-- committed before the locks were granted. A message's delivery receipt
-- that came in the same batch is stored with it (delivered_ats; Go's zero
-- time, 0001-01-01, for none), which saves updating the row just written.
WITH input AS (
    -- The arrays zipped by position. Subscripts, not one unnest per array
    -- joined on its ordinality: planning that many joins cost more than
    -- running the statement.
    SELECT g.ord,
           (@ids::uuid[])[g.ord] AS id,
           (@conversation_ids::uuid[])[g.ord] AS conversation_id,
           (@sender_ids::bigint[])[g.ord] AS sender_id,
           (@recipient_ids::bigint[])[g.ord] AS recipient_id,
           (@content_types::text[])[g.ord] AS content_type,
           (@text_contents::text[])[g.ord] AS text_content,
           (@media_keys::text[])[g.ord] AS media_key,
           (@audio_durations::integer[])[g.ord] AS audio_duration,
           (@reply_to_ids::text[])[g.ord] AS reply_to_id,
           (@client_message_ids::text[])[g.ord] AS client_message_id,
           (@created_ats::timestamptz[])[g.ord] AS created_at,
           (@systems::text[])[g.ord] AS system,
           NULLIF((@delivered_ats::timestamptz[])[g.ord], '0001-01-01 00:00:00+00') AS delivered_at
    FROM generate_series(1, cardinality(@ids::uuid[])) AS g(ord)
), fresh AS (
    -- Already stored ones are looked up by key, a probe of the primary key
    -- each: a scalar subquery is never turned into a join, where an
    -- anti-join, or = ANY of the batch's ids, was planned as a scan of the
    -- whole table (costed as the small table of its last statistics).
    SELECT DISTINCT ON (i.id) i.* FROM input i
    WHERE (SELECT true FROM messages e WHERE e.id = i.id) IS NULL
    ORDER BY i.id, i.ord
), numbered AS (
    SELECT f.*,
           (SELECT COALESCE(max(m.seq), 0) FROM messages m WHERE m.conversation_id = f.conversation_id)
           + row_number() OVER (PARTITION BY f.conversation_id ORDER BY f.ord) AS seq
    FROM fresh f
), ins AS (
    INSERT INTO messages (
        id, conversation_id, seq, sender_id, recipient_id, content_type, text_content,
        media_key, audio_duration, reply_to_id, client_message_id, created_at, sent_at, delivered_at, read_at, system
    )
    -- A recipient of 0 is a group's message: it has none.
    SELECT n.id, n.conversation_id, n.seq, n.sender_id, NULLIF(n.recipient_id, 0), n.content_type, NULLIF(n.text_content, ''),
           NULLIF(n.media_key, ''), NULLIF(n.audio_duration, -1),
           -- A reply to another conversation's message (stored, or in this
           -- batch, after the ingress checked it) loses its reference
           -- rather than fail.
           -- Looked for only for a reply: the batch's own rows are a scan of
           -- the batch each.
           CASE WHEN n.reply_to_id = '' THEN NULL
                WHEN EXISTS (SELECT 1 FROM messages r WHERE r.id = n.reply_to_id::uuid
                                                       AND r.conversation_id <> n.conversation_id)
                  OR EXISTS (SELECT 1 FROM input r WHERE r.id = n.reply_to_id::uuid
                                                    AND r.conversation_id <> n.conversation_id)
                THEN NULL ELSE n.reply_to_id::uuid END,
           NULLIF(n.client_message_id, ''), n.created_at, @sent_at::timestamptz, n.delivered_at, pr.read_at,
           NULLIF(n.system, '')::jsonb
    FROM numbered n
    -- A read that arrived before its message (InsertPendingReads) counts
    -- only by the message's recipient in its conversation.
    LEFT JOIN pending_reads pr ON pr.message_id = n.id AND pr.reader_id = n.recipient_id
                              AND pr.conversation_id = n.conversation_id
    ORDER BY n.ord
    RETURNING id, conversation_id, seq, created_at, recipient_id, read_at
), early AS (
    -- Settled either way once the message is stored: applied above, or
    -- naming a reader or conversation the message does not have.
    DELETE FROM pending_reads pr WHERE pr.message_id = ANY(ARRAY(SELECT i.id FROM ins i))
), early_position AS (
    UPDATE conversation_participants p
    SET last_read_seq = GREATEST(p.last_read_seq, r.seq),
        last_read_at  = GREATEST(COALESCE(p.last_read_at, r.read_at), r.read_at)
    FROM (SELECT i.conversation_id, i.recipient_id, max(i.seq) AS seq, max(i.read_at) AS read_at
          FROM ins i WHERE i.read_at IS NOT NULL GROUP BY i.conversation_id, i.recipient_id) r
    WHERE p.conversation_id = r.conversation_id AND p.user_id = r.recipient_id
), last AS (
    SELECT DISTINCT ON (l.conversation_id) l.conversation_id, l.id, l.seq,
           max(l.created_at) OVER (PARTITION BY l.conversation_id) AS latest
    FROM ins l ORDER BY l.conversation_id, l.seq DESC
), adv AS (
    UPDATE conversations c
    SET last_seq = GREATEST(c.last_seq, last.seq),
        last_message_id = CASE WHEN last.seq >= c.last_seq THEN last.id ELSE c.last_message_id END,
        last_message_at = GREATEST(COALESCE(c.last_message_at, last.latest), last.latest),
        updated_at = now()
    FROM last
    WHERE c.id = ANY(ARRAY(SELECT l.conversation_id FROM last l)) AND c.id = last.conversation_id
)
SELECT ins.id, ins.seq, ins.read_at FROM ins;

-- name: MarkMessagesDelivered :many
-- Records deliveries and answers the ids of the batch that are stored
-- (delivered now or before), so that the caller knows which are not yet,
-- and whether this statement delivered each.
WITH d AS (
    SELECT (@ids::uuid[])[g.ord] AS id, (@delivered_ats::timestamptz[])[g.ord] AS delivered_at
    FROM generate_series(1, cardinality(@ids::uuid[])) AS g(ord)
), upd AS (
    UPDATE messages m SET delivered_at = d.delivered_at
    FROM d WHERE m.id = ANY(@ids::uuid[]) AND m.id = d.id AND m.delivered_at IS NULL
    RETURNING m.id
)
SELECT m.id, (m.id = ANY(ARRAY(SELECT u.id FROM upd u)))::boolean AS applied
FROM messages m WHERE m.id = ANY(@ids::uuid[]);
