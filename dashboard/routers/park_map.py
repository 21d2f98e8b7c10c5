"""The park map's layers: base tiles (none by default), the georeferenced plan image and the zones of the site file.

A tile url with ``{key}`` gets its key from the environment variable the site file names (天地图's ``tk``); the
key never sits in the site file. The plan image is served behind the login like every other route.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse
from pydantic import BaseModel

from dashboard.routers.deps import AUTH_RESPONSES, ErrorOut, SiteDep
from tankwatch import metrics
from tankwatch.config import Site
from tankwatch.site import Location, MapTiles, MapZone

router = APIRouter(tags=["map"])

IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp"}


class TilesOut(BaseModel):
    """A tile source ready for the page: ``{key}`` filled in."""

    url: str
    subdomains: str
    attribution: str
    min_zoom: int
    max_zoom: int
    datum: Literal["wgs84", "gcj02"]


class PlanOut(BaseModel):
    """Where the plan image lies, and where to fetch it."""

    url: str
    south_west: Location
    north_east: Location
    opacity: float


class MapOut(BaseModel):
    """Everything the map draws besides the site's enterprises and hazard sources."""

    tiles: TilesOut | None
    tiles_problem: str | None  # why configured tiles are not offered (their key is not set)
    plan: PlanOut | None
    zones: list[MapZone]


def tile_url(tiles: MapTiles) -> tuple[str | None, str | None]:
    """The tile url with its key put in, or None and why not."""
    if tiles.key_env is None:
        return tiles.url, None
    key = os.environ.get(tiles.key_env, "")
    if not key:
        return None, f"the tile source needs its key in the environment variable {tiles.key_env}, which is not set"
    return tiles.url.replace("{key}", key), None


def tile_origins(site: Site) -> list[str]:
    """The origins the page loads tiles from (for its Content-Security-Policy); none without tiles."""
    tiles = site.file.park.map.tiles
    if tiles is None:
        return []
    parts = urlsplit(tiles.url)
    hosts = [parts.netloc.replace("{s}", s) for s in tiles.subdomains] if "{s}" in parts.netloc else [parts.netloc]
    return [f"{parts.scheme}://{host}" for host in hosts]


def plan_path(site: Site) -> Path | None:
    """The plan image file, relative to the site file, or None without a plan."""
    plan = site.file.park.map.plan
    return None if plan is None else (Path(site.path).parent / plan.image).resolve()


@router.get("/api/map", response_model=MapOut, responses=AUTH_RESPONSES)
def park_map(site: SiteDep) -> MapOut:
    """The map's base tiles (when configured), plan image and zones."""
    layers = site.file.park.map
    tiles, problem = None, None
    if layers.tiles is not None:
        url, problem = tile_url(layers.tiles)
        if url is not None:
            tiles = TilesOut(url=url, **layers.tiles.model_dump(include={"subdomains", "attribution", "min_zoom",
                                                                          "max_zoom", "datum"}))
    plan = None
    if layers.plan is not None:
        plan = PlanOut(url="api/map/plan", south_west=layers.plan.south_west, north_east=layers.plan.north_east,
                       opacity=layers.plan.opacity)
    return MapOut(tiles=tiles, tiles_problem=problem, plan=plan, zones=layers.zones)


@router.get(
    "/api/map/plan",
    response_class=FileResponse,
    responses={**AUTH_RESPONSES, 200: {"content": {t: {} for t in IMAGE_TYPES.values()}},
               404: {"model": ErrorOut, "description": "No plan image configured, or its file is missing"}},
)
def plan_image(site: SiteDep) -> FileResponse:
    """The park plan image the site file names."""
    path = plan_path(site)
    if path is None:
        raise HTTPException(404, "the site file configures no plan image (park.map.plan)")
    media = IMAGE_TYPES.get(path.suffix.lower())
    if media is None or not path.is_file():
        metrics.INPUT_REJECTED.labels("dashboard", "plan_image_missing").inc()
        raise HTTPException(404, f"the plan image {site.file.park.map.plan.image!r} is not a readable PNG, JPEG or "
                                 "WebP file next to the site file")
    return FileResponse(path, media_type=media)
