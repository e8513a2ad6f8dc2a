-- name: MessageExists :one
SELECT EXISTS (SELECT 1 FROM messages WHERE id = $1);

-- name: GetMessage :one
SELECT * FROM messages WHERE id = $1;

-- name: ListMessagesPage :many
-- Newest first, the seed's page/page_size listing, as the viewer sees it.
SELECT m.* FROM messages m
WHERE m.conversation_id = @conversation_id
  AND m.created_at > COALESCE(sqlc.narg('hidden_before')::timestamptz, '-infinity')
  AND NOT EXISTS (SELECT 1 FROM message_deletions d WHERE d.message_id = m.id AND d.user_id = @viewer_id)
ORDER BY m.seq DESC
LIMIT @page_limit OFFSET @page_offset;

-- name: CountMessages :one
SELECT count(*) FROM messages m
WHERE m.conversation_id = @conversation_id
  AND m.created_at > COALESCE(sqlc.narg('hidden_before')::timestamptz, '-infinity')
  AND NOT EXISTS (SELECT 1 FROM message_deletions d WHERE d.message_id = m.id AND d.user_id = @viewer_id);

-- name: ListMessagesAfter :many
-- Catch-up: everything after the last sequence a client saw, oldest first.
SELECT m.* FROM messages m
WHERE m.conversation_id = @conversation_id AND m.seq > @after_seq
  AND m.created_at > COALESCE(sqlc.narg('hidden_before')::timestamptz, '-infinity')
  AND NOT EXISTS (SELECT 1 FROM message_deletions d WHERE d.message_id = m.id AND d.user_id = @viewer_id)
ORDER BY m.seq ASC
LIMIT @page_limit;

-- name: ListMessagesBefore :many
-- History: older messages than a sequence, newest first.
SELECT m.* FROM messages m
WHERE m.conversation_id = @conversation_id AND m.seq < @before_seq
  AND m.created_at > COALESCE(sqlc.narg('hidden_before')::timestamptz, '-infinity')
  AND NOT EXISTS (SELECT 1 FROM message_deletions d WHERE d.message_id = m.id AND d.user_id = @viewer_id)
ORDER BY m.seq DESC
LIMIT @page_limit;

-- name: ListMessagesByIDs :many
SELECT id, conversation_id, sender_id, recipient_id, seq FROM messages
WHERE id = ANY(@ids::uuid[]);

-- name: MarkMessagesRead :exec
UPDATE messages SET read_at = @read_at
WHERE id = ANY(@ids::uuid[]) AND conversation_id = @conversation_id
  AND recipient_id = @reader_id AND read_at IS NULL;

-- name: MaxSeqOfMessages :one
SELECT COALESCE(max(seq), 0)::bigint FROM messages
WHERE id = ANY(@ids::uuid[]) AND conversation_id = @conversation_id AND recipient_id = @reader_id;

-- name: MarkMessageDelivered :exec
UPDATE messages SET delivered_at = @delivered_at
WHERE id = @id AND delivered_at IS NULL;

-- name: SetMessageMedia :exec
-- Fills what the thumbnailer learned; never overwrites a value already set.
UPDATE messages
SET media_thumbnail_key = COALESCE(media_thumbnail_key, sqlc.narg('thumbnail_key')),
    audio_duration = COALESCE(audio_duration, sqlc.narg('audio_duration'))
WHERE id = @id;

-- name: InsertMessageDeletion :exec
INSERT INTO message_deletions (message_id, user_id, deleted_at)
VALUES ($1, $2, $3)
ON CONFLICT DO NOTHING;

-- name: InsertNextMessage :one
-- Stores a message with the next sequence of its conversation and moves the
-- conversation's last message, in one statement; answers 0 when the
-- message is already stored. The caller holds the conversation's row lock
-- (LockConversation), taken in an earlier statement so that this one's
-- snapshot sees every message committed before the lock was granted.
WITH next AS (
    SELECT (COALESCE(max(m.seq), 0) + 1)::bigint AS seq FROM messages m WHERE m.conversation_id = @conversation_id::uuid
), ins AS (
    INSERT INTO messages (
        id, conversation_id, seq, sender_id, recipient_id, content_type, text_content,
        media_key, audio_duration, reply_to_id, client_message_id, created_at, sent_at
    )
    SELECT @id::uuid, @conversation_id::uuid, next.seq, @sender_id::bigint, @recipient_id::bigint, @content_type::text,
           sqlc.narg('text_content')::text, sqlc.narg('media_key')::text, sqlc.narg('audio_duration')::integer,
           sqlc.narg('reply_to_id')::uuid, sqlc.narg('client_message_id')::text,
           @created_at::timestamptz, @sent_at::timestamptz
    FROM next
    WHERE NOT EXISTS (SELECT 1 FROM messages e WHERE e.id = @id::uuid)
    RETURNING seq
), adv AS (
    UPDATE conversations c
    SET last_seq = GREATEST(c.last_seq, ins.seq),
        last_message_id = CASE WHEN ins.seq >= c.last_seq THEN @id::uuid ELSE c.last_message_id END,
        last_message_at = GREATEST(COALESCE(c.last_message_at, @created_at::timestamptz), @created_at::timestamptz),
        updated_at = now()
    FROM ins
    WHERE c.id = @conversation_id::uuid
)
SELECT COALESCE((SELECT seq FROM ins), 0)::bigint;
