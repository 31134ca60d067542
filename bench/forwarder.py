"""The floor: a minimal ASGI app that forwards each webhook to Slack without storing anything."""

from __future__ import annotations

import os

import aiohttp
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

TARGET = os.environ["FORWARD_TO"]
session: aiohttp.ClientSession | None = None


async def webhook(request: Request) -> PlainTextResponse:
    global session
    if session is None:
        session = aiohttp.ClientSession()
    body = await request.json()
    alert = body["alerts"][0]
    text = f"[{body['status'].upper()}] {alert['labels']['alertname']}"
    async with session.post(TARGET, json={"text": text}) as answer:
        await answer.read()
    return PlainTextResponse("ok")


async def ready(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ready")


app = Starlette(routes=[Route("/webhook", webhook, methods=["POST"]), Route("/", ready, methods=["GET"])])
