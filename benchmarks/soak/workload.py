"""The clients: each picks its next operation from a seeded generator, sends it through nginx
and records what it sent and what came back. Some operations are cut by the client on purpose:
an upload in the middle of its body or after its body (before the answer), a download in the
middle of its bytes."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import orjson

from benchmarks.soak.bodies import BodyMaker
from benchmarks.soak.history import CUT, FAILED, OK, REFUSED, UNKNOWN, History, Op
from benchmarks.soak.profiles import Profile

NAMES = tuple(f"soak-{c}" for c in "abcde")
VERSIONS = ("1.0", "1.1", "1.2", "1.3")
FILES = ("f0.bin", "f1.bin", "f2.bin")
_READ = 1 << 20


class _Cut(Exception):
    """Raised inside an upload body: the client hangs up mid-body."""


def outcome_of(status: int) -> str:
    if status < 400:
        return OK
    if status < 500:
        return REFUSED
    if status in (502, 504):  # nginx: the gateway died or went silent mid-request
        return UNKNOWN
    return FAILED


def is_gitlab_json(body: bytes) -> bool:
    """An error answer as GitLab shapes it: a JSON object with a message or an error."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return isinstance(value, dict) and ("message" in value or "error" in value)


@dataclass
class Known:
    """Files answered 201, by (project, name, version, file): what downloads aim at."""

    files: dict[tuple[str, str, str, str], tuple[int, int]] = field(default_factory=dict)

    def add(self, op: Op) -> None:
        self.files[(op.project, op.name, op.version, op.file)] = (op.id, op.size)

    def forget(self, project: str, name: str, version: str, file: str | None) -> None:
        for key in [k for k in self.files if k[:3] == (project, name, version)
                    and (file is None or k[3] == file)]:
            del self.files[key]


class Workload:
    def __init__(self, base: str, token: str, projects: dict[str, int], profile: Profile,
                 seed: int, history: History, bodies: BodyMaker) -> None:
        self.base = base
        self.auth = {"PRIVATE-TOKEN": token}
        self.projects = projects
        self.profile = profile
        self.seed = seed
        self.history = history
        self.bodies = bodies
        self.known = Known()
        self.stopping = asyncio.Event()
        self._kinds = [k for k, _ in profile.ops]
        self._weights = [w for _, w in profile.ops]

    def url(self, op: Op, *, file: bool = True) -> str:
        path = f"{self.base}/api/v4/projects/{self.projects[op.project]}/packages/generic/" \
               f"{op.name}/{op.version}"
        return f"{path}/{op.file}" if file else path

    async def run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=120)
        async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False,
                                         connector=aiohttp.TCPConnector(limit=0)) as http:
            await asyncio.gather(*(self._client(http, i) for i in range(self.profile.clients)))

    async def _client(self, http: aiohttp.ClientSession, index: int) -> None:
        rng = random.Random(self.seed * 1_000 + index)
        while not self.stopping.is_set():
            kind = rng.choices(self._kinds, self._weights)[0]
            op = await getattr(self, "_" + kind)(http, rng, index)
            op.end = self.history.now()
            if op.outcome in (FAILED, UNKNOWN):
                # As a well-behaved client does on a 503 or a broken connection: back off
                # before the next request (a tight retry loop would only fill the history).
                await asyncio.sleep(rng.uniform(0.2, 1.0))

    # --- choices -------------------------------------------------------------------------

    def _size(self, rng: random.Random) -> int:
        weights = [w for w, _, _ in self.profile.sizes]
        _, low, high = rng.choices(self.profile.sizes, weights)[0]
        return int(math.exp(rng.uniform(math.log(low + 1), math.log(high + 1)))) - 1

    def _target(self, rng: random.Random, *, known: bool) -> tuple[str, str, str, str]:
        if known and self.known.files and rng.random() < 0.85:
            return rng.choice(sorted(self.known.files))
        project = "forbid" if rng.random() < 0.3 else "allow"
        return project, rng.choice(NAMES), rng.choice(VERSIONS), rng.choice(FILES)

    def _op(self, kind: str, index: int, target: tuple[str, str, str, str]) -> Op:
        project, name, version, file = target
        return self.history.new_op(client=index, kind=kind, project=project, name=name,
                                   version=version, file=file)

    def _answer(self, op: Op, status: int, body: bytes) -> None:
        op.status = status
        op.outcome = outcome_of(status)
        if status >= 400:
            op.body = body[:300].decode(errors="replace")
            op.extra["json"] = is_gitlab_json(body)

    # --- operations ----------------------------------------------------------------------

    async def _upload(self, http: aiohttp.ClientSession, rng: random.Random, index: int) -> Op:
        target = self._target(rng, known=False)
        if rng.random() < 0.2:  # a new version
            target = (target[0], target[1], f"2.{rng.randrange(1 << 30)}", target[3])
        op = self._op("upload", index, target)
        op.size = self._size(rng)
        op.mode = rng.choice(("chunked", "length"))
        op.select = rng.random() < 0.3
        if rng.random() < self.profile.cut_ratio:
            op.cut = "body" if op.size > 0 and rng.random() < 0.6 else "answer"
            op.cut_at = rng.randrange(op.size) if op.cut == "body" else -1
        sent = asyncio.Event()
        body = self._body(op, sent)
        headers = dict(self.auth)
        if op.mode == "length":
            headers["Content-Length"] = str(op.size)
        url = self.url(op) + ("?select=package_file" if op.select else "")
        task = asyncio.create_task(self._put(http, url, body, headers))
        if op.cut == "answer":
            waiter = asyncio.create_task(sent.wait())
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            if not task.done():
                await asyncio.sleep(rng.uniform(0, 0.05))
                task.cancel()
        try:
            status, answer = await task
        except asyncio.CancelledError:
            op.outcome, op.error = UNKNOWN, "cut by the client after the body"
            return op
        except Exception as exc:
            if op.cut == "body" and not sent.is_set():
                op.outcome, op.error = CUT, f"cut by the client at byte {op.cut_at}"
            else:
                op.outcome, op.error = UNKNOWN, f"{type(exc).__name__}: {exc}"
            return op
        self._answer(op, status, answer)
        if op.outcome == OK:
            self.known.add(op)
            if op.select:
                with contextlib.suppress(orjson.JSONDecodeError, AttributeError):
                    op.extra["answer_sha256"] = orjson.loads(answer).get("file_sha256")
        return op

    async def _body(self, op: Op, sent: asyncio.Event) -> AsyncIterator[bytes]:
        h = hashlib.sha256()
        pos = 0
        for chunk in self.bodies.chunks(op.id, op.size):
            if op.cut == "body" and pos + len(chunk) > op.cut_at:
                yield chunk[:op.cut_at - pos]
                await asyncio.sleep(0.01)
                raise _Cut()
            h.update(chunk)
            pos += len(chunk)
            yield chunk
        op.sha256 = h.hexdigest()
        sent.set()

    @staticmethod
    async def _put(http: aiohttp.ClientSession, url: str, body: AsyncIterator[bytes],
                   headers: dict[str, str]) -> tuple[int, bytes]:
        async with http.put(url, data=body, headers=headers) as resp:
            return resp.status, await resp.read()

    async def _download(self, http: aiohttp.ClientSession, rng: random.Random, index: int,
                        kind: str = "download") -> Op:
        op = self._op(kind, index, self._target(rng, known=True))
        if kind == "range":
            known = self.known.files.get((op.project, op.name, op.version, op.file))
            size = known[1] if known else 0
            if size > 0:
                a = rng.randrange(size)
                op.range = (a, min(size - 1, a + rng.randrange(1, 2 << 20)))
        if rng.random() < self.profile.cut_ratio:
            op.cut, op.cut_at = "body", rng.randrange(1 << 22)
        extra = {"Range": f"bytes={op.range[0]}-{op.range[1]}"} if op.range else {}
        try:
            async with http.get(self.url(op), headers=self.auth | extra,
                                allow_redirects=False) as resp:
                if resp.status != 302:
                    op.mode = "proxy"
                    await self._receive(op, resp)
                    return op
                op.mode = "redirect"
                op.checksum_header = resp.headers.get("X-Checksum-SHA256", "")
                location = resp.headers["Location"]
                op.status = 302
            async with http.get(location, headers=extra) as s3:
                op.extra["s3_status"] = s3.status
                await self._receive(op, s3, from_s3=True)
        except Exception as exc:
            op.outcome = CUT if op.error.startswith("cut") else UNKNOWN
            op.error = op.error or f"{type(exc).__name__}: {exc}"
        return op

    async def _receive(self, op: Op, resp: aiohttp.ClientResponse, *,
                       from_s3: bool = False) -> None:
        if resp.status >= 300:
            body = await resp.read()
            if from_s3:  # S3's own XML answer (e.g. the file was deleted meanwhile)
                op.outcome = REFUSED if resp.status < 500 else FAILED
                op.body = body[:300].decode(errors="replace")
            else:
                self._answer(op, resp.status, body)
            return
        if not from_s3:
            op.status = resp.status
            op.checksum_header = resp.headers.get("X-Checksum-SHA256", "")
        op.extra["answer_status"] = resp.status
        if "Content-Range" in resp.headers:
            op.extra["content_range"] = resp.headers["Content-Range"]
        h = hashlib.sha256()
        async for chunk in resp.content.iter_chunked(_READ):
            h.update(chunk)
            op.received += len(chunk)
            if op.cut and op.received >= op.cut_at:
                op.error = f"cut by the client after {op.received} bytes"
                resp.close()
                op.outcome = CUT
                return
        op.received_sha256 = h.hexdigest()
        op.outcome = OK

    async def _range(self, http: aiohttp.ClientSession, rng: random.Random, index: int) -> Op:
        return await self._download(http, rng, index, "range")

    async def _head(self, http: aiohttp.ClientSession, rng: random.Random, index: int) -> Op:
        op = self._op("head", index, self._target(rng, known=True))
        try:
            async with http.head(self.url(op), headers=self.auth) as resp:
                self._answer(op, resp.status, await resp.read())
                op.checksum_header = resp.headers.get("X-Checksum-SHA256", "")
                op.received = int(resp.headers.get("Content-Length", "0") or 0)
        except Exception as exc:
            op.outcome, op.error = UNKNOWN, f"{type(exc).__name__}: {exc}"
        return op

    async def _list(self, http: aiohttp.ClientSession, rng: random.Random, index: int) -> Op:
        op = self._op("list", index, self._target(rng, known=False))
        url = f"{self.base}/api/v4/projects/{self.projects[op.project]}/packages"
        try:
            async with http.get(url, headers=self.auth,
                                params={"package_name": op.name, "per_page": "100"}) as resp:
                body = await resp.read()
                self._answer(op, resp.status, body)
                if resp.status == 200:
                    op.extra["listed"] = len(orjson.loads(body))
        except Exception as exc:
            op.outcome, op.error = UNKNOWN, f"{type(exc).__name__}: {exc}"
        return op

    async def _delete(self, http: aiohttp.ClientSession, rng: random.Random, index: int,
                      kind: str) -> Op:
        op = self._op(kind, index, self._target(rng, known=True))
        whole = kind == "delete_version"
        if whole:
            op.file = ""
        try:
            async with http.delete(self.url(op, file=not whole), headers=self.auth) as resp:
                self._answer(op, resp.status, await resp.read())
        except Exception as exc:
            op.outcome, op.error = UNKNOWN, f"{type(exc).__name__}: {exc}"
        if op.outcome in (OK, UNKNOWN):
            self.known.forget(op.project, op.name, op.version, op.file or None)
        return op

    async def _delete_file(self, http: aiohttp.ClientSession, rng: random.Random,
                           index: int) -> Op:
        return await self._delete(http, rng, index, "delete_file")

    async def _delete_version(self, http: aiohttp.ClientSession, rng: random.Random,
                              index: int) -> Op:
        return await self._delete(http, rng, index, "delete_version")
