-- When the token a connection was opened with expires: from then on its
-- frames are refused and it is closed (the local gateway closes it at that
-- moment). NULL for connections recorded before this column, or opened
-- with a token whose expiry was not recorded: no bound beyond expires_at.
ALTER TABLE ws_connections ADD COLUMN token_expires_at timestamptz;
