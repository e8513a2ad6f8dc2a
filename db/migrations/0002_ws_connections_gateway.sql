-- Which gateway holds each connection: API Gateway's API id on AWS, the
-- local gateway's identity (CHAT_GATEWAY_ID) otherwise. A local gateway
-- that restarts deletes the records of its previous life, whose
-- connections died with it and whose $disconnect never ran. Rows recorded
-- before this column existed hold ''; no gateway claims them, and they
-- expire or are removed on their first 410 as before.
ALTER TABLE ws_connections ADD COLUMN gateway text NOT NULL DEFAULT '';
CREATE INDEX ws_connections_gateway_idx ON ws_connections (gateway);
