#!/usr/bin/env python3
"""Generates the small sample data set of the quick start (deterministic: seeded).

Writes, in the old application's JSON shapes, to tests/fixtures/sample/ (or the directory
given as the first argument):
  users.json           6 users: five AI trading models and one human desk
  trades.ndjson        a year (2025) of closed trades over 5 symbols, long and short
  positions.json       the open position of each user per symbol
  account_totals.json  one row per user per day

Prices and quantities are written as exchange APIs write them: strings with up to 8
decimals (some as plain JSON numbers), never rounded through a float.

Existing files are never overwritten unless --force is given (the checked-in fixtures in
tests/fixtures/sample/ are what the tests expect).

Usage: scripts/sample-data/generate.py [OUT_DIR] [--trades N] [--force]
       scripts/sample-data/generate.py --help
Exit status: 0 written, 1 the output exists (or cannot be written), 2 bad arguments.
"""

import argparse
import json
import random
import sys
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

Q8 = Decimal("0.00000001")
SYMBOLS = {
    "BTCUSDT": Decimal("42000"),
    "ETHUSDT": Decimal("2300"),
    "SOLUSDT": Decimal("100"),
    "BNBUSDT": Decimal("310"),
    "XRPUSDT": Decimal("0.62"),
}
USERS = [
    ("gpt4o_bot", "gpt-4o"),
    ("claude_bot", "claude-3-5-sonnet"),
    ("gemini_bot", "gemini-1.5-pro"),
    ("llama_bot", "llama-3.1-70b"),
    ("deepseek_bot", "deepseek-v3"),
    ("desk_anna", None),
]


def q8(d):
    return d.quantize(Q8, rounding=ROUND_HALF_EVEN)


def money(rng, d, as_number_share=0.2):
    """A decimal as an exchange writes it: usually a string, sometimes a JSON number."""
    s = format(q8(d), "f")
    return ("NUM:" + s) if rng.random() < as_number_share else s


def dumps(obj):
    # Emit "NUM:" strings as bare JSON numbers, keeping their exact digits.
    text = json.dumps(obj, separators=(", ", ": "))
    return text.replace('"NUM:', "").replace('_END_NUM"', "")


def numeric_fix(obj):
    return {k: (v + "_END_NUM" if isinstance(v, str) and v.startswith("NUM:") else v) for k, v in obj.items()}


FILES = ("users.json", "trades.ndjson", "positions.json", "account_totals.json")
FIXTURES = Path(__file__).resolve().parents[2] / "tests/fixtures/sample"


def positive_int(text):
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number")
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return n


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="generate.py",
        description="Generates the deterministic (seeded) sample data set: users.json, "
        "trades.ndjson, positions.json and account_totals.json in the old application's "
        "JSON shapes.",
        epilog="Examples: generate.py /tmp/sample --trades 1000000   (a larger file); "
        "generate.py --force   (regenerate the checked-in fixtures). Exit status: 0 written, "
        "1 the output files exist (pass --force) or cannot be written, 2 bad arguments.",
    )
    p.add_argument(
        "out_dir",
        nargs="?",
        metavar="OUT_DIR",
        help=f"directory to write to (created if missing; default: {FIXTURES})",
    )
    p.add_argument(
        "--trades",
        type=positive_int,
        default=3000,
        metavar="N",
        help="number of trades (default: 3000, the size of the checked-in fixtures)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="overwrite data files that already exist in OUT_DIR (needed to regenerate "
        "tests/fixtures/sample)",
    )
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    n_trades = args.trades
    out = Path(args.out_dir) if args.out_dir is not None else FIXTURES
    if out.exists() and not out.is_dir():
        print(f"error: {out} exists and is not a directory", file=sys.stderr)
        return 1
    existing = [name for name in FILES if (out / name).exists()]
    if existing and not args.force:
        print(
            f"error: {out} already holds {', '.join(existing)}; refusing to overwrite "
            "(pass --force to regenerate them, or give another OUT_DIR)",
            file=sys.stderr,
        )
        return 1
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        print(f"error: cannot create {out}: {e}", file=sys.stderr)
        return 1
    rng = random.Random(20250101)
    start = datetime(2025, 1, 1, tzinfo=timezone.utc)

    users = []
    for i, (name, _model) in enumerate(USERS, start=1):
        users.append(
            {
                "id": i,
                "username": name,
                "email": f"{name.replace('_', '.')}@example.com",
                "created_at": (start - timedelta(days=30 - i)).strftime("%Y-%m-%d %H:%M:%S"),
            }
        )
    (out / "users.json").write_text(json.dumps(users, indent=2) + "\n")

    # A daily random walk per symbol.
    prices = {}
    for sym, p in SYMBOLS.items():
        walk = []
        for _day in range(365):
            p = p * (Decimal(1) + Decimal(rng.gauss(0, 0.025)).quantize(Decimal("0.000001")))
            walk.append(max(p, Decimal("0.0001")))
        prices[sym] = walk

    realized = {u["id"]: Decimal(0) for u in users}
    commission = {u["id"]: Decimal(0) for u in users}
    daily = {}  # (user, day) -> (realized, commission)
    trades = []
    for n in range(n_trades):
        uid = rng.randint(1, len(USERS))
        model = USERS[uid - 1][1]
        sym = rng.choice(list(SYMBOLS))
        day = rng.randrange(365)
        entry_time = start + timedelta(days=day, seconds=rng.randrange(86400))
        hold = timedelta(minutes=rng.randrange(5, 60 * 48))
        exit_time = entry_time + hold
        exit_day = min((exit_time - start).days, 364)
        side = rng.choice(["long", "short"])
        entry = q8(prices[sym][day] * (Decimal(1) + Decimal(rng.gauss(0, 0.004)).quantize(Decimal("0.000001"))))
        exitp = q8(prices[sym][exit_day] * (Decimal(1) + Decimal(rng.gauss(0, 0.004)).quantize(Decimal("0.000001"))))
        notional = Decimal(rng.randrange(100, 20000))
        qty = q8(notional / entry)
        pnl = q8((exitp - entry) * qty * (1 if side == "long" else -1))
        fee = q8((entry + exitp) * qty * Decimal("0.0004"))
        realized[uid] += pnl - fee
        commission[uid] += fee
        daily[(uid, exit_day)] = (realized[uid], commission[uid])
        row = {
            "id": f"T{2025}{n:06d}",
            "user_id": uid,
            "symbol": sym,
            "side": side,
            "quantity": money(rng, qty),
            "entry_price": money(rng, entry),
            "exit_price": money(rng, exitp),
            "entry_time": entry_time.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "exit_time": exit_time.strftime("%Y-%m-%d %H:%M:%S"),
            "realized_pnl": money(rng, pnl),
            "commission": money(rng, fee),
            "model_id": model,
        }
        trades.append((entry_time, row))
    trades.sort(key=lambda t: t[0])
    with open(out / "trades.ndjson", "w") as f:
        for _t, row in trades:
            f.write(dumps(numeric_fix(row)) + "\n")

    positions = []
    for u in users:
        for sym in rng.sample(list(SYMBOLS), 3):
            last = prices[sym][-1]
            entry = q8(last * (Decimal(1) + Decimal(rng.gauss(0, 0.03)).quantize(Decimal("0.000001"))))
            qty = q8(Decimal(rng.randrange(500, 5000)) / entry)
            lev = rng.choice([1, 2, 3, 5, 10])
            side = rng.choice([1, -1])
            positions.append(
                numeric_fix(
                    {
                        "user_id": u["id"],
                        "symbol": sym,
                        "quantity": money(rng, qty * side),
                        "entry_price": money(rng, entry),
                        "current_price": money(rng, q8(last)),
                        "margin": money(rng, q8(entry * qty / lev)),
                        "unrealized_pnl": money(rng, q8((last - entry) * qty * side)),
                        "leverage": lev,
                        "last_updated": "2025-12-31 23:59:00",
                    }
                )
            )
    (out / "positions.json").write_text("[\n" + ",\n".join("  " + dumps(p) for p in positions) + "\n]\n")

    totals = []
    for u in users:
        r, c = Decimal(0), Decimal(0)
        for day in range(365):
            r, c = daily.get((u["id"], day), (r, c))
            ts = start + timedelta(days=day, hours=23, minutes=59, seconds=59)
            totals.append(
                numeric_fix(
                    {
                        "user_id": u["id"],
                        "timestamp": ts.strftime("%Y-%m-%d %H:%M:%S"),
                        "realized_pnl": money(rng, r),
                        "total_unrealized_pnl": money(rng, q8(Decimal(rng.gauss(0, 300)))),
                        "total_margin": money(rng, q8(Decimal(rng.uniform(1000, 20000)))),
                        "total_commission": money(rng, c),
                    }
                )
            )
    (out / "account_totals.json").write_text("[\n" + ",\n".join("  " + dumps(t) for t in totals) + "\n]\n")
    print(f"wrote {len(users)} users, {len(trades)} trades, {len(positions)} positions, "
          f"{len(totals)} account totals to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
