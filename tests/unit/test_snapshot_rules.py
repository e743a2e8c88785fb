"""The re-publish job's pure rules: where a job goes after a chunk, how it shows its progress, and
when `eldercare replay reporting` must re-publish before it rebuilds."""

from datetime import datetime, timezone

from eldercare.replay import registry_residents, short_log_reason
from shared.messaging.snapshots import Step, job_view, next_step


def test_a_full_chunk_carries_on_after_its_last_key():
    assert next_step(0, 2, returned=100, limit=100, last_key="k100") == Step(0, "k100", False)


def test_a_short_chunk_ends_its_source_and_the_next_starts_from_its_first_key():
    assert next_step(0, 2, returned=40, limit=100, last_key="k40") == Step(1, None, False)
    assert next_step(1, 2, returned=0, limit=100, last_key=None) == Step(2, None, True)


def test_a_full_last_chunk_is_not_taken_for_the_end_of_the_table():
    # Exactly `limit` rows may leave more behind: the job asks once more and finds none.
    assert next_step(1, 2, returned=100, limit=100, last_key="k").done is False


def test_job_view_shows_progress_and_the_source_being_walked():
    now = datetime(2026, 12, 2, tzinfo=timezone.utc)
    row = dict(id="j", status="running", sources=["residents", "county_reports"], stage=1, position="e9",
               emitted=750, total=1000, chunks=8, chunk_size=100, requested_by="city", error=None,
               created_at=now, updated_at=now, finished_at=None)
    view = job_view(row)
    assert view["source"] == "county_reports" and view["progress"] == 0.75
    assert job_view({**row, "stage": 2, "status": "succeeded", "total": 0, "emitted": 0})["progress"] == 1.0


def _log(records: int, starts_at_zero: bool = True) -> dict:
    return {"topics": {"eldercare.registry.residents.v1": {"records": records, "starts_at_zero": starts_at_zero},
                       "eldercare.registry.ingest.v1": {"records": 0, "starts_at_zero": True}}}


def test_a_log_with_fewer_resident_records_than_residents_is_short():
    assert short_log_reason(_log(120), residents=120) is None
    assert "holds 3 records for the registry's 120 residents" in short_log_reason(_log(3), residents=120)


def test_a_log_that_no_longer_starts_at_zero_is_short_however_long_it_is():
    assert "no longer starts at offset 0" in short_log_reason(_log(10_000, starts_at_zero=False), residents=120)
    assert "reads no partition" in short_log_reason({"topics": {}}, residents=1)


def test_registry_residents_counts_every_status():
    stats = {"counts": {"city": {"status": {"active": 7, "deceased": 2}}, "410928": {"status": {"active": 7}}}}
    assert registry_residents(stats) == 9


def test_the_fast_snapshot_payload_is_what_the_event_model_gives():
    import uuid
    from datetime import date, datetime, timezone

    from services.registry.handlers import snapshot
    from services.registry.republish import SNAPSHOT_TYPE, SOURCE, snapshot_event_id, snapshot_payload
    from shared.events import make_event
    from shared.events.residents import ResidentRepublished

    job = uuid.uuid4()
    base = {"id": uuid.uuid4(), "county_code": "410928", "name": "王秀英", "birth_date": date(1941, 3, 15),
            "gender": "female", "township": "城关镇", "village": "东街社区", "living_arrangement": "alone",
            "categories": ["dementia", "low_income"], "ability_level": 2, "status": "active", "family_bed": True,
            "version": 3, "home_lat": 35.709512, "home_lon": 115.030641, "family_doctor_contract": False,
            "family_doctor_signed_on": None}
    signed = {**base, "family_doctor_contract": True, "family_doctor_signed_on": date(2025, 6, 1)}
    for row in (base, {**base, "ability_level": None, "categories": [], "status": "deceased", "family_bed": False,
                       "home_lat": None, "home_lon": None},
                signed, {**signed, "family_doctor_signed_on": None}):
        event_id = snapshot_event_id(job, str(row["id"]), row["version"])
        trace = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
        fast = snapshot_payload(row, str(job), event_id, "2026-12-02T07:00:00Z", trace)
        model = make_event(SNAPSHOT_TYPE, SOURCE, ResidentRepublished(resident=snapshot(row), job_id=str(job)),
                           subject=str(row["id"]), countycode="410928", event_id=event_id, traceparent=trace,
                           time=datetime(2026, 12, 2, 7, tzinfo=timezone.utc)).to_json()
        assert fast == model


def test_snapshot_event_ids_are_uuid5_of_job_resident_and_version():
    import uuid

    from services.registry.republish import snapshot_event_id

    job = uuid.uuid4()
    assert snapshot_event_id(job, "r1", 3) == str(uuid.uuid5(job, "r1:3"))
    assert snapshot_event_id(job, "r1", 3) != snapshot_event_id(job, "r1", 4)
