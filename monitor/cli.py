"""`newsdesk stream ...` and `newsdesk alerts ...`: parse, call the service, print."""

from __future__ import annotations

import json
import re
import threading
from datetime import timedelta

import click

from monitor.vocabulary import ALERT_STATES, REPLAY_TARGETS, RULE_KINDS
from newsdesk.cli_context import pass_settings
from newsdesk.db import session_scope, upgrade, utcnow
from newsdesk.errors import InvalidInput
from newsdesk.settings import Settings


@click.group("stream", help="Replay and consume the financial text stream.")
def stream_group() -> None:
    pass


@stream_group.command("replay")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--speed", type=float, default=None, help="Pace by message time: 60 = one stream minute per second.")
@click.option("--to", "to", type=click.Choice(REPLAY_TARGETS), default="direct", show_default=True)
@click.option("--limit", type=int, default=None, help="Replay at most N lines.")
@click.option("--source", default="replay", show_default=True, help="Source name for lines without one.")
@click.option("--url", default=None, help="Ingest URL for --to http (default: the configured web host/port).")
@click.option("--token", envvar="NEWSDESK_API_TOKEN", default="", help="API token for --to http.")
@click.option("--skip", type=int, default=0, show_default=True,
              help="Skip the first N lines (continue a replay that gave up; its error names N).")
@click.option("--retry-for", "retry_for", type=float, default=600.0, show_default=True,
              help="Seconds to keep retrying a batch while the target (Redis, database, web) is down.")
@pass_settings
def replay_command(settings: Settings, file: str, speed: float | None, to: str, limit: int | None, source: str,
                   url: str | None, token: str, skip: int, retry_for: float) -> None:
    """Replay a JSONL file (gzip accepted) with text and optional ts, id, source, ticker."""
    from monitor import service
    from monitor.replay import replay_file

    if limit is not None and limit <= 0:
        raise InvalidInput("--limit must be positive")
    if to == "direct":
        settings.ensure_dirs()
        upgrade(settings.database_url)
        with session_scope(settings.database_url) as session:
            if not service.list_rules(session):
                service.ensure_default_rules(session)
                service.ensure_default_watchlist(session)
    if retry_for < 0:
        raise InvalidInput("--retry-for must not be negative")
    report = replay_file(settings, file, speed=speed, to=to, limit=limit, source=source, url=url,
                         token=token, skip=skip, retry_for_s=retry_for)
    click.echo(f"Replayed {report}")
    if report.error:  # the lines before it are kept; say why the rest is not, in one line
        raise InvalidInput(report.error, {"path": file})


@stream_group.command("consume")
@click.option("--claim-idle-ms", type=int, default=30_000, show_default=True,
              help="Claim other consumers' entries pending longer than this.")
@pass_settings
def consume_command(settings: Settings, claim_idle_ms: int) -> None:
    """Consume the Redis stream in the foreground (what `newsdesk worker` does in a thread) until Ctrl-C."""
    import signal

    from monitor.jobs import classifier_for
    from monitor.stream import Consumer

    settings.ensure_dirs()
    upgrade(settings.database_url)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    consumer = Consumer(settings, lambda: classifier_for(settings), stop, claim_idle_ms=claim_idle_ms)
    click.echo(f"Consuming {settings.monitor.stream_name} as {consumer.name} (Ctrl-C to stop)")
    consumer.run()
    click.echo(f"Stopped after {consumer.processed} messages.")


@click.group("alerts", help="List and act on alerts.")
def alerts_group() -> None:
    pass


@alerts_group.command("list")
@click.option("--state", type=click.Choice(ALERT_STATES), default=None)
@click.option("--ticker", default=None)
@click.option("--topic", default=None, help="Only alerts of topic-scoped rules for this topic.")
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON document instead of a table.")
@pass_settings
def list_command(settings: Settings, state: str | None, ticker: str | None, topic: str | None, limit: int,
                 as_json: bool) -> None:
    """List alerts, most recent first."""
    from monitor import service

    with session_scope(settings.database_url) as session:
        alerts, total = service.list_alerts(session, state=state, ticker=ticker, topic=topic, limit=limit)
    if as_json:
        click.echo(json.dumps({"total": total, "alerts": [a.to_dict() for a in alerts]}, indent=2))
        return
    click.echo(f"{'ID':>5} {'STATE':9} {'TICKER':7} {'TOPIC':20} {'RULE':26} {'STARTED (UTC, stream time)':26} "
               "MARKS / SUMMARY")
    for a in alerts:
        marks = ("ack " if a.acknowledged_at else "") + ("silenced " if a.silenced else "")
        click.echo(f"{a.id:>5} {a.state:9} {a.ticker:7} {(a.topic or '-')[:20]:20} {a.rule_name[:26]:26} "
                   f"{a.started_at:%Y-%m-%d %H:%M:%S}  {marks}{a.summary}")
    click.echo(f"{len(alerts)} of {total} alerts")


@alerts_group.command("show")
@click.argument("alert_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@pass_settings
def show_command(settings: Settings, alert_id: int, as_json: bool) -> None:
    """Show one alert with its evidence messages."""
    from monitor import service

    with session_scope(settings.database_url) as session:
        alert = service.get_alert(session, alert_id)
    if as_json:
        doc = alert.to_dict()
        doc["evidence"] = [{"id": m.id, "ts": m.ts.isoformat(), "label": m.label, "topic": m.topic,
                            "topic_score": m.topic_score, "text": m.text} for m in alert.evidence]
        doc["notifications"] = json.loads(json.dumps(alert.notifications, default=str))
        click.echo(json.dumps(doc, indent=2, default=str))
        return
    where = f"{alert.ticker} within {alert.topic}" if alert.topic else alert.ticker
    click.echo(f"Alert {alert.id} [{alert.state}] {alert.rule_name} / {where}: {alert.summary}")
    for m in alert.evidence:
        click.echo(f"  {m.ts:%Y-%m-%d %H:%M} {m.label or '-':8} {(m.topic or '-')[:24]:24} {m.text[:100]!r}")


@alerts_group.command("ack")
@click.argument("alert_id", type=int)
@click.option("--note", default="", help="Why, or what is being done.")
@click.option("--by", "actor", default="cli", show_default=True, help="Who acknowledges.")
@pass_settings
def ack_command(settings: Settings, alert_id: int, note: str, actor: str) -> None:
    """Acknowledge an alert: it stays firing but is no longer re-notified."""
    from monitor import service

    with session_scope(settings.database_url) as session:
        alert = service.acknowledge_alert(session, alert_id, actor, note)
    click.echo(f"Acknowledged alert {alert.id} ({alert.ticker}, {alert.rule_name}) as {actor}")


def _duration(text: str) -> timedelta:
    match = re.fullmatch(r"(\d+)([smhd])", text.strip())
    if not match:
        raise InvalidInput(f"duration {text!r} must look like 30m, 2h or 1d")
    return timedelta(seconds=int(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)])


@alerts_group.command("silence")
@click.option("--ticker", default=None)
@click.option("--topic", default=None, help="Alerts of topic-scoped rules for this topic.")
@click.option("--rule-id", type=int, default=None)
@click.option("--kind", type=click.Choice(RULE_KINDS), default=None)
@click.option("--duration", default="2h", show_default=True, help="e.g. 30m, 2h, 1d")
@click.option("--comment", default="")
@click.option("--by", "actor", default="cli", show_default=True)
@pass_settings
def silence_command(settings: Settings, ticker: str | None, topic: str | None, rule_id: int | None, kind: str | None,
                    duration: str, comment: str, actor: str) -> None:
    """Silence matching alerts for a while (at least one matcher)."""
    from monitor import service

    matchers = {k: v for k, v in (("ticker", ticker), ("topic", topic), ("rule_id", rule_id), ("kind", kind))
                if v is not None}
    with session_scope(settings.database_url) as session:
        silence = service.create_silence(session, matchers, utcnow() + _duration(duration), actor, comment)
        what = service.describe_matchers(session, silence.matchers)
    click.echo(f"Silence {silence.id} on {what} until {silence.ends_at:%Y-%m-%d %H:%M} UTC")


@alerts_group.command("notifications")
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--retry", "retry", is_flag=True, help="Send the undelivered notifications again now.")
@click.option("--id", "ids", type=int, multiple=True, help="With --retry: only this notification (repeatable).")
@pass_settings
def notifications_command(settings: Settings, limit: int, retry: bool, ids: tuple[int, ...]) -> None:
    """List webhook notifications not delivered yet, or queue them for another try with --retry."""
    from monitor import service

    if ids and not retry:
        raise InvalidInput("--id goes with --retry")
    with session_scope(settings.database_url) as session:
        if retry:
            n = service.retry_notifications(session, list(ids) or None, actor="cli")
            click.echo(f"{n} notifications queued for another try (the worker sends them within seconds)")
            return
        items, total = service.undelivered_notifications(session, limit)
    for n in items:
        click.echo(f"{n['id']:>5} {n['status']:8} alert {n['alert_id']:<5} {n['event']:9} {n['attempts']:>3} tries "
                   f"{n['url'][:40]} {n['last_error'][:60]!r}")
    click.echo(f"{len(items)} of {total} undelivered notifications")


@alerts_group.command("rules")
@click.option("--rule", "rule_id", type=int, default=None, help="Change this rule's topic scope (with --topic).")
@click.option("--topic", "topics", multiple=True,
              help="Scope --rule to this topic (repeat for several; one alert per topic).")
@click.option("--all-topics", is_flag=True, help="Remove --rule's topic scope: every message counts again.")
@pass_settings
def rules_command(settings: Settings, rule_id: int | None, topics: tuple[str, ...], all_topics: bool) -> None:
    """List the alert rules with their ticker and topic scope, or change one rule's topic scope."""
    from monitor import service

    if (topics or all_topics) and rule_id is None:
        raise InvalidInput("--topic and --all-topics need --rule ID")
    if topics and all_topics:
        raise InvalidInput("give --topic or --all-topics, not both")
    with session_scope(settings.database_url) as session:
        if rule_id is not None:
            if not (topics or all_topics):
                raise InvalidInput("--rule needs --topic T (repeatable) or --all-topics")
            rule = service.update_rule(session, rule_id, topics=list(topics))
            click.echo(f"Rule {rule.id} ({rule.name}) scoped to " +
                       ("; ".join(rule.topics) if rule.topics else "every topic"))
            return
        rules = service.list_rules(session)
    for r in rules:
        scope = ",".join(r.tickers) or "all tickers"
        topic_scope = "; ".join(r.topics) or "all topics"
        click.echo(f"{r.id:>3} {'on ' if r.enabled else 'off'} {r.kind:15} {r.name} [{scope}] [{topic_scope}] "
                   f"{json.dumps(r.params)}")


@stream_group.command("dead-letters")
@click.option("--limit", type=int, default=20, show_default=True)
@click.option("--replay", "replay_id", type=int, default=None, help="Ingest this dead letter again.")
@click.option("--payload", default=None,
              help="With --replay: ingest this raw line instead (the edited payload; the received one is kept).")
@click.option("--dismiss", "dismiss_id", type=int, default=None, help="Close this dead letter without replaying it.")
@click.option("--note", default="", help="With --dismiss: why (added to its reason).")
@click.option("--replay-all", is_flag=True, help="Ingest every open dead letter again (after an outage or a fix).")
@click.option("--reason", default=None, help="With --replay-all: only dead letters whose reason contains this.")
@click.option("--stage", type=click.Choice(["validate", "classify", "process"]), default=None,
              help="With --replay-all: only dead letters of this stage.")
@pass_settings
def dead_letters_command(settings: Settings, limit: int, replay_id: int | None, payload: str | None,
                         dismiss_id: int | None, note: str, replay_all: bool, reason: str | None,
                         stage: str | None) -> None:
    """List dead letters (newest first), replay one with --replay ID [--payload LINE], dismiss one with
    --dismiss ID, or replay all open ones with --replay-all."""
    from monitor import service
    from monitor.jobs import classifier_for

    if sum((replay_all, replay_id is not None, dismiss_id is not None)) > 1:
        raise InvalidInput("use one of --replay ID, --dismiss ID or --replay-all")
    if payload is not None and replay_id is None:
        raise InvalidInput("--payload goes with --replay ID")
    if (reason or stage) and not replay_all:
        raise InvalidInput("--reason and --stage go with --replay-all")
    with session_scope(settings.database_url) as session:
        if replay_id is not None:
            info = service.replay_dead_letter(session, classifier_for(settings), replay_id, payload=payload,
                                              actor="cli")
            click.echo(f"Dead letter {info.id} replayed as message {info.message_id}")
            return
        if dismiss_id is not None:
            info = service.dismiss_dead_letter(session, dismiss_id, "cli", note=note)
            click.echo(f"Dead letter {info.id} dismissed")
            return
        if replay_all:
            out = service.replay_dead_letters(session, classifier_for(settings), reason=reason, stage=stage)
            click.echo(f"Replayed {out['replayed']} dead letters ({out['still_invalid']} still invalid, left open)")
            return
        letters, total = service.list_dead_letters(session, limit)
    for d in letters:
        click.echo(f"{d.id:>5} {d.status:8} {d.stage:8} {d.created_at:%Y-%m-%d %H:%M} {d.reason[:70]!r} "
                   f"{d.payload[:50]!r}")
    click.echo(f"{len(letters)} of {total} dead letters")
