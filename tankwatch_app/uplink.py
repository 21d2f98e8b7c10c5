"""Compose the uplink stage from the site's ``uplink:`` section: codes, credentials from the environment, an outbox
and a sender per target, hazard ratings and alarm setpoints from the alarm stage."""

from __future__ import annotations

import logging
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path

from alarms.escalation import Disposition, Escalation
from alarms.hazard import UnknownChemical, regulatory_assessment
from alarms.rules import compile_rules
from tankwatch.bus import Bus
from tankwatch.clock import Clock
from tankwatch.config import Site
from tankwatch.site import UplinkTarget
from tiers.coding import CodingError, SiteCodes
from tiers.credentials import CredentialsError, credentials_from_env
from tiers.outbound import AlarmClosure, HazardRating, Setpoints
from tiers.outbound import Disposition as ClosureDisposition
from tiers.outbox import Outbox
from tiers.sender import SenderSettings, UplinkSender
from tiers.sizing import queue_bound_bytes
from tiers.transports import HttpTransport, TcpTransport, Transport
from tiers.uplink import FindingsSince, TargetLink, UplinkStage

log = logging.getLogger(__name__)

# The alarm core's condition → the platform's setpoint column (gas first/second level as H/HH, O₂ as L/H).
SETPOINT_OF_CONDITION = {"LL": "ll", "L": "l", "H": "h", "HH": "hh", "GAS1": "h", "GAS2": "hh", "O2_LOW": "l",
                         "O2_HIGH": "h"}


class UplinkConfigError(ValueError):
    """The uplink cannot start as configured (names the setting or environment variable)."""


def tankwatch_version() -> str:
    """The installed tankwatch version, for heartbeats."""
    try:
        return package_version("tankwatch")
    except PackageNotFoundError:
        return "dev"


def hazard_ratings(site: Site) -> dict[str, HazardRating]:
    """GB 18218 level and R of every hazard source at design maximum; unknown chemicals leave a source unrated."""
    out = {}
    for _, source in site.sources():
        try:
            assessment = regulatory_assessment(site, source).assessment
        except UnknownChemical as exc:
            log.warning("uplink: hazard source %s sent without R: %s", source.id, exc)
            continue
        out[source.id] = HazardRating(assessment.level, assessment.r)
    return out


def alarm_setpoints(site: Site) -> dict[str, Setpoints]:
    """Every sensor's setpoints as the alarm core compiled them (gas detectors get the standard's defaults)."""
    rules = compile_rules(site)
    out = {}
    for info in site.sensors:
        values = {SETPOINT_OF_CONDITION[c]: s["setpoint"] for c, s in rules.for_sensor(info.sensor.id).items()
                  if c in SETPOINT_OF_CONDITION}
        out[info.sensor.id] = Setpoints(**values)
    return out


def closure_of(escalation: Escalation, dispositions: list[Disposition]) -> AlarmClosure:
    """A regulator's close (消警) of an escalated alarm, as the uplink sends it."""
    labels = escalation.labels
    assert escalation.closed_ms is not None and escalation.closed_by and escalation.close_reason  # closed
    return AlarmClosure(
        occurrence_id=labels["occurrence_id"], sensor_id=labels["sensor"], condition=labels["condition"],
        priority=labels["priority"], raised_ms=escalation.raised_ms, closed_ms=escalation.closed_ms,
        closed_by=escalation.closed_by, reason=escalation.close_reason, note=escalation.close_note,
        dispositions=tuple(ClosureDisposition(d.ts_ms, d.login, d.level, d.text) for d in dispositions),
    )


def _transport(target: UplinkTarget) -> Transport:
    if target.transport == "http":
        assert target.url is not None  # validated with the site
        return HttpTransport(target.url, target.ack_timeout_s)
    assert target.host is not None and target.port is not None
    return TcpTransport(target.host, target.port, target.ack_timeout_s)


def build_uplink(site: Site, bus: Bus, clock: Clock, data_dir: Path, findings: FindingsSince | None = None
                 ) -> UplinkStage:
    """The uplink stage of a site with an ``uplink:`` section (UplinkConfigError when it cannot start); ``findings``:
    the routine findings on record, for targets that take EVIDENCE."""
    settings = site.file.uplink
    assert settings is not None
    try:
        codes = SiteCodes.build(site, settings.coding)
    except CodingError as exc:
        raise UplinkConfigError(str(exc)) from None
    links = []
    for i, target in enumerate(settings.targets):
        try:
            creds = credentials_from_env(f"uplink.targets[{i}]", target.app_id_env, target.key_env,
                                         target.encryption, target.iv_env)
        except CredentialsError as exc:
            raise UplinkConfigError(str(exc)) from None
        path = Path(target.queue_file) if target.queue_file else data_dir / "uplink" / f"{target.id}.db"
        outbox = Outbox(path, queue_bound_bytes(site, codes, target), target.id)
        timing = SenderSettings(ack_timeout_s=target.ack_timeout_s, backoff_initial_s=target.backoff_initial_s,
                                backoff_max_s=target.backoff_max_s, max_in_flight=target.max_in_flight,
                                drain_per_s=target.drain_per_s)
        sender = UplinkSender(target.id, outbox, _transport(target), creds,
                              target.district_code or settings.coding.district_code, clock, timing)
        links.append(TargetLink(target.id, frozenset(target.services), target.periods, outbox, sender,
                                target.max_records_per_message))
    return UplinkStage(site, codes, bus, clock, links, version=tankwatch_version(), ratings=hazard_ratings(site),
                       setpoints=alarm_setpoints(site), findings=findings)
