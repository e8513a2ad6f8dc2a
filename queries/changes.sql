-- Changes to stored messages: edits, unsend and reactions. Each statement
-- applies a change only if it is newer than the stored state and still
-- allowed (the sender's; the window is checked against the event's
-- deadline before), so that the persister's
-- redelivered, replayed or reordered events leave the same state.

-- name: EditMessage :execrows
-- The edit window is the event's (its deadline), checked by the caller.
UPDATE messages
SET text_content = @text_content, edited_at = @edited_at
WHERE id = @id AND sender_id = @sender_id AND content_type = 'text' AND unsent_at IS NULL
  AND (edited_at IS NULL OR edited_at < @edited_at);

-- name: UnsendMessage :one
-- Leaves a tombstone: the row keeps its seq, its content goes, and so do
-- its reactions. The unsend window is the event's, as for an edit.
WITH u AS (
    UPDATE messages
    SET unsent_at = @unsent_at, text_content = NULL, media_key = NULL, media_thumbnail_key = NULL, audio_duration = NULL
    WHERE id = @id AND sender_id = @sender_id AND unsent_at IS NULL
    RETURNING id
), r AS (
    DELETE FROM message_reactions WHERE message_id = ANY(ARRAY(SELECT u.id FROM u))
)
SELECT count(*)::bigint FROM u;

-- name: SetReaction :execrows
-- Sets (emoji) or removes (NULL) a participant's reaction, unless a newer
-- change of theirs is stored. A tombstone takes none, nor a message hidden
-- by the participant's deletion of the conversation. The message's row
-- lock waits for a concurrent unsend, then unsent_at is checked again on
-- the row it left: otherwise a reaction could land after the unsend
-- deleted the others.
INSERT INTO message_reactions (message_id, user_id, emoji, changed_at)
SELECT m.id, @user_id::bigint, sqlc.narg('emoji')::text, @changed_at::timestamptz FROM messages m
WHERE m.id = @message_id AND m.unsent_at IS NULL
  AND EXISTS (SELECT 1 FROM conversation_participants p
              WHERE p.conversation_id = m.conversation_id AND p.user_id = @user_id::bigint
                AND (p.deleted_at IS NULL OR p.deleted_at < m.created_at))
FOR SHARE OF m
ON CONFLICT (message_id, user_id) DO UPDATE
SET emoji = EXCLUDED.emoji, changed_at = EXCLUDED.changed_at
WHERE message_reactions.changed_at < EXCLUDED.changed_at;

-- name: ReactionCounts :many
-- The reactions of messages, counted per emoji, and whether the viewer's
-- is among them; most used first. Reactions of users the viewer blocks
-- are not counted, as the viewer is not told of them either.
SELECT r.message_id, r.emoji::text AS emoji, count(*)::bigint AS count, bool_or(r.user_id = @viewer_id::bigint)::boolean AS mine
FROM message_reactions r
JOIN messages m ON m.id = r.message_id AND m.unsent_at IS NULL -- a tombstone shows none
WHERE r.message_id = ANY(@ids::uuid[]) AND r.emoji IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM blocks b WHERE b.blocker_id = @viewer_id::bigint AND b.blocked_id = r.user_id)
GROUP BY r.message_id, r.emoji
ORDER BY r.message_id, count(*) DESC, r.emoji;

-- name: ListMessageHiders :many
-- Who a message is hidden from (deleted for them, withheld from them, or
-- sent no later than they deleted the conversation, as views hide it):
-- they are not told of its changes and may make none.
SELECT d.user_id FROM message_deletions d WHERE d.message_id = @message_id
UNION
SELECT p.user_id FROM conversation_participants p JOIN messages m ON m.conversation_id = p.conversation_id
WHERE m.id = @message_id AND p.deleted_at >= m.created_at;

-- name: MediaKeyInUse :one
-- Whether a media object must outlive the unsend of message_id: another
-- message that is not unsent refers to it (a verified key can be sent
-- again), or a report keeps it as evidence.
SELECT (EXISTS (SELECT 1 FROM messages m
                WHERE m.media_key = @media_key::text AND m.id <> @message_id AND m.unsent_at IS NULL)
     OR EXISTS (SELECT 1 FROM reports r WHERE r.media_key = @media_key::text))::boolean AS in_use;
