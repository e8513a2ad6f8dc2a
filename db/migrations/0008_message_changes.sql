-- Changes to a sent message by its sender: an edit of its text and unsend
-- ("delete for everyone"), and reactions by the participants.
--
-- An edit sets edited_at, the time fixed at ingress: a redelivered or older
-- edit (queues do not promise order) never overwrites a newer one.
-- Unsend leaves a tombstone in the conversation's sequence: the row keeps
-- its seq, its content is removed and unsent_at set.
ALTER TABLE messages
    ADD COLUMN edited_at timestamptz,
    ADD COLUMN unsent_at timestamptz;

-- A tombstone carries no content, whatever its content type.
ALTER TABLE messages DROP CONSTRAINT messages_check, DROP CONSTRAINT messages_check1;
ALTER TABLE messages
    ADD CONSTRAINT messages_text_content_check
        CHECK (unsent_at IS NOT NULL OR content_type <> 'text' OR text_content IS NOT NULL),
    ADD CONSTRAINT messages_media_key_check
        CHECK (unsent_at IS NOT NULL OR content_type = 'text' OR media_key IS NOT NULL),
    ADD CONSTRAINT messages_tombstone_check
        CHECK (unsent_at IS NULL OR (text_content IS NULL AND media_key IS NULL AND media_thumbnail_key IS NULL));

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
