"""The duty operator's console at `/` and its static files (no CDN: everything is served here)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse

from shared.problems import NotFound

router = APIRouter(tags=["console"])
STATIC = Path(__file__).resolve().parent.parent / "static"


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def console() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")


@router.get("/static/{name}", include_in_schema=False)
async def static_file(name: str) -> FileResponse:
    path = (STATIC / name).resolve()
    if path.parent != STATIC or not path.is_file():
        raise NotFound("No such file.", field="name")
    return FileResponse(path)
