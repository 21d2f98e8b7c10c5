"""The audit journal (issue 17, finding 7): refusals journaled, an HMAC chain whose key is outside the database,
``tankwatch audit verify`` and the admin API, and what happens to entries from before the key."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from typer.testing import CliRunner

from tankwatch.audit_key import AUDIT_KEY_ENV, AuditKeyError, demo_key, load_audit_key
from tankwatch.migrations import head, upgrade
from tankwatch.site import SecuritySettings
from tankwatch.stores.audit import GENESIS, AuditJournal
from tankwatch.stores.events import make_engine
from tankwatch_app.cli import app as cli
from tests.unit.test_auth_support import AUDIT_KEY, headers, make_env

ROW_FIELDS = ("ts_ms", "actor", "role", "action", "target_kind", "target_id", "enterprise_id", "remote", "detail")


def unkeyed_hash(prev: str, row: dict) -> str:
    """What anyone can compute: SHA-256 over the previous hash and the row (the first release's chain)."""
    fields = {k: row[k] for k in sorted(ROW_FIELDS)}
    return hashlib.sha256((prev + json.dumps(fields, ensure_ascii=False, sort_keys=True,
                                             separators=(",", ":"))).encode()).hexdigest()


def rewrite_from(engine, seq: int, **changes) -> None:  # noqa: ANN001, ANN003 - an Engine; column values
    """Someone with database access: drop the guard, edit the entries from ``seq`` on, recompute their hashes (without
    the key: the best they can do)."""
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER IF EXISTS audit_log_no_update")
        rows = [dict(r) for r in conn.execute(text("SELECT * FROM audit_log ORDER BY seq")).mappings()]
        prev = GENESIS
        for row in rows:
            if row["seq"] >= seq:
                row.update(changes)
                row["prev_hash"], row["hash"] = prev, unkeyed_hash(prev, row)
                conn.execute(text("UPDATE audit_log SET actor=:actor, chain=:chain, prev_hash=:prev_hash, hash=:hash "
                                  "WHERE seq=:seq"), row)
            prev = row["hash"]


@pytest.fixture
def journal(tmp_path: Path) -> AuditJournal:
    journal = AuditJournal(make_engine(f"sqlite:///{tmp_path / 'a.db'}"), key=AUDIT_KEY)
    for i in range(3):
        journal.record(actor=f"op{i}", action="alarm.ack", target_kind="alarm", target_id=f"o{i}", ts_ms=i)
    return journal


def test_an_edit_with_a_recomputed_chain_shows_without_the_key(journal: AuditJournal) -> None:
    assert journal.verify().ok
    rewrite_from(journal.engine, 2, actor="mallory")
    check = journal.verify()
    assert (check.broken_seq, check.entries) == (2, 1) and "HMAC" in check.reason


def test_a_journal_relabelled_as_unkeyed_shows(journal: AuditJournal) -> None:
    rewrite_from(journal.engine, 3, chain="sha256")
    assert "downgraded" in journal.verify(allow_legacy=True).reason
    rewrite_from(journal.engine, 1, chain="sha256")  # every entry: only the legacy count gives it away
    assert journal.verify().broken_seq == 1
    assert journal.verify(allow_legacy=True).legacy == 3


def test_entries_from_before_the_key_are_kept_and_checked_the_old_way(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    assert upgrade(url, "0001") == "0001"
    engine = make_engine(url)
    prev = GENESIS
    with engine.begin() as conn:  # what the first release wrote
        for i in range(2):
            row = {"ts_ms": i, "actor": "a", "role": None, "action": "user.add", "target_kind": "user",
                   "target_id": f"u{i}", "enterprise_id": None, "remote": "local", "detail": "{}"}
            row["prev_hash"], row["hash"] = prev, unkeyed_hash(prev, row)
            conn.execute(text("INSERT INTO audit_log (ts_ms, actor, role, action, target_kind, target_id, "
                              "enterprise_id, remote, detail, prev_hash, hash) VALUES (:ts_ms, :actor, :role, :action, "
                              ":target_kind, :target_id, :enterprise_id, :remote, :detail, :prev_hash, :hash)"), row)
            prev = row["hash"]
    assert upgrade(url) == head()
    journal = AuditJournal(engine, key=AUDIT_KEY)
    journal.record(actor="admin", action="user.add", target_kind="user", target_id="u2", ts_ms=2)
    assert journal.verify().broken_seq == 1  # unkeyed entries hold only when allowed
    check = journal.verify(allow_legacy=True)
    assert check.ok and (check.entries, check.legacy) == (3, 2)
    with engine.begin() as conn:  # an edit of an old entry still shows
        conn.exec_driver_sql("DROP TRIGGER audit_log_no_update")
        conn.exec_driver_sql("UPDATE audit_log SET actor = 'x' WHERE seq = 1")
    assert journal.verify(allow_legacy=True).broken_seq == 1


def test_cli_verify_exits_1_naming_the_first_broken_entry(journal: AuditJournal, monkeypatch) -> None:
    runner = CliRunner()
    db = str(journal.engine.url)
    monkeypatch.setenv(AUDIT_KEY_ENV, AUDIT_KEY.decode())
    intact = runner.invoke(cli, ["audit", "verify", "--db", db])
    assert intact.exit_code == 0 and "intact: 3 entries" in intact.output
    wrong_key = runner.invoke(cli, ["audit", "verify", "--db", db], env={AUDIT_KEY_ENV: "another-key-" + "x" * 32})
    assert wrong_key.exit_code == 1 and "broken at entry 1" in wrong_key.output
    rewrite_from(journal.engine, 2, actor="mallory")
    broken = runner.invoke(cli, ["audit", "verify", "--db", db])
    assert broken.exit_code == 1 and "broken at entry 2" in broken.output and "HMAC" in broken.output
    monkeypatch.delenv(AUDIT_KEY_ENV)
    missing = runner.invoke(cli, ["audit", "verify", "--db", db])
    assert missing.exit_code == 2 and AUDIT_KEY_ENV in missing.output


def test_the_key_comes_from_the_environment_or_a_private_file_never_the_database(tmp_path: Path) -> None:
    key_file = tmp_path / "audit.key"
    key_file.write_text("k" * 40 + "\n")
    key_file.chmod(0o644)
    with pytest.raises(AuditKeyError, match="chmod 600"):
        load_audit_key(SecuritySettings(audit_key_file=str(key_file)), {})
    key_file.chmod(0o600)
    assert load_audit_key(SecuritySettings(audit_key_file=str(key_file)), {}) == b"k" * 40
    assert load_audit_key(SecuritySettings(), {AUDIT_KEY_ENV: "e" * 40}) == b"e" * 40
    with pytest.raises(AuditKeyError, match="at least 32"):
        load_audit_key(SecuritySettings(), {AUDIT_KEY_ENV: "short"})
    with pytest.raises(AuditKeyError, match="no audit key"):
        load_audit_key(SecuritySettings(), {})  # production: refuse rather than write an unverifiable journal
    generated = demo_key(tmp_path / "demo")
    assert demo_key(tmp_path / "demo") == generated and len(generated) >= 32  # the demo keeps its key
    assert os.stat(tmp_path / "demo" / "audit.key").st_mode & 0o777 == 0o600


def test_refusals_and_the_admin_check_are_journaled(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    with TestClient(env.app) as client:
        assert client.get("/api/users", headers=headers(env, "op-e1")).status_code == 403
        assert client.get("/api/escalations/0000000000", headers=headers(env, "op-e1")).status_code == 404
        assert client.get("/api/audit/verify", headers=headers(env, "op-e1")).status_code == 403
        check = client.get("/api/audit/verify", headers=headers(env, "admin"))
        assert check.status_code == 200 and check.json()["ok"] is True
        refused = {(e.actor, e.target_id, e.detail["status"]) for e in env.audit.entries(action="request.refused")}
        assert refused == {("op-e1", "GET /api/users", 403), ("op-e1", "GET /api/escalations/0000000000", 404),
                           ("op-e1", "GET /api/audit/verify", 403)}
        rewrite_from(env.audit.engine, 2, actor="mallory")
        broken = client.get("/api/audit/verify", headers=headers(env, "admin")).json()
        assert (broken["ok"], broken["broken_seq"]) == (False, 2)
