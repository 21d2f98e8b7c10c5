"""The regulator's routines and the evidence recording a site enables, composed on an instance's stores (a running
instance and a scenario with routines wire them alike)."""

from __future__ import annotations

from alarms.baobao import BaobaoStore, BaobaoWatch
from alarms.bulletin_watch import BulletinWatch
from alarms.bulletins import BulletinStore, bulletin_sources
from alarms.commitments import CommitmentRoutine, CommitmentStore, CommitmentWatch
from alarms.compliance import LatestView
from alarms.credibility import EvidenceStore
from alarms.duty import DutyStore, DutyWatch
from alarms.escalation import EscalationEngine
from alarms.grading import GradingStage
from alarms.hazard import regulatory_levels
from alarms.patrols import PatrolStore, PatrolWatch
from alarms.routines import Routine
from alarms.supervision import ClassStore, SupervisionWatch, make_sources
from tankwatch.config import Site
from tankwatch.stores.events import EventStore
from tankwatch.stores.timeseries import TimeSeriesStore

EVIDENCE_EVERY_S = 10.0  # how often the evidence recorder looks for violations (tankwatch default)


def site_routines(
    site: Site, events: EventStore, evidence: EvidenceStore, escalation: EscalationEngine, grading: GradingStage,
    timeseries: TimeSeriesStore,
) -> list[Routine]:
    """The regulator's routines the site enables (commitments, duty watch, 包保 duties, patrols, supervision
    classes, bulletins) on the instance's stores."""
    routines, engine = site.file.routines, events.engine
    latest = lambda: LatestView(site, grading.latest())  # noqa: E731 - the routines' view of the live readings
    found: list[Routine] = []
    if routines.commitment.enabled:
        watch = CommitmentWatch(site, routines.commitment, routines.timezone)
        found.append(CommitmentRoutine(watch, CommitmentStore(engine), latest))
    if routines.duty.enabled:
        found.append(DutyWatch(site, routines.duty, routines.timezone, DutyStore(engine)))
    if routines.baobao.enabled:
        found.append(BaobaoWatch(site, routines.baobao, routines.timezone, BaobaoStore(engine)))
    if routines.patrol.enabled:
        found.append(PatrolWatch(site, PatrolStore(engine), routines.patrol.check_every_s))
    if routines.supervision.enabled:
        sources = make_sources(events, escalation.store, evidence, PatrolStore(engine), grading)
        classes = ClassStore(engine)
        found.append(SupervisionWatch(site, routines.supervision, regulatory_levels(site), sources, classes))
    if routines.bulletin.enabled:
        inputs = bulletin_sources(timeseries, events, evidence, PatrolStore(engine))
        found.append(BulletinWatch(site, routines.bulletin, routines.timezone, inputs, BulletinStore(engine)))
    return found
