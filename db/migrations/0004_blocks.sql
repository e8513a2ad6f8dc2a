-- A user's blocks: while blocker_id blocks blocked_id, nothing the blocked
-- user sends reaches the blocker (messages are kept for their sender only),
-- the blocked user cannot start a conversation with the blocker, and
-- neither sees the other's presence. Written at the edge, synchronously:
-- the very next request must obey a block.
CREATE TABLE blocks (
    blocker_id bigint NOT NULL CHECK (blocker_id > 0),
    blocked_id bigint NOT NULL CHECK (blocked_id > 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (blocker_id, blocked_id),
    CHECK (blocker_id <> blocked_id)
);
-- Who blocks a user (presence looks both ways).
CREATE INDEX blocks_blocked_idx ON blocks (blocked_id, blocker_id);
