-- Group conversations, on the participants model the direct ones use.
--
-- A group's membership is written at ingress, in a transaction holding the
-- group's row lock (FOR UPDATE), with the database's clock; a send to a
-- group reads its members under a share lock of the same row, with the same
-- clock. So a message's created_at and the members it was posted to agree
-- with every join and removal: a member sees exactly the messages created
-- while they were one (joined_at <= created_at <= left_at), on every path.
-- The change is also published; the persister applies it again (a no-op
-- unless the state was lost: a replay into a restored database) and stores
-- its system message in the conversation's sequence.
ALTER TABLE conversations
    ADD COLUMN title            text,
    ADD COLUMN title_changed_at timestamptz NOT NULL DEFAULT 'epoch',
    ADD COLUMN created_by       bigint,
    ADD CONSTRAINT conversations_group_title CHECK (kind = 'direct' OR title IS NOT NULL);

ALTER TABLE conversation_participants
    ADD COLUMN role text NOT NULL DEFAULT 'member' CHECK (role IN ('owner', 'admin', 'member')),
    -- Last writer wins, by the time of the change, for the role and for
    -- the membership, each on its own, so changes applied out of order
    -- converge.
    ADD COLUMN role_changed_at       timestamptz NOT NULL DEFAULT 'epoch',
    ADD COLUMN membership_changed_at timestamptz NOT NULL DEFAULT 'epoch',
    -- NULL while a member; a former member sees what was created up to it.
    ADD COLUMN left_at               timestamptz,
    -- The highest sequence delivered to one of the member's connections:
    -- a group message's receipts are counted from these (delivered to k of
    -- n), as its reads are from last_read_seq, not stored per message.
    ADD COLUMN last_delivered_seq    bigint NOT NULL DEFAULT 0;

-- Current members of a conversation (the send path's lookup).
CREATE INDEX conversation_participants_current_idx ON conversation_participants (conversation_id, user_id)
    WHERE left_at IS NULL;

-- A group message has no single recipient; its receipts are the members'.
ALTER TABLE messages ALTER COLUMN recipient_id DROP NOT NULL;

-- System messages: what changed in a group ("A added B"), in its sequence.
ALTER TABLE messages ADD COLUMN system jsonb;
ALTER TABLE messages DROP CONSTRAINT messages_content_type_check;
ALTER TABLE messages ADD CONSTRAINT messages_content_type_check
    CHECK (content_type IN ('text', 'image', 'video', 'audio', 'system'));
ALTER TABLE messages ADD CONSTRAINT messages_system_check
    CHECK ((content_type = 'system') = (system IS NOT NULL));
ALTER TABLE messages DROP CONSTRAINT messages_media_key_check;
ALTER TABLE messages ADD CONSTRAINT messages_media_key_check
    CHECK (unsent_at IS NOT NULL OR content_type IN ('text', 'system') OR media_key IS NOT NULL) NOT VALID;

-- The view every conversation listing reads, now with what a group shows:
-- its title, the viewer's role and window, and the member count. A group
-- message counts as unread, and as the latest, for a member only within
-- their window; a direct conversation's participants have no window.
DROP VIEW participant_conversations;
CREATE VIEW participant_conversations AS
SELECT c.id, c.kind, c.created_at, c.updated_at, c.last_seq, c.last_message_at,
       p.user_id, p.pinned, p.muted, p.archived, p.deleted_at, p.last_read_seq, p.last_read_at,
       COALESCE((SELECT min(o.user_id) FROM conversation_participants o
         WHERE o.conversation_id = c.id AND o.user_id <> p.user_id AND c.kind = 'direct'), 0)::bigint AS other_user_id,
       (SELECT count(*) FROM messages u
         WHERE u.conversation_id = c.id AND u.seq > p.last_read_seq
           AND u.sender_id <> p.user_id AND u.unsent_at IS NULL AND u.content_type <> 'system'
           -- A direct message's own read time; a group's reads are the
           -- read position alone. The CASE keeps the direct arm's
           -- read_at IS NULL for the partial unread index.
           AND CASE WHEN c.kind = 'direct' THEN u.read_at IS NULL
                    ELSE u.created_at >= p.joined_at AND u.created_at <= COALESCE(p.left_at, 'infinity') END
           AND u.created_at > COALESCE(p.deleted_at, '-infinity')
           AND NOT EXISTS (SELECT 1 FROM message_deletions d WHERE d.message_id = u.id AND d.user_id = p.user_id)
       )::bigint AS unread_count,
       m.id AS last_message_id, m.seq AS last_message_seq, m.sender_id AS last_message_sender_id,
       m.content_type AS last_message_content_type, m.text_content AS last_message_text,
       m.created_at AS last_message_created_at,
       m.unsent_at AS last_message_unsent_at,
       c.title, p.role, p.joined_at, p.left_at,
       (SELECT count(*) FROM conversation_participants n
         WHERE n.conversation_id = c.id AND n.left_at IS NULL)::bigint AS member_count
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
      AND (c.kind = 'direct' OR (v.created_at >= p.joined_at AND v.created_at <= COALESCE(p.left_at, 'infinity')))
      AND NOT EXISTS (SELECT 1 FROM message_deletions d WHERE d.message_id = v.id AND d.user_id = p.user_id)
    ORDER BY v.seq DESC
    LIMIT 1
) visible ON true
LEFT JOIN messages m ON m.id = visible.id;
