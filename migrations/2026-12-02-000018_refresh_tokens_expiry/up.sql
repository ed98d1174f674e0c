-- Refresh tokens are deleted a while after they expire (every sign-in and every refresh adds
-- one; nothing removed them): the worker's hourly purge finds them by their expiry.
SET LOCAL lock_timeout = '10s';
CREATE INDEX refresh_tokens_expires_idx ON refresh_tokens (expires_at);
