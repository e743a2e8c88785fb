"""The AsyncAPI 3.0 document of every topic and event type, built from the Pydantic models."""

from __future__ import annotations

from typing import Any

from shared.events import EVENT_DATA_MODELS
from shared.events.envelope import CloudEvent
from shared.messaging.topics import ALL_TOPICS


def _message_name(event_type: str) -> str:
    return event_type.removeprefix("eldercare.").replace(".", "_")


def build_asyncapi() -> dict[str, Any]:
    """An AsyncAPI 3.0 document: channels per topic (and DLQ), one message per event type."""
    schemas: dict[str, Any] = {"CloudEvent": CloudEvent.model_json_schema(ref_template="#/components/schemas/{model}")}
    messages: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for event_type, model in sorted(EVENT_DATA_MODELS.items()):
        name = _message_name(event_type)
        data_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for sub_name, sub in data_schema.pop("$defs", {}).items():
            schemas.setdefault(sub_name, sub)
        schemas[name] = data_schema
        messages[name] = {
            "name": event_type,
            "title": event_type,
            "summary": (model.__doc__ or "").strip().splitlines()[0] if model.__doc__ else event_type,
            "contentType": "application/cloudevents+json",
            "payload": {
                "allOf": [
                    {"$ref": "#/components/schemas/CloudEvent"},
                    {
                        "type": "object",
                        "properties": {
                            "type": {"const": event_type},
                            "data": {"$ref": f"#/components/schemas/{name}"},
                        },
                    },
                ]
            },
        }
    for topic in ALL_TOPICS:
        key = topic.name.replace(".", "_")
        topic_messages = {
            _message_name(t): {"$ref": f"#/components/messages/{_message_name(t)}"}
            for t in sorted(EVENT_DATA_MODELS)
            if t.startswith(topic.event_prefixes)
        }
        channels[key] = {"address": topic.name, "description": topic.description, "messages": topic_messages}
        channels[key + "_dlq"] = {
            "address": topic.dlq,
            "description": f"Dead letters of {topic.name}: the original record, with headers "
            "dlq-reason, dlq-consumer, dlq-source-topic, dlq-source-partition, dlq-source-offset.",
        }
        operations[f"publish_{key}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{key}"},
            "summary": f"Published by {topic.owner} through its transactional outbox.",
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Smart elder-care platform events",
            "version": "1.0.0",
            "description": "CloudEvents 1.0 (JSON structured mode) on Kafka. The record key is the "
            "event's subject; `id` is the idempotency key; extensions countycode and traceparent.",
        },
        "defaultContentType": "application/cloudevents+json",
        "channels": channels,
        "operations": operations,
        "components": {"schemas": schemas, "messages": messages},
    }
