-- Whether a connection was opened in feed mode (?feed=1): fanout sends it
-- its user's sync feed changes, each with its feed position, instead of
-- the fast frames of those changes, so it must know each connection's
-- mode. Rows recorded before this column were opened without it: false.
ALTER TABLE ws_connections ADD COLUMN feed boolean NOT NULL DEFAULT false;

-- When a feed-mode connection of the user was last removed: for a while after,
-- the persister still announces the user's entries, so that a message whose
-- fanout counted on that connection is pushed from its announcement.
ALTER TABLE user_feed_heads ADD COLUMN feed_closed_at timestamptz;
