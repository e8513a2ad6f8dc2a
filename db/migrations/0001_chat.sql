-- Conversations are modelled as a set of participants so that group
-- conversations need no rewrite; a direct (1:1) conversation is found by its
-- direct_key, which makes get-or-create race-free through a unique index.
CREATE TABLE conversations (
    id              uuid PRIMARY KEY,
    kind            text NOT NULL DEFAULT 'direct' CHECK (kind IN ('direct', 'group')),
    direct_key      text UNIQUE,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    -- last_seq is the per-conversation sequence: the persister increments it
    -- under this row's lock in the same transaction as the message insert, so
    -- sequences are gap-free and in commit order.
    last_seq        bigint NOT NULL DEFAULT 0,
    last_message_id uuid,
    last_message_at timestamptz,
    CHECK ((kind = 'direct') = (direct_key IS NOT NULL))
);

CREATE TABLE conversation_participants (
    conversation_id     uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    user_id             bigint NOT NULL CHECK (user_id > 0),
    joined_at           timestamptz NOT NULL DEFAULT now(),
    pinned              boolean NOT NULL DEFAULT false,
    muted               boolean NOT NULL DEFAULT false,
    archived            boolean NOT NULL DEFAULT false,
    deleted_at          timestamptz,
    -- Last writer wins per setting: a change carries only the settings it
    -- changes, and queues do not promise order, so each setting keeps the
    -- time of its own last change; settings_changed_at is the latest.
    settings_changed_at timestamptz NOT NULL DEFAULT 'epoch',
    pinned_changed_at   timestamptz NOT NULL DEFAULT 'epoch',
    muted_changed_at    timestamptz NOT NULL DEFAULT 'epoch',
    archived_changed_at timestamptz NOT NULL DEFAULT 'epoch',
    deleted_changed_at  timestamptz NOT NULL DEFAULT 'epoch',
    last_read_seq       bigint NOT NULL DEFAULT 0,
    last_read_at        timestamptz,
    PRIMARY KEY (conversation_id, user_id)
);
-- Listing a user's conversations.
CREATE INDEX conversation_participants_user_idx ON conversation_participants (user_id, conversation_id);

CREATE TABLE messages (
    id                   uuid PRIMARY KEY,
    conversation_id      uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq                  bigint NOT NULL CHECK (seq > 0),
    sender_id            bigint NOT NULL CHECK (sender_id > 0),
    recipient_id         bigint NOT NULL CHECK (recipient_id > 0),
    content_type         text NOT NULL CHECK (content_type IN ('text', 'image', 'video', 'audio')),
    text_content         text,
    media_key            text,
    media_thumbnail_key  text,
    audio_duration       integer CHECK (audio_duration IS NULL OR audio_duration >= 0),
    reply_to_id          uuid,
    client_message_id    text,
    created_at           timestamptz NOT NULL,
    sent_at              timestamptz NOT NULL DEFAULT now(),
    delivered_at         timestamptz,
    read_at              timestamptz,
    CHECK (content_type <> 'text' OR text_content IS NOT NULL),
    CHECK (content_type = 'text' OR media_key IS NOT NULL)
);
-- Paging and catch-up by sequence; also enforces one message per position.
CREATE UNIQUE INDEX messages_conversation_seq_idx ON messages (conversation_id, seq);
-- Unread counts: messages addressed to a user that are not read yet.
CREATE INDEX messages_unread_idx ON messages (conversation_id, recipient_id) WHERE read_at IS NULL;

-- Deletion per side ("delete for me"), one row per user, so it works for
-- groups as well as 1:1.
CREATE TABLE message_deletions (
    message_id uuid NOT NULL,
    user_id    bigint NOT NULL,
    deleted_at timestamptz NOT NULL,
    PRIMARY KEY (message_id, user_id)
);

-- Ingress idempotency: a client_message_id maps to the same message (and the
-- same event) on every retry, even before the persister has stored it.
CREATE TABLE message_requests (
    sender_id         bigint NOT NULL,
    client_message_id text NOT NULL,
    message_id        uuid NOT NULL,
    request_hash      text NOT NULL,
    envelope          jsonb NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sender_id, client_message_id)
);
CREATE INDEX message_requests_created_idx ON message_requests (created_at);

-- The event archive: every published event, append-only, for replay.
CREATE TABLE event_archive (
    id              uuid PRIMARY KEY,
    type            text NOT NULL,
    occurred_at     timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    conversation_id uuid,
    envelope        jsonb NOT NULL
);
CREATE INDEX event_archive_occurred_idx ON event_archive (occurred_at, id);

-- Events a worker gave up on after its retries; an operator lists and
-- redrives them.
CREATE TABLE dead_letters (
    id          bigserial PRIMARY KEY,
    worker      text NOT NULL,
    event_id    uuid NOT NULL,
    event_type  text NOT NULL,
    envelope    jsonb NOT NULL,
    error       text NOT NULL,
    attempts    integer NOT NULL,
    failed_at   timestamptz NOT NULL DEFAULT now(),
    redriven_at timestamptz
);
CREATE INDEX dead_letters_pending_idx ON dead_letters (worker, id) WHERE redriven_at IS NULL;

-- Live WebSocket connections (the local stand-in for the DynamoDB table).
CREATE TABLE ws_connections (
    connection_id text PRIMARY KEY,
    user_id       bigint NOT NULL,
    connected_at  timestamptz NOT NULL,
    last_ping_at  timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL
);
CREATE INDEX ws_connections_user_idx ON ws_connections (user_id);

-- One row per (conversation, participant) with everything a conversation
-- list shows, so the list and the single-conversation read share one
-- definition. What a participant sees follows their deletions: the unread
-- count and the last-message preview leave out messages they deleted for
-- themselves and those from before they deleted the conversation.
CREATE VIEW participant_conversations AS
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
