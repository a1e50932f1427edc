//! Seeding the MFA benchmark straight through the store port (`StoreTx`), in big
//! transactions: accounts with a fixed precomputed Argon2id PHC string (the password is never
//! checked here, so no hashing per account), one TOTP factor whose secret is sealed with the
//! server's own key ring and `totp_secret_aad(user, factor)`, ten backup codes hashed with the
//! server's pepper (`backup_code_hash`), and open sign-in challenges whose tokens we keep.
//!
//! The rows are what the server itself would have written for an account that enrolled an
//! authenticator app and then typed its password (minus the security events of those steps).

use anyhow::Context;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tessera_core::crypto::{KeyRing, Pepper, Token, random_bytes};
use tessera_core::email::Email;
use tessera_core::factor::{
    BACKUP_CODE_COUNT, CHALLENGE_PURPOSE_SIGNIN, CHALLENGE_TTL, Challenge, Factor, FactorKind,
    backup_code_hash, totp_secret_aad,
};
use tessera_core::ids::{ChallengeId, FactorId, UserId};
use tessera_core::store::{NewUser, Store, StoreTx};
use tessera_core::user::User;
use tessera_otp::{BACKUP_CODE_BYTES, BackupCode, TOTP_SECRET_BYTES};
use time::OffsetDateTime;

/// What the benchmark keeps of a seeded account to sign it in.
pub struct SeededUser {
    /// The account.
    pub id: UserId,
    /// The TOTP secret in the clear (what the user's authenticator app holds).
    pub secret: [u8; TOTP_SECRET_BYTES],
    /// The account's backup codes (empty when none were seeded for it).
    pub backup_codes: Vec<BackupCode>,
}

/// One row group to insert in a seeding transaction.
enum Row {
    /// An account, its factor and (maybe) its backup-code hashes.
    Account {
        user: NewUser,
        factor: Factor,
        codes: Vec<[u8; 32]>,
    },
    /// An open sign-in challenge.
    Challenge(Challenge),
}

/// How long seeding took, overall and per store call.
#[derive(Debug, Default)]
pub struct SeedReport {
    /// Wall time of the database part.
    pub elapsed: Duration,
    /// Transactions committed.
    pub transactions: u64,
    /// Per store call: how many, and their summed duration (across parallel tasks).
    pub calls: BTreeMap<&'static str, (u64, Duration)>,
    /// Rows written, per table.
    pub rows: BTreeMap<&'static str, u64>,
}

impl SeedReport {
    fn time(&mut self, call: &'static str, took: Duration) {
        let entry = self.calls.entry(call).or_default();
        entry.0 += 1;
        entry.1 += took;
    }

    fn merge(&mut self, other: SeedReport) {
        self.transactions += other.transactions;
        for (call, (count, took)) in other.calls {
            let entry = self.calls.entry(call).or_default();
            entry.0 += count;
            entry.1 += took;
        }
        for (table, rows) in other.rows {
            *self.rows.entry(table).or_default() += rows;
        }
    }

    /// Prints the report, indented, with `label`.
    pub fn print(&self, label: &str) {
        let rows: u64 = self.rows.values().sum();
        println!(
            "    {label}: {:.1} s, {} transactions, {rows} rows ({:.0} rows/s): {}",
            self.elapsed.as_secs_f64(),
            self.transactions,
            rows as f64 / self.elapsed.as_secs_f64().max(1e-9),
            self.rows
                .iter()
                .map(|(table, n)| format!("{table} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let calls: Vec<String> = self
            .calls
            .iter()
            .map(|(call, (count, took))| {
                format!(
                    "{call} {:.0} µs",
                    took.as_secs_f64() * 1e6 / (*count).max(1) as f64
                )
            })
            .collect();
        println!("      mean time per store call: {}", calls.join(", "));
    }
}

/// Makes `count` accounts in memory: ids, emails, sealed secrets and, for the first
/// `with_backup_codes`, ten backup codes each with their hashes. CPU only (randomness, AES-GCM,
/// HMAC), no database.
pub fn prepare_accounts(
    count: usize,
    with_backup_codes: usize,
    ring: &KeyRing,
    pepper: &Pepper,
    phc: &str,
    now: OffsetDateTime,
) -> anyhow::Result<(Vec<SeededUser>, RowBatch)> {
    let fail = |error: tessera_core::Error| anyhow::anyhow!("{error}");
    let mut users = Vec::with_capacity(count);
    let mut rows = Vec::with_capacity(count);
    for i in 0..count {
        let id = UserId::new();
        let factor_id = FactorId::new();
        let secret = random_bytes::<TOTP_SECRET_BYTES>().map_err(fail)?;
        let sealed = ring
            .seal(&secret, &totp_secret_aad(id, factor_id))
            .map_err(fail)?;
        let email = Email::parse(&format!("mfa-bench-{i}@example.com")).map_err(fail)?;
        let backup_codes = if i < with_backup_codes {
            (0..BACKUP_CODE_COUNT)
                .map(|_| random_bytes::<BACKUP_CODE_BYTES>().map(BackupCode::from_bytes))
                .collect::<Result<Vec<_>, _>>()
                .map_err(fail)?
        } else {
            Vec::new()
        };
        let codes = backup_codes
            .iter()
            .map(|code| backup_code_hash(pepper, id, code))
            .collect();
        rows.push(Row::Account {
            user: NewUser {
                user: User {
                    id,
                    email,
                    display_name: format!("MFA bench user {i}"),
                    created_at: now - time::Duration::days(30),
                },
                password_hash: phc.to_owned(),
            },
            factor: Factor {
                id: factor_id,
                user_id: id,
                kind: FactorKind::Totp,
                label: "Authenticator app".into(),
                secret_sealed: Some(sealed),
                key_id: Some(ring.primary_id()),
                // Never used: every step is fresh, the one at the fixed instant included.
                last_step: None,
                preferred: true,
                created_at: now - time::Duration::days(29),
                last_used_at: None,
                destination: None,
            },
            codes,
        });
        users.push(SeededUser {
            id,
            secret,
            backup_codes,
        });
    }
    Ok((users, RowBatch(rows)))
}

/// Rows to seed (opaque outside this module).
pub struct RowBatch(Vec<Row>);

/// One open sign-in challenge per user of `users` (the password step at `now`), and the
/// tokens that open them, in the same order.
pub fn prepare_challenges(
    users: &[UserId],
    now: OffsetDateTime,
) -> anyhow::Result<(Vec<Token>, RowBatch)> {
    let mut tokens = Vec::with_capacity(users.len());
    let mut rows = Vec::with_capacity(users.len());
    for user_id in users {
        let token = Token::generate().map_err(|error| anyhow::anyhow!("{error}"))?;
        rows.push(Row::Challenge(Challenge {
            id: ChallengeId::new(),
            token_hash: token.hash(),
            user_id: *user_id,
            purpose: CHALLENGE_PURPOSE_SIGNIN.into(),
            created_at: now,
            expires_at: now + CHALLENGE_TTL,
            completed_at: None,
            ip: Some("198.51.100.7".into()),
            user_agent: Some("tessera-bench".into()),
        }));
        tokens.push(token);
    }
    Ok((tokens, RowBatch(rows)))
}

/// Inserts `batches` in transactions of `per_tx` row groups, `parallel` transactions at a
/// time (SQLite has one writer connection, so there they run one after the other anyway).
/// Must run inside the server's runtime (the store's connections belong to it).
pub async fn seed(
    store: Arc<dyn Store>,
    batches: Vec<RowBatch>,
    now: OffsetDateTime,
    per_tx: usize,
    parallel: usize,
) -> anyhow::Result<SeedReport> {
    let mut queue = VecDeque::new();
    for RowBatch(rows) in batches {
        let mut rows = rows.into_iter().peekable();
        while rows.peek().is_some() {
            queue.push_back(rows.by_ref().take(per_tx.max(1)).collect::<Vec<Row>>());
        }
    }
    let queue = Arc::new(Mutex::new(queue));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..parallel.max(1) {
        let (store, queue) = (store.clone(), queue.clone());
        tasks.spawn(async move {
            let mut report = SeedReport::default();
            loop {
                let next = queue
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .pop_front();
                let Some(rows) = next else {
                    return anyhow::Ok(report);
                };
                let at = Instant::now();
                let mut tx = store.begin().await.context("seeding: begin")?;
                report.time("begin", at.elapsed());
                for row in &rows {
                    insert(tx.as_mut(), row, now, &mut report).await?;
                }
                let at = Instant::now();
                tx.commit().await.context("seeding: commit")?;
                report.time("commit", at.elapsed());
                report.transactions += 1;
            }
        });
    }
    let mut total = SeedReport::default();
    while let Some(joined) = tasks.join_next().await {
        total.merge(joined.context("seeding task failed")??);
    }
    total.elapsed = started.elapsed();
    Ok(total)
}

async fn insert(
    tx: &mut dyn StoreTx,
    row: &Row,
    now: OffsetDateTime,
    report: &mut SeedReport,
) -> anyhow::Result<()> {
    match row {
        Row::Account {
            user,
            factor,
            codes,
        } => {
            let at = Instant::now();
            tx.insert_user(user).await.context("seeding: insert_user")?;
            report.time("insert_user", at.elapsed());
            let at = Instant::now();
            tx.insert_factor(factor)
                .await
                .context("seeding: insert_factor")?;
            report.time("insert_factor", at.elapsed());
            *report.rows.entry("users").or_default() += 1;
            *report.rows.entry("factors").or_default() += 1;
            if !codes.is_empty() {
                let at = Instant::now();
                tx.replace_backup_codes(user.user.id, codes, now)
                    .await
                    .context("seeding: replace_backup_codes")?;
                report.time("replace_backup_codes (×10)", at.elapsed());
                *report.rows.entry("backup_codes").or_default() += codes.len() as u64;
            }
        }
        Row::Challenge(challenge) => {
            let at = Instant::now();
            tx.insert_challenge(challenge)
                .await
                .context("seeding: insert_challenge")?;
            report.time("insert_challenge", at.elapsed());
            *report.rows.entry("mfa_challenges").or_default() += 1;
        }
    }
    Ok(())
}
