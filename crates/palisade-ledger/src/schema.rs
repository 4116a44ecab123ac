//! Schema migrations, shared by both stores.
//!
//! Each migration has a version, a name and one SQL text per dialect, so the
//! two schemas evolve in lockstep. `schema_version` holds one row per applied
//! migration; the database's version is the largest. At open, every
//! migration above that version is applied in order inside one transaction
//! (both SQLite and PostgreSQL have transactional DDL), so a failed upgrade
//! leaves the database as it was. A database whose version is above the
//! newest migration this code knows is refused: older code writing into a
//! newer schema could silently drop what the newer schema added.
//!
//! Rule for adding a migration: append, never edit a released one.

/// One schema change.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Applied in increasing order; 1-based and without gaps.
    pub version: u32,
    /// Recorded in `schema_version` for humans.
    pub name: &'static str,
    /// The change in SQLite's dialect.
    pub sqlite: &'static str,
    /// The change in PostgreSQL's dialect.
    pub postgres: &'static str,
}

/// Every migration, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "ledger table",
        // STRICT makes SQLite enforce the column types like PostgreSQL does.
        sqlite: "CREATE TABLE ledger (
            id INTEGER PRIMARY KEY,
            request_id TEXT NOT NULL UNIQUE,
            ts INTEGER NOT NULL,
            tenant TEXT NOT NULL,
            key_name TEXT NOT NULL,
            model TEXT NOT NULL,
            backend TEXT NOT NULL,
            endpoint TEXT NOT NULL,
            status INTEGER NOT NULL,
            outcome TEXT NOT NULL,
            prompt_tokens INTEGER NOT NULL,
            completion_tokens INTEGER NOT NULL,
            cached_tokens INTEGER,
            reasoning_tokens INTEGER,
            tool_loop_tokens INTEGER,
            estimated_tokens INTEGER NOT NULL,
            usage_source TEXT NOT NULL,
            cost_micros INTEGER NOT NULL,
            latency_ms INTEGER NOT NULL
        ) STRICT;",
        postgres: "CREATE TABLE ledger (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            request_id TEXT NOT NULL UNIQUE,
            ts BIGINT NOT NULL,
            tenant TEXT NOT NULL,
            key_name TEXT NOT NULL,
            model TEXT NOT NULL,
            backend TEXT NOT NULL,
            endpoint TEXT NOT NULL,
            status INTEGER NOT NULL,
            outcome TEXT NOT NULL,
            prompt_tokens BIGINT NOT NULL,
            completion_tokens BIGINT NOT NULL,
            cached_tokens BIGINT,
            reasoning_tokens BIGINT,
            tool_loop_tokens BIGINT,
            estimated_tokens BIGINT NOT NULL,
            usage_source TEXT NOT NULL,
            cost_micros BIGINT NOT NULL,
            latency_ms BIGINT NOT NULL
        );",
    },
    Migration {
        version: 2,
        name: "report indexes",
        // Reports filter on a time window, quotas on a tenant's window.
        sqlite: "CREATE INDEX ledger_ts ON ledger (ts);
                 CREATE INDEX ledger_tenant_ts ON ledger (tenant, ts);",
        postgres: "CREATE INDEX ledger_ts ON ledger (ts);
                   CREATE INDEX ledger_tenant_ts ON ledger (tenant, ts);",
    },
    Migration {
        version: 3,
        name: "audit log",
        // `seq` is assigned by the store and never reused (AUTOINCREMENT, an
        // identity sequence), even after retention deletes old rows. The
        // filter indexes end in `seq` because `audit_tail` reads the newest
        // rows of one tenant, gate or action (in SQLite a plain index on
        // `tenant` would carry the rowid anyway; PostgreSQL needs it said).
        // The trigger makes the log append-only in the database too: an
        // UPDATE is refused; DELETE stays possible for retention.
        sqlite: "CREATE TABLE audit (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            ts_ms INTEGER NOT NULL,
            request_id TEXT NOT NULL,
            tenant TEXT NOT NULL,
            route TEXT NOT NULL,
            model TEXT NOT NULL,
            gate TEXT NOT NULL,
            action TEXT NOT NULL,
            policy_version TEXT NOT NULL,
            record TEXT NOT NULL
        ) STRICT;
        CREATE INDEX audit_ts_ms ON audit (ts_ms);
        CREATE INDEX audit_request_id ON audit (request_id);
        CREATE INDEX audit_tenant_seq ON audit (tenant, seq);
        CREATE INDEX audit_gate_seq ON audit (gate, seq);
        CREATE INDEX audit_action_seq ON audit (action, seq);
        CREATE INDEX audit_policy_version_seq ON audit (policy_version, seq);
        CREATE TRIGGER audit_append_only BEFORE UPDATE ON audit
        BEGIN
            SELECT RAISE(ABORT, 'audit rows are append-only');
        END;",
        postgres: "CREATE TABLE audit (
            seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            ts_ms BIGINT NOT NULL,
            request_id TEXT NOT NULL,
            tenant TEXT NOT NULL,
            route TEXT NOT NULL,
            model TEXT NOT NULL,
            gate TEXT NOT NULL,
            action TEXT NOT NULL,
            policy_version TEXT NOT NULL,
            record TEXT NOT NULL
        );
        CREATE INDEX audit_ts_ms ON audit (ts_ms);
        CREATE INDEX audit_request_id ON audit (request_id);
        CREATE INDEX audit_tenant_seq ON audit (tenant, seq);
        CREATE INDEX audit_gate_seq ON audit (gate, seq);
        CREATE INDEX audit_action_seq ON audit (action, seq);
        CREATE INDEX audit_policy_version_seq ON audit (policy_version, seq);
        CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'audit rows are append-only';
        END
        $$;
        CREATE TRIGGER audit_append_only BEFORE UPDATE ON audit
            FOR EACH ROW EXECUTE FUNCTION audit_append_only();",
    },
    Migration {
        version: 4,
        name: "ledger attempts",
        // Upstream attempts per request (retries and fallbacks); rows from
        // before routing retried count as one.
        sqlite: "ALTER TABLE ledger ADD COLUMN attempts INTEGER NOT NULL DEFAULT 1;",
        postgres: "ALTER TABLE ledger ADD COLUMN attempts BIGINT NOT NULL DEFAULT 1;",
    },
    Migration {
        version: 5,
        name: "runtime api keys",
        // Keys created through `/admin/keys`: hashes only (`sha256`, and the
        // previous secret's `old_sha256` during a rotation's overlap), never
        // a key. `updated_seq` grows on every write, so a replica detects a
        // change by reading `COUNT(*)` and `SUM(updated_seq)` (see
        // `keys.rs`) instead of the whole table. A revoked row is kept (with
        // `revoked_ms`) for the record; it never authenticates again.
        sqlite: "CREATE TABLE api_keys (
            id TEXT PRIMARY KEY,
            tenant TEXT NOT NULL,
            name TEXT NOT NULL,
            sha256 TEXT NOT NULL UNIQUE,
            old_sha256 TEXT,
            old_until_ms INTEGER,
            admin INTEGER NOT NULL,
            approver INTEGER NOT NULL,
            executor INTEGER NOT NULL,
            models TEXT,
            expires_ms INTEGER,
            created_ms INTEGER NOT NULL,
            rotated_ms INTEGER,
            revoked_ms INTEGER,
            updated_seq INTEGER NOT NULL
        ) STRICT;
        CREATE INDEX api_keys_tenant ON api_keys (tenant);",
        postgres: "CREATE SEQUENCE api_keys_seq;
        CREATE TABLE api_keys (
            id TEXT PRIMARY KEY,
            tenant TEXT NOT NULL,
            name TEXT NOT NULL,
            sha256 TEXT NOT NULL UNIQUE,
            old_sha256 TEXT,
            old_until_ms BIGINT,
            admin BOOLEAN NOT NULL,
            approver BOOLEAN NOT NULL,
            executor BOOLEAN NOT NULL,
            models TEXT,
            expires_ms BIGINT,
            created_ms BIGINT NOT NULL,
            rotated_ms BIGINT,
            revoked_ms BIGINT,
            updated_seq BIGINT NOT NULL
        );
        CREATE INDEX api_keys_tenant ON api_keys (tenant);",
    },
    Migration {
        version: 6,
        name: "per-key budgets",
        // A runtime key's own caps (micro-dollars and/or tokens per UTC
        // `budget_period`, `monthly` or `daily`) and rates; NULL is unset.
        // The index serves the per-key spend a replica seeds its counters
        // from (`key_spent`: tenant, key name, since the period's start).
        sqlite: "ALTER TABLE api_keys ADD COLUMN max_budget_micros INTEGER;
        ALTER TABLE api_keys ADD COLUMN max_tokens INTEGER;
        ALTER TABLE api_keys ADD COLUMN budget_period TEXT;
        ALTER TABLE api_keys ADD COLUMN requests_per_minute INTEGER;
        ALTER TABLE api_keys ADD COLUMN tokens_per_minute INTEGER;
        CREATE INDEX ledger_by_key ON ledger (tenant, key_name, ts);",
        postgres: "ALTER TABLE api_keys ADD COLUMN max_budget_micros BIGINT;
        ALTER TABLE api_keys ADD COLUMN max_tokens BIGINT;
        ALTER TABLE api_keys ADD COLUMN budget_period TEXT;
        ALTER TABLE api_keys ADD COLUMN requests_per_minute BIGINT;
        ALTER TABLE api_keys ADD COLUMN tokens_per_minute BIGINT;
        CREATE INDEX ledger_by_key ON ledger (tenant, key_name, ts);",
    },
    Migration {
        version: 7,
        name: "response owners",
        // Who created each Responses API id the gateway relayed (see
        // `owners.rs`); `created_ms` for the retention sweep.
        sqlite: "CREATE TABLE response_owner (
            response_id TEXT PRIMARY KEY,
            tenant TEXT NOT NULL,
            key_name TEXT NOT NULL,
            backend TEXT NOT NULL,
            created_ms INTEGER NOT NULL
        ) STRICT;
        CREATE INDEX response_owner_created ON response_owner (created_ms);",
        postgres: "CREATE TABLE response_owner (
            response_id TEXT PRIMARY KEY,
            tenant TEXT NOT NULL,
            key_name TEXT NOT NULL,
            backend TEXT NOT NULL,
            created_ms BIGINT NOT NULL
        );
        CREATE INDEX response_owner_created ON response_owner (created_ms);",
    },
    Migration {
        version: 8,
        name: "response owners' request context",
        // The route and model the response was made for (its retrieval is
        // judged under the tier they select; '' when unknown), and what the
        // conversation carried so far (`context`: 1 untrusted content, 2
        // flagged content), inherited by a request continuing it. Rows
        // written before this migration carry both bits: what they held is
        // unknown, so a continuation is judged as if tainted.
        sqlite: "ALTER TABLE response_owner ADD COLUMN route TEXT NOT NULL DEFAULT '';
        ALTER TABLE response_owner ADD COLUMN model TEXT NOT NULL DEFAULT '';
        ALTER TABLE response_owner ADD COLUMN context INTEGER NOT NULL DEFAULT 3;",
        postgres: "ALTER TABLE response_owner ADD COLUMN route TEXT NOT NULL DEFAULT '';
        ALTER TABLE response_owner ADD COLUMN model TEXT NOT NULL DEFAULT '';
        ALTER TABLE response_owner ADD COLUMN context BIGINT NOT NULL DEFAULT 3;",
    },
];

/// The newest schema version this code knows.
pub fn latest_version() -> u32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// The migrations above `current`, in order.
pub(crate) fn pending(current: u32) -> impl Iterator<Item = &'static Migration> {
    MIGRATIONS.iter().filter(move |m| m.version > current)
}

/// Unix milliseconds now, only to record when a migration was applied
/// (informational; no decision depends on it).
pub(crate) fn applied_at_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_one_based_and_contiguous() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1, "{}", m.name);
        }
        assert_eq!(pending(1).count(), MIGRATIONS.len() - 1);
    }
}
