-- name: InsertDirectConversation :one
-- ON CONFLICT DO NOTHING makes a concurrent second creator fall through to
-- GetConversationByDirectKey instead of failing.
-- created_at, when given, is the time of the ConversationCreated event.
INSERT INTO conversations (id, kind, direct_key, created_at)
VALUES ($1, 'direct', $2, coalesce(sqlc.narg(created_at)::timestamptz, now()))
ON CONFLICT DO NOTHING
RETURNING id;

-- name: AddParticipant :exec
INSERT INTO conversation_participants (conversation_id, user_id)
VALUES ($1, $2)
ON CONFLICT DO NOTHING;

-- name: GetConversationByDirectKey :one
SELECT id FROM conversations WHERE direct_key = $1;

-- name: GetParticipant :one
SELECT * FROM conversation_participants
WHERE conversation_id = $1 AND user_id = $2;

-- name: ListParticipantIDs :many
SELECT user_id FROM conversation_participants
WHERE conversation_id = $1
ORDER BY user_id;

-- name: ListConversationsForUser :many
-- A conversation deleted "for me" reappears when a newer message arrives.
-- Both that and the order follow the latest message this participant sees,
-- so a message hidden from them (withheld, as its sender is blocked) moves
-- nothing.
SELECT * FROM participant_conversations
WHERE user_id = @user_id
  AND (deleted_at IS NULL OR last_message_created_at > deleted_at)
  AND (sqlc.narg('archived')::boolean IS NULL OR archived = sqlc.narg('archived')::boolean)
ORDER BY pinned DESC, COALESCE(last_message_created_at, created_at) DESC, id DESC
LIMIT @page_limit OFFSET @page_offset;

-- name: GetConversationForUser :one
SELECT * FROM participant_conversations WHERE user_id = @user_id AND id = @id;

-- name: CountConversationsForUser :one
-- The same rows as ListConversationsForUser.
SELECT count(*) FROM participant_conversations
WHERE user_id = @user_id
  AND (deleted_at IS NULL OR last_message_created_at > deleted_at)
  AND (sqlc.narg('archived')::boolean IS NULL OR archived = sqlc.narg('archived')::boolean);

-- name: LockConversations :many
-- Taken first by every persister transaction that writes conversations'
-- messages, in id order so that two writers never deadlock: it serializes
-- sequence assignment per conversation. Answers the ids that exist.
-- FOR NO KEY UPDATE, which conflicts with itself but not with a group
-- send's key share (ShareLockGroup): a send never waits for a batch.
SELECT id FROM conversations WHERE id = ANY(@ids::uuid[]) ORDER BY id FOR NO KEY UPDATE;

-- name: UpdateParticipantSettings :many
-- Last writer wins per setting, by the time the change was made, so a
-- redelivered, replayed or late older change never overwrites a newer one,
-- and still applies to the settings nobody changed since. In SET, columns
-- read their values from before the update. Answers the settings after it,
-- or no row when it changed nothing, with whether any value differs from
-- before (a newer change to the value it already had changes nothing a
-- client shows).
WITH before AS MATERIALIZED (
    SELECT b.pinned AS was_pinned, b.muted AS was_muted, b.archived AS was_archived, b.deleted_at AS was_deleted_at
    FROM conversation_participants b
    WHERE b.conversation_id = @conversation_id AND b.user_id = @user_id
    FOR UPDATE
)
UPDATE conversation_participants
SET pinned = CASE WHEN sqlc.narg('pinned')::boolean IS NOT NULL AND pinned_changed_at < @changed_at::timestamptz
        THEN sqlc.narg('pinned')::boolean ELSE pinned END,
    pinned_changed_at = CASE WHEN sqlc.narg('pinned')::boolean IS NOT NULL AND pinned_changed_at < @changed_at::timestamptz
        THEN @changed_at::timestamptz ELSE pinned_changed_at END,
    muted = CASE WHEN sqlc.narg('muted')::boolean IS NOT NULL AND muted_changed_at < @changed_at::timestamptz
        THEN sqlc.narg('muted')::boolean ELSE muted END,
    muted_changed_at = CASE WHEN sqlc.narg('muted')::boolean IS NOT NULL AND muted_changed_at < @changed_at::timestamptz
        THEN @changed_at::timestamptz ELSE muted_changed_at END,
    archived = CASE WHEN sqlc.narg('archived')::boolean IS NOT NULL AND archived_changed_at < @changed_at::timestamptz
        THEN sqlc.narg('archived')::boolean ELSE archived END,
    archived_changed_at = CASE WHEN sqlc.narg('archived')::boolean IS NOT NULL AND archived_changed_at < @changed_at::timestamptz
        THEN @changed_at::timestamptz ELSE archived_changed_at END,
    deleted_at = CASE WHEN sqlc.narg('deleted')::boolean IS NOT NULL AND deleted_changed_at < @changed_at::timestamptz
        THEN CASE WHEN sqlc.narg('deleted')::boolean THEN @changed_at::timestamptz END ELSE deleted_at END,
    deleted_changed_at = CASE WHEN sqlc.narg('deleted')::boolean IS NOT NULL AND deleted_changed_at < @changed_at::timestamptz
        THEN @changed_at::timestamptz ELSE deleted_changed_at END,
    settings_changed_at = GREATEST(settings_changed_at, @changed_at::timestamptz)
FROM before
WHERE conversation_participants.conversation_id = @conversation_id AND conversation_participants.user_id = @user_id
  AND ((sqlc.narg('pinned')::boolean IS NOT NULL AND pinned_changed_at < @changed_at::timestamptz)
    OR (sqlc.narg('muted')::boolean IS NOT NULL AND muted_changed_at < @changed_at::timestamptz)
    OR (sqlc.narg('archived')::boolean IS NOT NULL AND archived_changed_at < @changed_at::timestamptz)
    OR (sqlc.narg('deleted')::boolean IS NOT NULL AND deleted_changed_at < @changed_at::timestamptz))
RETURNING conversation_participants.pinned, conversation_participants.muted,
    conversation_participants.archived, conversation_participants.deleted_at,
    (conversation_participants.pinned, conversation_participants.muted, conversation_participants.archived,
     conversation_participants.deleted_at) IS DISTINCT FROM (before.was_pinned, before.was_muted, before.was_archived, before.was_deleted_at) AS changed;

-- name: AdvanceReadPosition :exec
UPDATE conversation_participants
SET last_read_seq = GREATEST(last_read_seq, @seq::bigint),
    last_read_at  = GREATEST(COALESCE(last_read_at, @read_at::timestamptz), @read_at::timestamptz)
WHERE conversation_id = @conversation_id AND user_id = @user_id;

-- name: ListMembers :many
-- The current participants of a conversation with its kind, in one round
-- trip: the send path checks membership and finds the recipient from it.
-- A group's former members are not among them.
SELECT p.user_id, c.kind FROM conversation_participants p
JOIN conversations c ON c.id = p.conversation_id
WHERE p.conversation_id = $1 AND p.left_at IS NULL
ORDER BY p.user_id;
