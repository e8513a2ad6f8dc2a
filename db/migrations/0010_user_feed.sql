-- One sync feed per user: every change a user must learn about, appended by
-- the persister in the transaction that applies it, at the user's next
-- position. Positions are gap-free per user and follow commit order: the
-- persister takes the user's head row lock before numbering and holds it to
-- its commit.

CREATE TABLE user_feed (
    user_id         bigint NOT NULL CHECK (user_id > 0),
    position        bigint NOT NULL CHECK (position > 0),
    -- The change's kind: the type of the WebSocket frame that announces it
    -- where one exists (newMessage, messageRead, ...).
    kind            text NOT NULL,
    conversation_id uuid NOT NULL,
    -- The event that made the change: redelivery and replay append nothing
    -- twice for it.
    event_id        uuid NOT NULL,
    occurred_at     timestamptz NOT NULL,
    -- The change itself, in the shape of its frame's data.
    body            jsonb NOT NULL,
    appended_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, position),
    -- Event first: the persister looks a batch's events up by it.
    UNIQUE (event_id, user_id, kind)
);
-- Pruning takes the oldest entries first.
CREATE INDEX user_feed_appended_at_idx ON user_feed (appended_at);

-- The last position given to each user. Only the persister writes it, under
-- its row lock.
CREATE TABLE user_feed_heads (
    user_id bigint PRIMARY KEY CHECK (user_id > 0),
    head    bigint NOT NULL DEFAULT 0 CHECK (head >= 0)
);

-- The highest position pruning deleted for each user: a client that has
-- seen less has missed changes and must reload. Kept apart from the heads
-- so that pruning never waits for, nor holds up, a persister.
CREATE TABLE user_feed_floors (
    user_id        bigint PRIMARY KEY CHECK (user_id > 0),
    pruned_through bigint NOT NULL CHECK (pruned_through >= 0)
);
