"""A local GitLab merge request notes API (v4), for the CI example that posts `relay routes diff` as one note.

`GET /api/v4/user` is the token's own user (a project bot),
`GET /api/v4/projects/:id/merge_requests/:iid/notes` lists notes (with
`sort`/`per_page`, as GitLab), `POST` adds one, `PUT .../notes/:note_id` edits one;
bodies arrive form-encoded (curl --data-urlencode) or as JSON. A request without
the project token's `PRIVATE-TOKEN` header gets GitLab's 401.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tests.fakes import FakeHttpServer

NOTES = "/api/v4/projects/{project}/merge_requests/{iid}/notes"
BOT = {"id": 1, "username": "project_42_bot"}  # the project access token's user


class GitLabNotesServer(FakeHttpServer):
    def __init__(self, token: str, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self.token = token
        self.notes: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._next_id = 100

    async def __aenter__(self) -> GitLabNotesServer:
        await self.start()
        return self

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/api/v4/user", self._user)
        app.router.add_get(NOTES, self._list)
        app.router.add_post(NOTES, self._create)
        app.router.add_put(NOTES + "/{note}", self._edit)

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/v4"

    def add_note(self, project: str, iid: str, body: str, author: dict[str, Any]) -> int:
        self._next_id += 1
        self.notes.setdefault((project, iid), []).append({"id": self._next_id, "body": body, "author": author,
                                                          "system": False})
        return self._next_id

    async def _authorised(self, request: web.Request, body: Any) -> web.Response | None:
        if request.headers.get("PRIVATE-TOKEN") != self.token:
            await self.record(request, body, 401)
            return web.json_response({"message": "401 Unauthorized"}, status=401)
        return None

    async def _body(self, request: web.Request) -> dict[str, Any]:
        if request.content_type == "application/json":
            return dict(await request.json())
        return dict(await request.post())

    async def _user(self, request: web.Request) -> web.Response:
        refused = await self._authorised(request, None)
        if refused is not None:
            return refused
        await self.record(request, None, 200)
        return web.json_response(BOT)

    async def _list(self, request: web.Request) -> web.Response:
        refused = await self._authorised(request, None)
        if refused is not None:
            return refused
        notes = list(self.notes.get((request.match_info["project"], request.match_info["iid"]), []))
        if request.query.get("sort", "desc") == "desc":
            notes.reverse()
        await self.record(request, None, 200)
        return web.json_response(notes[: int(request.query.get("per_page", "20"))])

    async def _create(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        refused = await self._authorised(request, body)
        if refused is not None:
            return refused
        note = self.add_note(request.match_info["project"], request.match_info["iid"], str(body["body"]), BOT)
        await self.record(request, body, 201)
        return web.json_response({"id": note, "body": body["body"]}, status=201)

    async def _edit(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        refused = await self._authorised(request, body)
        if refused is not None:
            return refused
        notes = self.notes.get((request.match_info["project"], request.match_info["iid"]), [])
        found = next((n for n in notes if str(n["id"]) == request.match_info["note"]), None)
        if found is None:
            await self.record(request, body, 404)
            return web.json_response({"message": "404 Not found"}, status=404)
        found["body"] = str(body["body"])
        await self.record(request, body, 200)
        return web.json_response(found)
