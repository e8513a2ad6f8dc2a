-- Presence itself is ephemeral (live connections are in the connection
-- store); what lasts is when each user was last seen, written once per
-- debounced offline, and whether they hide it.
CREATE TABLE user_presence (
    user_id        bigint PRIMARY KEY CHECK (user_id > 0),
    last_seen_at   timestamptz,
    hide_last_seen boolean NOT NULL DEFAULT false
);
