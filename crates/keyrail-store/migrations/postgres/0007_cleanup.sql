-- Indexes for the background cleanup (keyrail-server background.rs, `cleanup`), which deletes in
-- small batches what no one needs any more. PostgreSQL flavour; keep in step with
-- ../sqlite/0007_cleanup.sql.

-- Change-log entries older than the retention, oldest first.
CREATE INDEX changes_at_idx ON changes (at);
-- Expired sessions (revoked ones are in sessions_revoked_at_idx): their refresh tokens, then
-- themselves after the retention.
CREATE INDEX sessions_expires_at_idx ON sessions (expires_at);
-- Login throttle rows whose window is over (one row per email ever tried, existing or not).
CREATE INDEX login_throttle_window_start_idx ON login_throttle (window_start);
-- mfa_challenges and password_resets need none: between two cleanups they hold only recent
-- tokens (challenges live 5 minutes, resets 30 and are limited per IP), and "expired or used"
-- is one short scan.
