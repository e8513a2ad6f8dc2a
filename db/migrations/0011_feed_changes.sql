-- Each change of the sync feed is stored once, in feed_changes, however
-- many users learn of it; a user's feed holds small rows that point at it.
-- A change's kind and event are unique: redelivery and replay append
-- nothing twice for an event, and a change appends all its users' entries
-- or none (one statement), so the change alone records that it was
-- appended. Pruning takes old rows by BRIN ranges of appended_at, which
-- follow the order rows are written in and cost next to nothing to keep.

CREATE TABLE feed_changes (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The change's kind: the type of the WebSocket frame that announces it
    -- where one exists (newMessage, messageRead, ...).
    kind            text NOT NULL,
    conversation_id uuid NOT NULL,
    event_id        uuid NOT NULL,
    occurred_at     timestamptz NOT NULL,
    -- The change itself, in the shape of its frame's data.
    body            jsonb NOT NULL,
    appended_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (event_id, kind)
);
CREATE INDEX feed_changes_appended_at_brin ON feed_changes USING brin (appended_at);

INSERT INTO feed_changes (kind, conversation_id, event_id, occurred_at, body, appended_at)
SELECT DISTINCT ON (event_id, kind) kind, conversation_id, event_id, occurred_at, body, appended_at
FROM user_feed ORDER BY event_id, kind, appended_at;

ALTER TABLE user_feed ADD COLUMN change_id bigint;
UPDATE user_feed f SET change_id = c.id FROM feed_changes c WHERE c.event_id = f.event_id AND c.kind = f.kind;
ALTER TABLE user_feed ALTER COLUMN change_id SET NOT NULL;
ALTER TABLE user_feed DROP COLUMN kind, DROP COLUMN conversation_id, DROP COLUMN event_id,
    DROP COLUMN occurred_at, DROP COLUMN body;
DROP INDEX user_feed_appended_at_idx;
CREATE INDEX user_feed_appended_at_brin ON user_feed USING brin (appended_at);
