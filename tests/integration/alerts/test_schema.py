"""The SQLModel tables in services/alerts/store.py describe exactly what the migrations create."""

from __future__ import annotations

from services.alerts import store


async def test_store_models_match_the_migrated_schema(alerts):
    runtime = alerts.app.state.runtime
    models = [store.Resident, store.Signal, store.VitalState, store.RuleVersion, store.Alert, store.AlertStep,
              store.SilenceRow, store.Subscription, store.Delivery, store.Order, store.Geofence, store.GeofenceState, store.Contact,
              store.Notification, store.AuditEntry]
    async with runtime.db.connection() as conn:
        for model in models:
            table = model.__tablename__
            rows = await conn.fetch("SELECT column_name, is_nullable FROM information_schema.columns "
                                    "WHERE table_schema = 'alerts' AND table_name = $1", table)
            migrated = {r["column_name"] for r in rows}
            described = set(model.__table__.columns.keys())
            assert migrated == described, f"{table}: {migrated ^ described}"
