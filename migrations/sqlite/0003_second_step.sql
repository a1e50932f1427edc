-- The TOTP second step of sign-in in one round trip: on PostgreSQL a function
-- (../postgres/0003_second_step.sql). SQLite has no stored functions; its store runs the same
-- statements from Rust on its group-commit thread (crates/tessera-store/src/sqlite_hot.rs), so
-- there is nothing to create here. This file keeps the two migration lists in step.
SELECT 1;
