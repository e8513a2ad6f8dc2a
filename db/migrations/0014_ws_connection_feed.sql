-- Whether a connection was opened in feed mode (?feed=1): fanout sends it
-- its user's sync feed changes, each with its feed position, instead of
-- the fast frames of those changes, so it must know each connection's
-- mode. Rows recorded before this column were opened without it: false.
ALTER TABLE ws_connections ADD COLUMN feed boolean NOT NULL DEFAULT false;
