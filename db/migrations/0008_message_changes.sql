-- Changes to a sent message by its sender: an edit of its text and unsend
-- ("delete for everyone"), and reactions by the participants.
--
-- An edit sets edited_at, the time fixed at ingress: a redelivered or older
-- edit (queues do not promise order) never overwrites a newer one.
-- Unsend leaves a tombstone in the conversation's sequence: the row keeps
-- its seq, its content is removed and unsent_at set.
--
-- Every request reads messages: a statement here waiting for a lock would
-- queue them all behind it, so it gives up instead: the file is one
-- transaction, so nothing is applied, and migrating again applies it.
SET LOCAL lock_timeout = '5s';

ALTER TABLE messages
    ADD COLUMN edited_at timestamptz,
    ADD COLUMN unsent_at timestamptz;

-- A tombstone carries no content, whatever its content type. The checks
-- are added NOT VALID: they hold for every row written from now on without
-- a scan of the table under this file's exclusive lock. The rows already
-- stored meet them (none is unsent, and the checks they replace held);
-- VALIDATE CONSTRAINT, which locks far less, can prove it later, outside
-- a migration.
ALTER TABLE messages DROP CONSTRAINT messages_check, DROP CONSTRAINT messages_check1;
ALTER TABLE messages
    ADD CONSTRAINT messages_text_content_check
        CHECK (unsent_at IS NOT NULL OR content_type <> 'text' OR text_content IS NOT NULL) NOT VALID,
    ADD CONSTRAINT messages_media_key_check
        CHECK (unsent_at IS NOT NULL OR content_type = 'text' OR media_key IS NOT NULL) NOT VALID,
    ADD CONSTRAINT messages_tombstone_check
        CHECK (unsent_at IS NULL OR (text_content IS NULL AND media_key IS NULL AND media_thumbnail_key IS NULL)) NOT VALID;

-- Unsend deletes a message's media object only if no other message and no
-- report refers to it (MediaKeyInUse looks it up by key). Built inside this
-- file's transaction (CONCURRENTLY cannot be), so writes to messages wait
-- for the build.
CREATE INDEX messages_media_key_idx ON messages (media_key) WHERE media_key IS NOT NULL;
CREATE INDEX reports_media_key_idx ON reports (media_key) WHERE media_key IS NOT NULL;

-- One reaction per user per message. A removal keeps its row (emoji NULL)
-- with the time of the change, so that an older change delivered late
-- never brings a removed reaction back.
CREATE TABLE message_reactions (
    message_id uuid NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    user_id    bigint NOT NULL CHECK (user_id > 0),
    emoji      text,
    changed_at timestamptz NOT NULL,
    PRIMARY KEY (message_id, user_id)
);

-- A tombstone is no unread message, and a conversation's preview says
-- when its last message is one.
CREATE OR REPLACE VIEW participant_conversations AS
SELECT c.id, c.kind, c.created_at, c.updated_at, c.last_seq, c.last_message_at,
       p.user_id, p.pinned, p.muted, p.archived, p.deleted_at, p.last_read_seq, p.last_read_at,
       COALESCE((SELECT min(o.user_id) FROM conversation_participants o
         WHERE o.conversation_id = c.id AND o.user_id <> p.user_id), 0)::bigint AS other_user_id,
       (SELECT count(*) FROM messages u
         WHERE u.conversation_id = c.id AND u.seq > p.last_read_seq
           AND u.sender_id <> p.user_id AND u.read_at IS NULL AND u.unsent_at IS NULL
           AND u.created_at > COALESCE(p.deleted_at, '-infinity')
           AND NOT EXISTS (SELECT 1 FROM message_deletions d WHERE d.message_id = u.id AND d.user_id = p.user_id)
       )::bigint AS unread_count,
       m.id AS last_message_id, m.seq AS last_message_seq, m.sender_id AS last_message_sender_id,
       m.content_type AS last_message_content_type, m.text_content AS last_message_text,
       m.created_at AS last_message_created_at,
       m.unsent_at AS last_message_unsent_at
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
