//! The examples at the end of each command's long help (`opsctl <command> --help`), the
//! ones on-call people reach for first, and the note on where the common flags may go.

/// After the top-level help: the common flags may come before or after the subcommand.
pub const TOP: &str = "\
The common flags (--database-url, --sslmode, --sslrootcert, --policy, --format,
--key-file, --passphrase-file, --log-format) go before or after the command.

Examples:
  opsctl drill --latest --dir /backups --key-file /etc/opsctl/key
  opsctl archive --before 2025-01-01 --dry-run
  opsctl --database-url postgres://opsctl@db1/trading health --format nagios";

pub const HEALTH: &str = "\
Examples:
  opsctl health
  opsctl health --format nagios --database-url postgres://monitor@db1/trading
  opsctl health --check connections --check replication_lag --format json";

pub const MIGRATE: &str = "\
Examples:
  opsctl migrate status
  opsctl migrate up --dry-run
  opsctl migrate up --lock-wait 5m";

pub const MIGRATE_UP: &str = "\
Examples:
  opsctl migrate up --dry-run
  opsctl migrate up
  opsctl migrate up --to 3 --lock-wait 5m";

pub const MIGRATE_STATUS: &str = "\
Examples:
  opsctl migrate status
  opsctl migrate status --format json";

pub const MIGRATE_VERIFY: &str = "\
Examples:
  opsctl migrate verify
  opsctl migrate verify --migrations-dir ./migrations";

pub const MIGRATE_BASELINE: &str = "\
Examples:
  opsctl migrate baseline --version 4
  opsctl migrate baseline --version 4 --lock-wait 2m";

pub const MIGRATE_RESOLVE: &str = "\
Examples:
  opsctl migrate resolve 5 --applied
  opsctl migrate resolve 5 --rolled-back";

pub const IMPORT: &str = "\
Examples:
  opsctl import --table trades trades.ndjson --reject-file rejected.ndjson
  opsctl import --table users users.json --upsert
  zcat positions.ndjson.gz | opsctl import --table positions -";

pub const REPORT: &str = "\
Examples:
  opsctl report pool
  opsctl report size --snapshot --format json";

pub const REPORT_POOL: &str = "\
Examples:
  opsctl report pool
  opsctl report pool --format nagios";

pub const REPORT_SIZE: &str = "\
Examples:
  opsctl report size
  opsctl report size --snapshot --limit 20
  opsctl report size --format prometheus --textfile /var/lib/node_exporter/size.prom";

pub const SERVE: &str = "\
Examples:
  opsctl serve
  opsctl serve --listen 0.0.0.0:9187 --log-format json";

pub const BACKUP: &str = "\
Examples:
  opsctl backup create --dir /backups --key-file /etc/opsctl/key
  opsctl backup list --dir /backups
  opsctl backup verify 20260115T020000Z-3f2a --dir /backups --key-file /etc/opsctl/key";

pub const BACKUP_KEYGEN: &str = "\
Examples:
  opsctl backup keygen --out /etc/opsctl/key
  opsctl backup keygen --out /root/offsite.key   # a second key, for backup rekey";

pub const BACKUP_CREATE: &str = "\
Examples:
  opsctl backup create --dir /backups --key-file /etc/opsctl/key
  OPSCTL_KEY_FILE=/etc/opsctl/key opsctl backup create --dir /backups --lock-wait 15m";

pub const BACKUP_LIST: &str = "\
Examples:
  opsctl backup list --dir /backups
  opsctl backup list --dir /backups --format json";

pub const BACKUP_VERIFY: &str = "\
Examples:
  opsctl backup verify 20260115T020000Z-3f2a --dir /backups --key-file /etc/opsctl/key
  opsctl backup verify /mnt/offsite/trading/20260115T020000Z-3f2a.opsbak \\
      --key-file /etc/opsctl/key";

pub const BACKUP_PRUNE: &str = "\
Examples:
  opsctl backup prune --dir /backups --dry-run
  opsctl backup prune --dir /backups";

pub const BACKUP_REKEY: &str = "\
Examples:
  opsctl backup rekey 20260115T020000Z-3f2a --dir /backups --key-file old.key \\
      --new-key-file new.key
  opsctl backup rekey 20260115T020000Z-3f2a --dir /backups --key-file old.key \\
      --new-key-file new.key --replace";

pub const BACKUP_COPY: &str = "\
Examples:
  opsctl backup copy 20260115T020000Z-3f2a --policy /etc/opsctl/policy.toml --to offsite
  opsctl backup copy 20260115T020000Z-3f2a --dir /backups --to s3://opsctl-backups/prod";

pub const RESTORE: &str = "\
Examples:
  opsctl restore 20260115T020000Z-3f2a --dir /backups --key-file /etc/opsctl/key \\
      --target-db copy --create
  opsctl restore 20260115T020000Z-3f2a --dir /backups --key-file /etc/opsctl/key \\
      --target-db copy --clean --jobs 4
  opsctl restore --pitr --pgdata /srv/pitr --to-time 2026-01-15T14:30:00Z --start";

pub const DRILL: &str = "\
Examples:
  opsctl drill --latest --dir /backups --key-file /etc/opsctl/key
  opsctl drill 20260115T020000Z-3f2a --dir /backups --format json
  opsctl drill --pitr --policy /etc/opsctl/policy.toml";

pub const VACUUM: &str = "\
Examples:
  opsctl vacuum --dry-run
  opsctl vacuum --max-duration 1h30m --lock-wait 5m
  opsctl vacuum --table trades --freeze";

pub const REINDEX: &str = "\
Examples:
  opsctl reindex --dry-run
  opsctl reindex --table trades --min-size 1MiB
  opsctl reindex --index idx_trades_user_id --lock-wait 2m";

pub const PARTITION: &str = "\
Examples:
  opsctl partition list
  opsctl partition ensure --dry-run";

pub const PARTITION_ENSURE: &str = "\
Examples:
  opsctl partition ensure --dry-run
  opsctl partition ensure --table trades --premake 6";

pub const PARTITION_LIST: &str = "\
Examples:
  opsctl partition list
  opsctl partition list --table trades --format json";

pub const ARCHIVE: &str = "\
Examples:
  opsctl archive --before 2025-01-01 --dry-run
  opsctl archive --before 2025-01-01 --lock-wait 10m
  opsctl archive --before 2025-01-01 --export-dir /archive --key-file /etc/opsctl/key";

pub const ARCHIVE_RESTORE: &str = "\
Examples:
  opsctl archive restore /archive/archive.trades_p2024_06.opsarc --key-file /etc/opsctl/key
  opsctl archive restore archive.trades_p2024_06.opsarc --key-file /etc/opsctl/key --format json";

pub const POLICY: &str = "\
Examples:
  opsctl policy check /etc/opsctl/policy.toml
  opsctl policy check --format json";

pub const POLICY_CHECK: &str = POLICY;

pub const SCHEDULE: &str = "\
Examples:
  opsctl schedule list --policy /etc/opsctl/policy.toml
  opsctl schedule run --policy /etc/opsctl/policy.toml --log-format json
  opsctl schedule run --once backup";

pub const SCHEDULE_LIST: &str = "\
Examples:
  opsctl schedule list --policy /etc/opsctl/policy.toml
  opsctl schedule list --format json";

pub const SCHEDULE_RUN: &str = "\
Examples:
  opsctl schedule run --policy /etc/opsctl/policy.toml --log-format json
  opsctl schedule run --once backup
  opsctl schedule run --once drill";

pub const SCHEDULE_HISTORY: &str = "\
Examples:
  opsctl schedule history --since 12h
  opsctl schedule history --job backup --since 7d
  opsctl schedule history --format json";

pub const AUDIT: &str = "\
Examples:
  opsctl audit verify --backups /backups
  opsctl audit report --since 24h
  opsctl audit seal";

pub const AUDIT_SEAL: &str = "\
Examples:
  opsctl audit seal
  opsctl audit seal --batch-size 50000 --format json";

pub const AUDIT_VERIFY: &str = "\
Examples:
  opsctl audit verify
  opsctl audit verify --backups /backups --format json";

pub const AUDIT_REPORT: &str = "\
Examples:
  opsctl audit report --since 24h
  opsctl audit report --from 2026-01-15 --to 2026-01-16T12:00:00 --table trades
  opsctl audit report --actor alice --format json";

pub const COMPLETIONS: &str = "\
Examples:
  opsctl completions bash > /etc/bash_completion.d/opsctl
  opsctl completions zsh > \"${fpath[1]}/_opsctl\"
  opsctl completions fish > ~/.config/fish/completions/opsctl.fish";

pub const MAN: &str = "\
Examples:
  opsctl man | man -l -
  opsctl man --dir /usr/local/share/man/man1";

pub const BASEBACKUP: &str = "\
The role needs REPLICATION and pg_hba.conf a `hostssl replication` line; archiving must be
on (opsctl wal setup --print). The backup is kept only once the WAL from its start to its
stop and its .backup file are in the archive.

Examples:
  opsctl basebackup --policy /etc/opsctl/policy.toml
  opsctl basebackup --archive-wait 10m --format json";

pub const RESTORE_POINT: &str = "\
The WAL holding the point is switched out at once, so the archive has it within seconds;
recover to it with opsctl restore --pitr --pgdata DIR --to-name NAME.

Examples:
  opsctl restore-point before-migration-42
  opsctl restore-point nightly-close --format json";

pub const WAL: &str = "\
push and fetch are PostgreSQL's archive_command and restore_command (see `opsctl wal
setup --print`); status, setup and verify are for people.

Examples:
  opsctl wal setup --print --policy /etc/opsctl/policy.toml
  opsctl wal status --format json
  opsctl wal verify --policy /etc/opsctl/policy.toml";

pub const WAL_PUSH: &str = "\
archive_command = '/usr/local/bin/opsctl wal push %p --policy /etc/opsctl/policy.toml'
Exit 0 once the file is durable in the repository (or already there, identical), 1
otherwise: PostgreSQL keeps the file and retries.

Examples:
  opsctl wal push pg_wal/000000010000000000000001 --policy /etc/opsctl/policy.toml
  opsctl wal push pg_wal/00000002.history --repo /backups --key-file /etc/opsctl/wal.key";

pub const WAL_FETCH: &str = "\
restore_command = '/usr/local/bin/opsctl wal fetch %f %p --policy /etc/opsctl/policy.toml'
Exit 0 restored, 1 not in the archive, 200 the file is there but cannot be delivered
intact (tampered, truncated, wrong key) or opsctl cannot work: PostgreSQL stops recovery.

Examples:
  opsctl wal fetch 000000010000000000000001 pg_wal/RECOVERYXLOG --policy /etc/opsctl/policy.toml
  opsctl wal fetch 00000002.history /tmp/00000002.history --repo /backups --key-file wal.key";

pub const WAL_STATUS: &str = "\
Examples:
  opsctl wal status
  opsctl wal status --format json --policy /etc/opsctl/policy.toml";

pub const WAL_SETUP: &str = "\
Examples:
  opsctl wal setup --print --policy /etc/opsctl/policy.toml
  opsctl wal setup --print --archive-timeout 5m --policy /etc/opsctl/policy.toml";

pub const WAL_VERIFY: &str = "\
Exit 0 no gap, 1 a gap or a problem (a missing history file, nothing archived).

Examples:
  opsctl wal verify --policy /etc/opsctl/policy.toml
  opsctl wal verify --from 000000010000000000000010 --format json";
