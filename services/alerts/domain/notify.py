"""Emergency-contact notification: who is called next, when an attempt is retried, and what the
message and the timeline say (the phone number only ever masked there). Pure: no I/O."""

from __future__ import annotations

from shared.idcard import mask_phone

MAX_RETRY_S = 300.0

CAUSE_WORDS = {
    "sos": "紧急呼叫(SOS)", "fall": "跌倒", "geofence_exit": "离开安全区域", "no_activity": "长时间无活动",
    "heart_rate_high": "心率过高", "heart_rate_low": "心率过低", "spo2_low": "血氧过低",
    "irregular_heart_rhythm": "心律不齐",
}


def retry_delay(attempts: int, max_attempts: int, first_retry_s: float) -> float | None:
    """Seconds before the next attempt after `attempts` failures; None: this contact has failed."""
    if attempts >= max_attempts:
        return None
    return min(MAX_RETRY_S, first_retry_s * 2 ** (attempts - 1))


def label(name: str, phone: str) -> str:
    """王建国 138****1234: who was called, as the timeline and every event show it."""
    return f"{name} {mask_phone(phone)}"


def message(resident_name: str | None, village: str | None, cause: str) -> str:
    """The text the contact receives (Chinese: the families are local)."""
    who = resident_name or "您的家人"
    where = f"（{village}）" if village else ""
    return (f"【智慧养老平台】{who}{where}触发“{CAUSE_WORDS.get(cause, cause)}”告警，值班人员正在处置，"
            "请尽快与老人联系或回电县区养老服务值班室。")
