-- The trading schema of the original design: users, trades (range-partitioned by month
-- on entry_time, with a default partition so any insert succeeds), positions and
-- account_totals. Column names, types, nullability and defaults are exactly the
-- original ORM model's, so applications written against it keep working.

CREATE TABLE users (
    id          serial PRIMARY KEY,
    username    varchar(50)  NOT NULL UNIQUE,
    email       varchar(100) NOT NULL UNIQUE,
    created_at  timestamp DEFAULT current_timestamp
);

-- A partitioned table's keys must include the partition key: the primary key is
-- (id, entry_time). opsctl's import checks trade ids for uniqueness explicitly.
CREATE TABLE trades (
    id            varchar(100)   NOT NULL,
    user_id       integer        REFERENCES users(id),
    symbol        varchar(10)    NOT NULL,
    side          varchar(10)    NOT NULL,
    quantity      numeric(20,8)  NOT NULL,
    entry_price   numeric(20,8)  NOT NULL,
    exit_price    numeric(20,8),
    entry_time    timestamp      NOT NULL,
    exit_time     timestamp,
    realized_pnl  numeric(20,8),
    commission    numeric(20,8),
    model_id      varchar(50),
    created_at    timestamp DEFAULT current_timestamp,
    PRIMARY KEY (id, entry_time)
) PARTITION BY RANGE (entry_time);

-- Catches every row no monthly partition covers yet; `opsctl partition ensure` moves
-- such rows into the month it creates for them.
CREATE TABLE trades_default PARTITION OF trades DEFAULT;

CREATE TABLE positions (
    id              serial PRIMARY KEY,
    user_id         integer        REFERENCES users(id),
    symbol          varchar(10)    NOT NULL,
    quantity        numeric(20,8)  NOT NULL,
    entry_price     numeric(20,8)  NOT NULL,
    current_price   numeric(20,8),
    margin          numeric(20,8),
    unrealized_pnl  numeric(20,8),
    leverage        integer,
    last_updated    timestamp DEFAULT current_timestamp
);

CREATE TABLE account_totals (
    id                    serial PRIMARY KEY,
    user_id               integer        REFERENCES users(id),
    "timestamp"           timestamp      NOT NULL,
    realized_pnl          numeric(20,8),
    total_unrealized_pnl  numeric(20,8),
    total_margin          numeric(20,8),
    total_commission      numeric(20,8),
    created_at            timestamp DEFAULT current_timestamp
);

CREATE INDEX idx_trades_user_id ON trades (user_id);
CREATE INDEX idx_trades_symbol ON trades (symbol);
CREATE INDEX idx_trades_entry_time ON trades (entry_time);
CREATE INDEX idx_positions_user_id ON positions (user_id);
CREATE INDEX idx_positions_symbol ON positions (symbol);
CREATE INDEX idx_account_totals_user_id ON account_totals (user_id);
CREATE INDEX idx_account_totals_timestamp ON account_totals ("timestamp");
