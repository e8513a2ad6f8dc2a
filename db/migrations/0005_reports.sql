-- Reports for moderation, each with what was reported as it was at that
-- moment: the message's content is copied, so that a later deletion (for
-- either side) or a media object's expiry does not erase the evidence.
-- A reporter's second report of the same message (or the same user, without
-- a message) answers the first: a retried request files one report.
CREATE TABLE reports (
    id                 bigserial PRIMARY KEY,
    reporter_id        bigint NOT NULL CHECK (reporter_id > 0),
    reported_user_id   bigint NOT NULL CHECK (reported_user_id > 0),
    message_id         uuid,
    conversation_id    uuid,
    content_type       text,
    text_content       text,
    media_key          text,
    message_created_at timestamptz,
    reason             text NOT NULL,
    details            text NOT NULL DEFAULT '',
    created_at         timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX reports_once_idx ON reports (reporter_id, reported_user_id,
    COALESCE(message_id, '00000000-0000-0000-0000-000000000000'::uuid));
-- Operators list the newest first.
CREATE INDEX reports_created_idx ON reports (created_at DESC, id DESC);
