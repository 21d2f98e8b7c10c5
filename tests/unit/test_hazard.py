"""GB 18218-2018 reference data and hand-computed identification/grading cases."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from alarms.hazard import (
    HazardTracker,
    UnknownChemical,
    alpha_for,
    assess,
    hazard_level_from_r,
    live_assessment,
    lookup,
    reference,
    regulatory_assessment,
    tank_levels,
)
from tankwatch.config import load_site
from tankwatch.geometry import mass_t
from tankwatch.records import Quality, ReadingBatch

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "deploy" / "sites" / "demo-park.yaml"

# Typed by hand from /work/shared/reference/regulations.md §1.5 (Q in t, β) — not read from the package data.
TABLE1_FROM_REFERENCE = [
    ("7664-41-7", "氨", 10, 2),
    ("7782-50-5", "氯", 5, 4),
    ("68476-85-7", "液化石油气", 50, 1.5),
    ("86290-81-5", "汽油", 200, None),  # β "1.5 or 1, by W5 class [U]"
    ("67-56-1", "甲醇", 500, 1),
    ("71-43-2", "苯", 50, 1),
    ("108-88-3", "甲苯", 500, 1),
    ("1333-74-0", "氢", 5, 1.5),
    ("74-82-8", "甲烷", 50, 1.5),
    ("8006-14-2", "天然气", 50, 1.5),
    ("7783-06-4", "硫化氢", 5, 5),
    ("75-21-8", "环氧乙烷", 10, 2),
    ("107-13-1", "2-丙烯腈", 50, 1),
    ("100-42-5", "苯乙烯", 500, 1),
    ("64-17-5", "乙醇", 500, 1),
    ("67-64-1", "丙酮", 500, 1),
    ("7647-01-0", "氯化氢(无水)", 20, 3),
    ("7446-09-5", "二氧化硫", 20, 2),
    ("75-44-5", "碳酰氯", 0.3, 20),
    ("7664-39-3", "氟化氢", 1, 5),
    ("74-90-8", "氰化氢", 1, 10),
    ("74-85-1", "乙烯", 50, 1.5),
    ("74-86-2", "乙炔", 1, 1.5),
    ("106-99-0", "1,3-丁二烯", 5, 1.5),
    ("75-01-4", "氯乙烯", 50, 1.5),
    ("115-10-6", "二甲醚", 50, 1.5),
    ("7782-44-7", "氧", 200, 1),
    ("75-56-9", "1,2-环氧丙烷", 10, None),
    ("75-15-0", "二硫化碳", 50, None),
    ("110-82-7", "环己烷", 500, None),
    ("141-78-6", "乙酸乙酯", 500, None),
    ("110-54-3", "正己烷", 500, None),
    ("60-29-7", "乙醚", 10, None),
    ("74-83-9", "溴甲烷", 10, 3),
    ("50-00-0", "甲醛(含量>90%)", 5, None),
    ("26471-62-5", "甲苯二异氰酸酯", 100, None),
    ("624-83-9", "异氰酸甲酯", 0.75, 20),
    ("7697-37-2", "硝酸(含硝酸>70%)", 100, None),
    ("52583-42-3", "发烟硝酸", 20, None),
    ("75-20-7", "电石", 100, None),
]
TABLE2_FROM_REFERENCE = {
    "J1": 5, "J2": 50, "J3": 50, "J4": 50, "J5": 500, "W1.1": 1, "W1.2": 10, "W1.3": 50, "W2": 10, "W3": 150,
    "W4": 50, "W5.1": 10, "W5.2": 50, "W5.3": 1000, "W5.4": 5000, "W6.1": 10, "W6.2": 50, "W7.1": 10, "W7.2": 50,
    "W8": 50, "W9.1": 50, "W9.2": 200, "W10": 200, "W11": 200,
}
TABLE4_FROM_REFERENCE = {
    "J1": 4, "J2": 1, "J3": 2, "J4": 2, "J5": 1, "W1.1": 2, "W1.2": 2, "W1.3": 2, "W2": 1.5, "W3": 1, "W4": 1,
    "W5.1": 1.5, "W5.2": 1, "W5.3": 1, "W5.4": 1, "W6.1": 1.5, "W6.2": 1, "W7.1": 1.5, "W7.2": 1, "W8": 1,
    "W9.1": 1, "W9.2": 1, "W10": 1, "W11": 1,
}
TABLE3_FROM_REFERENCE = {
    "一氧化碳": 2, "二氧化硫": 2, "氨": 2, "环氧乙烷": 2, "氯化氢": 3, "溴甲烷": 3, "氯": 4, "硫化氢": 5,
    "氟化氢": 5, "二氧化氮": 10, "氰化氢": 10, "碳酰氯": 20, "磷化氢": 20, "异氰酸甲酯": 20,
}


@pytest.mark.parametrize(("cas", "name", "q", "beta"), TABLE1_FROM_REFERENCE)
def test_table1_spot_check_against_reference(cas: str, name: str, q: float, beta: float | None) -> None:
    by_cas, by_name = lookup(cas), lookup(name)
    assert by_cas == by_name
    assert by_cas.critical_t == q
    assert by_cas.table == "table1"
    assert by_cas.tag == "C"
    if beta is not None:
        assert by_cas.beta == beta
    else:  # "—" in the reference: derived from Table 4 by the hazard symbol, tagged unconfirmed
        assert by_cas.beta_tag == "U"
        assert by_cas.beta == TABLE4_FROM_REFERENCE[by_cas.symbol]


def test_tables_2_to_6_against_reference() -> None:
    raw = reference().raw
    assert {r["symbol"]: r["critical_t"] for r in raw["table2"]} == TABLE2_FROM_REFERENCE
    assert {r["symbol"]: r["beta"] for r in raw["table4"]} == TABLE4_FROM_REFERENCE
    assert {r["name_zh"]: r["beta"] for r in raw["table3"]} == TABLE3_FROM_REFERENCE
    for symbol, q in TABLE2_FROM_REFERENCE.items():
        assert lookup(symbol).critical_t == q
        assert lookup(symbol).beta == TABLE4_FROM_REFERENCE[symbol]
    assert [(r["level"], r["r_min"]) for r in raw["table6"]] == [(1, 100), (2, 50), (3, 10), (4, None)]


def test_every_row_carries_a_confidence_tag() -> None:
    raw = json.loads(resources.files("alarms").joinpath("data/gb18218.json").read_text(encoding="utf-8"))
    for table in ("table1", "table2", "table3", "table4", "table5", "table6", "not_in_table1"):
        for row in raw[table]:
            assert row["tag"] in ("C", "S", "U"), (table, row)
            if "beta_tag" in row:
                assert row["beta_tag"] in ("C", "S", "U")


@pytest.mark.parametrize(
    ("key", "expected"),
    [("汽油", "汽油"), ("gasoline", "汽油"), ("甲苯", "甲苯"), ("Toluene", "甲苯"), ("甲醇", "甲醇"),
     ("液化石油气", "液化石油气"), ("LPG", "液化石油气"), ("液氯", "氯"), ("氯", "氯"), ("液氨", "氨"),
     ("氨", "氨"), ("氯化氢（无水）", "氯化氢(无水)"), (" w5.3 ", "W5.3"), ("丙烯", "丙烯")],
)
def test_names_aliases_and_symbols(key: str, expected: str) -> None:
    assert lookup(key).key == expected


def test_propylene_resolves_to_w2() -> None:
    propylene = lookup("丙烯")
    assert (propylene.symbol, propylene.critical_t, propylene.beta, propylene.tag) == ("W2", 10, 1.5, "U")


def test_unknown_chemical_names_it() -> None:
    with pytest.raises(UnknownChemical, match="'水银'"):
        assess({"甲苯": 10, "水银": 1}, 0)
    with pytest.raises(UnknownChemical, match="ambiguous.*6484-52-2"):
        lookup("6484-52-2")  # three ammonium-nitrate entries share the CAS


@pytest.mark.parametrize(
    ("people", "alpha"),
    [(0, 0.5), (1, 1.0), (29, 1.0), (30, 1.2), (49, 1.2), (50, 1.5), (99, 1.5), (100, 2.0), (100_000, 2.0)],
)
def test_alpha_bands(people: int, alpha: float) -> None:
    assert alpha_for(people) == alpha


@pytest.mark.parametrize("bad", [-1, 1.5, True, "10"])
def test_alpha_rejects_bad_population(bad: object) -> None:
    with pytest.raises(ValueError, match="exposed_population"):
        alpha_for(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("r", "level"), [(1000, 1), (100, 1), (99.999, 2), (50, 2), (49.99, 3), (10, 3), (9.999, 4), (0.1, 4)]
)
def test_level_from_r(r: float, level: int) -> None:
    assert hazard_level_from_r(r) == level


def test_single_chemical_by_cas_and_name() -> None:
    # 250 t toluene: S = 250/500 = 0.5 → not major, even though R is computed
    a = assess({"108-88-3": 250}, 10)
    assert (a.s, a.r, a.is_major, a.level) == (0.5, 0.5, False, None)
    # exactly Q: major. 500 t toluene, 0 people: R = 0.5 × 1 × 1 = 0.5 → 四级
    b = assess({"甲苯": 500}, 0)
    assert (b.s, b.alpha, b.r, b.is_major, b.level) == (1.0, 0.5, 0.5, True, 4)


def test_mixture_below_each_q_is_major_by_the_sum() -> None:
    # 0.6 Q chlorine + 0.5 Q ammonia: each below its Q, S = 1.1 ≥ 1.
    # R = α(60 people → 1.5) × (4 × 3/5 + 2 × 5/10) = 1.5 × (2.4 + 1.0) = 5.1 → 四级
    a = assess({"液氯": 3, "7664-41-7": 5}, 60)
    assert a.s == pytest.approx(1.1)
    assert a.r == pytest.approx(5.1)
    assert (a.is_major, a.level) == (True, 4)
    terms = {t.chemical.key: (t.q_t, t.ratio, t.weighted) for t in a.terms}
    assert terms == {"氯": (3.0, pytest.approx(0.6), pytest.approx(2.4)), "氨": (5.0, 0.5, 1.0)}


def test_same_chemical_under_two_keys_is_summed() -> None:
    a = assess({"甲醇": 300, "67-56-1": 200, "methanol": 500}, 1)
    assert len(a.terms) == 1
    assert a.terms[0].q_t == 1000 and set(a.terms[0].keys) == {"甲醇", "67-56-1", "methanol"}
    assert (a.s, a.r, a.level) == (2.0, 2.0, 4)


def test_table2_symbol_key() -> None:
    # crude oil stored as W5.3 (Q 1000, β 1): 3000 t, 120 people → R = 2.0 × 3 = 6 → 四级
    a = assess({"W5.3": 3000}, 120)
    assert (a.s, a.r, a.level) == (3.0, 6.0, 4)


@pytest.mark.parametrize(
    ("contents", "people", "r", "level"),
    [
        # R = 100 exactly: α 2.0 × toluene 25,000/500 = 100 → 一级 (the bound belongs to the higher level)
        ({"甲苯": 25_000}, 100, 100.0, 1),
        ({"甲苯": 24_999}, 100, 99.996, 2),
        # R = 50: α 1.0 × β 2 × 250/10 = 50 → 二级
        ({"氨": 250}, 10, 50.0, 2),
        ({"氨": 249.9}, 10, 49.98, 3),
        # R = 10: α 1.2 (30–49 people) × chlorine β 4 × q/5 = 10 → q = 10.41666…; use hydrogen instead:
        # α 1.0 × β 1.5 × q/5 = 10 → q = 33.33…; exact: LPG α 1.0 × 1.5 × q/50 = 10 → q = 333.33…;
        # exact in binary: 苯 α 2.0 × β 1 × 250/50 = 10
        ({"苯": 250}, 500, 10.0, 3),
        ({"苯": 249}, 500, 9.96, 4),
        # R = 100 through α 1.2: 1.2 × 4 × q/5 = 100 → q = 104.1666… (R lands on 100 up to rounding)
        ({"氯": 312.5 / 3}, 40, 100.0, 1),
    ],
)
def test_level_boundaries(contents: dict, people: int, r: float, level: int) -> None:
    a = assess(contents, people)
    assert a.r == pytest.approx(r)
    assert a.level == level


def test_bad_quantity_is_an_error_naming_the_key() -> None:
    for bad in (-1, float("nan"), "lots"):
        with pytest.raises(ValueError, match="甲苯"):
            assess({"甲苯": bad}, 0)  # type: ignore[dict-item]


# ---------------------------------------------------------------------------------------------- demo park


@pytest.fixture(scope="module")
def demo():
    return load_site(DEMO)


def test_demo_regulatory_levels(demo) -> None:
    # Hand computation (design maxima from deploy/sites/demo-park.yaml):
    # HS1: gasoline 3×6800/200 = 102 (β 1.5), toluene 7800/500 = 15.6, methanol 3500/500 = 7;
    #      R = 1.2 × (153 + 15.6 + 7) = 210.72 → 一级
    # HS2: LPG 4×420/50 = 33.6; R = 2.0 × 1.5 × 33.6 = 100.8 → 一级
    # HS3: chlorine 4×62/5 = 49.6; R = 1.5 × 4 × 49.6 = 297.6 → 一级
    # HS4: ammonia 3×520/10 = 156; R = 1.0 × 2 × 156 = 312 → 一级
    # HS5: methanol 4×1650/500 = 13.2; R = 0.5 × 13.2 = 6.6 → 四级
    expected = {"HS1": (124.6, 210.72, 1), "HS2": (33.6, 100.8, 1), "HS3": (49.6, 297.6, 1),
                "HS4": (156.0, 312.0, 1), "HS5": (13.2, 6.6, 4)}
    for _, src in demo.sources():
        h = regulatory_assessment(demo, src)
        assert h.basis == "regulatory"
        a = h.assessment
        assert (round(a.s, 6), round(a.r, 6), a.level) == expected[src.id]


def test_live_assessment_uses_levels_and_keeps_its_label(demo) -> None:
    t501 = next(t for _, _, t in demo.tanks() if t.id == "T501")
    # strapping table: 6 m → 1040 m³ × 0.79 = 821.6 t; the other three tanks have no level → design max 1650
    live = live_assessment(demo, "HS5", {"T501": 6.0})
    assert live.basis == "live" and live.label_en.startswith("live")
    assert not live.complete
    q = {t.tank_id: t.q_t for t in live.tanks}
    assert q["T501"] == pytest.approx(mass_t(t501, 6.0)) == pytest.approx(821.6)
    assert q["T502"] == 1650
    assert live.assessment.s == pytest.approx((821.6 + 3 * 1650) / 500)
    assert regulatory_assessment(demo, "HS5").assessment.s == pytest.approx(13.2)


def test_tank_levels_take_the_highest_good_transmitter(demo) -> None:
    a, b, tt = (demo.sensor_index(s) for s in ("T101-LT-A", "T101-LT-B", "T101-TT"))
    c = demo.sensor_index("T102-LT-A")
    batch = ReadingBatch.from_columns(
        [a, b, tt, c], [1000, 2000, 1500, 1800], [10.0, 10.5, 30.0, 15.9],
        [Quality.GOOD, Quality.GOOD, Quality.GOOD, Quality.COMM_FAIL],
    )
    levels, ts = tank_levels(demo, batch)
    assert levels == {"T101": 10.5} and ts == 2000


def _levels_batch(site, levels: dict[str, float], ts: int, suffix: str = "-LT-A") -> ReadingBatch:
    rows = [(site.sensor_index(f"{tank}{suffix}"), v) for tank, v in levels.items()]
    return ReadingBatch.from_columns([r[0] for r in rows], [ts] * len(rows), [r[1] for r in rows], [0] * len(rows))


def test_tracker_reports_becoming_major_and_rises_only(demo) -> None:
    # HS5 (0 people, α 0.5): four methanol tanks of 0.79 t/m³ on the strapping table.
    tracker = HazardTracker(demo)
    empty = {t: 0.0 for t in ("T501", "T502", "T503", "T504")}
    assert tracker.update(_levels_batch(demo, empty, 1000), 1000) == []  # baseline
    assert tracker.levels["HS5"] is None
    # 2 m in each tank: 4 × 330 × 0.79 = 1042.8 t → S = 2.0856 → major, level 4
    two = {t: 2.0 for t in empty}
    events = tracker.update(_levels_batch(demo, two, 2000), 2000)
    hs5 = [e for e in events if e.source_id == "HS5"]
    assert [(e.kind, e.from_level, e.to_level) for e in hs5] == [("became_major", None, 4)]
    assert tracker.update(_levels_batch(demo, two, 3000), 3000) == []  # no change, no event
    assert tracker.update(_levels_batch(demo, empty, 4000), 4000) == []  # falling is not an event
    again = tracker.update(_levels_batch(demo, two, 5000), 5000)
    assert [e.kind for e in again if e.source_id == "HS5"] == ["became_major"]
    assert again[0].id != hs5[0].id  # ids derive from the cause, including its time


def test_tracker_level_rise_event() -> None:
    site = load_site(ROOT / "tests" / "data" / "sites" / "compliant.yaml")
    tracker = HazardTracker(site)
    v = {"V1": 0.0, "V2": 0.0}
    tracker.update(_levels_batch(site, v, 0, "-LT"), 0)
    # V1 sphere 10 m, 0.61 t/m³; full = 319.4 t of NH3: S ≈ 31.9, R = 1.0 × 2 × 31.9 = 63.9 → 二级
    events = tracker.update(_levels_batch(site, {"V1": 10.0, "V2": 0.0}, 1, "-LT"), 1)
    assert [(e.kind, e.to_level) for e in events] == [("became_major", 2)]
    # both full: R ≈ 127.8 → 一级
    events = tracker.update(_levels_batch(site, {"V1": 10.0, "V2": 10.0}, 2, "-LT"), 2)
    assert [(e.kind, e.from_level, e.to_level) for e in events] == [("level_rose", 2, 1)]
    assert np.isclose(events[0].r, 2 * 2 * mass_t(site.file.enterprises[0].hazard_sources[0].tanks[0], 10.0) / 10)
