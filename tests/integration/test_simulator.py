"""The county platform simulator posting to the real registry (database and broker real)."""

from __future__ import annotations

from eldercare.simulator import CountySimulator, facility_inventory, training_history
from shared.regions import load_counties
from tests.integration.test_registry_ingest import a_resident


async def test_the_simulator_posts_every_county_through_the_gateway_and_a_restart_adds_no_training(
        registry, settings, puyang):
    resident, _ = await a_resident(registry, puyang)
    simulator = CountySimulator(settings, registry, events_per_s=200, seed=42)
    await simulator.start()
    expected = sum(len(facility_inventory(c)) + len(training_history(c)) for c in load_counties().values())
    assert (simulator.accepted, simulator.rejected) == (expected, 0)
    assert resident in simulator.residents["410928"]
    before = simulator.accepted
    for _ in range(3):
        await simulator.tick()
    assert simulator.rejected == 0 and simulator.accepted > before

    again = CountySimulator(settings, registry, events_per_s=0, seed=42)
    await again.start()
    history_ids = {e["id"] for c in load_counties().values() for e in training_history(c)}
    async with registry.app.state.runtime.db.connection() as conn:
        stored = await conn.fetchval("SELECT count(*) FROM ingest_events WHERE event_id = ANY($1::text[])",
                                     list(history_ids))
    assert stored == len(history_ids)
    # Facility reports are posted again (the latest wins); the training history is all duplicates.
    assert again.rejected == 0
    assert again.accepted == sum(len(facility_inventory(c)) for c in load_counties().values())
