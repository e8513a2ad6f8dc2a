-- What a participant sees of a conversation follows their deletions: the
-- unread count and the last-message preview leave out messages they deleted
-- for themselves and those from before they deleted the conversation (as
-- the message listings already did). Before, the preview could show a
-- message the participant had deleted, and a conversation deleted and then
-- revived by a new message counted the hidden history as unread.
CREATE OR REPLACE VIEW participant_conversations AS
SELECT c.id, c.kind, c.created_at, c.updated_at, c.last_seq, c.last_message_at,
       p.user_id, p.pinned, p.muted, p.archived, p.deleted_at, p.last_read_seq, p.last_read_at,
       COALESCE((SELECT min(o.user_id) FROM conversation_participants o
         WHERE o.conversation_id = c.id AND o.user_id <> p.user_id), 0)::bigint AS other_user_id,
       (SELECT count(*) FROM messages u
         WHERE u.conversation_id = c.id AND u.seq > p.last_read_seq
           AND u.sender_id <> p.user_id AND u.read_at IS NULL
           AND u.created_at > COALESCE(p.deleted_at, '-infinity')
           AND NOT EXISTS (SELECT 1 FROM message_deletions d WHERE d.message_id = u.id AND d.user_id = p.user_id)
       )::bigint AS unread_count,
       m.id AS last_message_id, m.seq AS last_message_seq, m.sender_id AS last_message_sender_id,
       m.content_type AS last_message_content_type, m.text_content AS last_message_text,
       m.created_at AS last_message_created_at
FROM conversation_participants p
JOIN conversations c ON c.id = p.conversation_id
-- The latest message this participant sees (by sequence, like the
-- conversation's own last message). The lateral subquery finds it through
-- the (conversation_id, seq) index; joining messages again by id keeps its
-- columns nullable for sqlc.
LEFT JOIN LATERAL (
    SELECT v.id FROM messages v
    WHERE v.conversation_id = c.id
      AND v.created_at > COALESCE(p.deleted_at, '-infinity')
      AND NOT EXISTS (SELECT 1 FROM message_deletions d WHERE d.message_id = v.id AND d.user_id = p.user_id)
    ORDER BY v.seq DESC
    LIMIT 1
) visible ON true
LEFT JOIN messages m ON m.id = visible.id;
