"""OSCQuery: the show's address space over HTTP and a WebSocket, found by zeroconf.

VDMX, Chataigne, ossia score and TouchDesigner's OSCQuery component read this protocol
(https://github.com/Vidvox/OSCQueryProposal). One port (``--oscquery-port``, default the OSC
port + 10; 0: off), bound like OSC (loopback unless ``--osc-host`` says otherwise):

    GET /                  the whole namespace as JSON: CONTENTS, FULL_PATH, TYPE, VALUE, RANGE,
                           ACCESS (1 read, 2 write, 3 both), DESCRIPTION
    GET /netbend/strength  one node;  GET /netbend/strength?VALUE  one attribute
    GET /?HOST_INFO        NAME, OSC_PORT, OSC_TRANSPORT (UDP), OSC_IP, EXTENSIONS
    WebSocket on /         {"COMMAND": "LISTEN", "DATA": "/netbend/strength"} (and IGNORE): each
                           change of a LISTENed address is pushed as an OSC message (binary frame)

zeroconf advertises ``_oscjson._tcp`` (this server) and ``_osc._udp`` (the OSC port).

Types and ranges are the ones netbend itself checks and sends: the state reply's canonical
type per address (live/control/state.py) and each operator's declared range
(engine/operators.py), so a bend's RANGE follows its operator.

python-oscquery (0.4) was looked at and not used: its HTTP server binds every interface
whatever the OSC host is, it has no WebSocket (so no LISTEN), and it answers RANGE false.
The ``websockets`` library serves the plain HTTP GETs and the WebSocket on one port.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from typing import Any, Callable, Optional
from urllib.parse import urlsplit

from pythonosc.osc_message_builder import build_msg

from engine.features import FEATURE_NAMES
from engine.mappings import CURVES
from engine.operators import OPERATORS, param_range
from live.control.limits import SEED_MAX
from live.control.loop_thread import LoopThread
from live.control.state import GAIN_DB, MAX_BENDS, QUANTIZE, ShowState
from live.control.tempo import BPM_RANGE

log = logging.getLogger("netbend.oscquery")

READ, WRITE, READ_WRITE = 1, 2, 3
ATTRIBUTES = ("FULL_PATH", "CONTENTS", "TYPE", "VALUE", "RANGE", "ACCESS", "DESCRIPTION", "HOST_INFO")


def describe_addresses(layers=(), features=FEATURE_NAMES) -> dict[str, dict]:
    """address -> {TYPE, RANGE, ACCESS, DESCRIPTION} for every address netbend takes or sends
    (bends' ranges for their current operator are filled in from the state)."""
    out = _show_addresses()
    for name in features:
        out[f"/netbend/audio/{name}"] = {"TYPE": "f", "ACCESS": READ, "DESCRIPTION": f"audio feature {name}"}
    for n in range(1, MAX_BENDS + 1):
        out.update(_bend_addresses(n, layers, features))
    return out


def _show_addresses() -> dict[str, dict]:
    return {
        "/netbend/prompt": {"TYPE": "s", "ACCESS": READ_WRITE, "DESCRIPTION": "the prompt (several words are joined)"},
        "/netbend/strength": {"TYPE": "f", "RANGE": [{"MIN": 0.0, "MAX": 1.0}], "ACCESS": READ_WRITE,
                              "DESCRIPTION": "how far each frame is re-noised, (0, 1]"},
        "/netbend/seed": {"TYPE": "i", "RANGE": [{"MIN": 0, "MAX": SEED_MAX}], "ACCESS": READ_WRITE,
                          "DESCRIPTION": "the noise seed"},
        "/netbend/freeze": {"TYPE": "i", "RANGE": [{"MIN": 0, "MAX": 1}], "ACCESS": READ_WRITE,
                            "DESCRIPTION": "1 holds the picture (features keep flowing)"},
        "/netbend/gain": {"TYPE": "f", "RANGE": [{"MIN": GAIN_DB[0], "MAX": GAIN_DB[1]}], "ACCESS": READ_WRITE,
                          "DESCRIPTION": "input gain in dB"},
        "/netbend/quantize": {"TYPE": "s", "RANGE": [{"VALS": list(QUANTIZE)}], "ACCESS": READ_WRITE,
                              "DESCRIPTION": "preset loads and prompts wait for the next beat or bar"},
        "/netbend/preset": {"TYPE": "s", "ACCESS": READ, "DESCRIPTION": "the preset last loaded"},
        "/netbend/recording": {"TYPE": "i", "ACCESS": READ, "DESCRIPTION": "1 while a take is recorded"},
        "/netbend/preset/load": {"TYPE": "s", "ACCESS": WRITE, "DESCRIPTION": "load a preset by name (or slot i)"},
        "/netbend/preset/save": {"TYPE": "s", "ACCESS": WRITE, "DESCRIPTION": "save the show as a user preset"},
        "/netbend/record/start": {"TYPE": "N", "ACCESS": WRITE, "DESCRIPTION": "start recording a take"},
        "/netbend/record/stop": {"TYPE": "N", "ACCESS": WRITE, "DESCRIPTION": "stop recording"},
        "/netbend/state": {"TYPE": "N", "ACCESS": WRITE, "DESCRIPTION": "query: every value, then /netbend/state/end"},
        "/netbend/stats": {"TYPE": "N", "ACCESS": WRITE, "DESCRIPTION": "query: fps, frames, frame_errors …"},
        "/netbend/ready": {"TYPE": "i", "ACCESS": READ, "DESCRIPTION": "1 once the show renders"},
        "/netbend/tempo": {"TYPE": "f", "RANGE": [{"MIN": BPM_RANGE[0], "MAX": BPM_RANGE[1]}], "ACCESS": READ_WRITE,
                           "DESCRIPTION": "tempo in BPM (Ableton Link, tap, or set here)"},
        "/netbend/tempo/tap": {"TYPE": "N", "ACCESS": WRITE, "DESCRIPTION": "tap tempo"},
        "/netbend/tempo/lock": {"TYPE": "i", "RANGE": [{"MIN": 0, "MAX": 1}], "ACCESS": READ_WRITE,
                                "DESCRIPTION": "1 holds the tempo (taps and detection ignored)"},
    }


def _bend_addresses(n: int, layers, features) -> dict[str, dict]:
    b = f"/netbend/bend/{n}"
    ops = sorted(OPERATORS)
    layer_vals = ["latent", *layers] if layers else None
    feature_vals = list(features) + ["none"]
    return {
        f"{b}/operator": {"TYPE": "s", "RANGE": [{"VALS": ops + ["none"]}], "ACCESS": READ_WRITE,
                          "DESCRIPTION": f"bend {n}'s operator (none empties it)"},
        f"{b}/layer": {"TYPE": "s", "ACCESS": READ_WRITE, "DESCRIPTION": "latent, latent@N, a U-Net point or unet:N",
                       **({"RANGE": [{"VALS": layer_vals}]} if layer_vals else {})},
        f"{b}/param": {"TYPE": "f", "ACCESS": READ_WRITE, "DESCRIPTION": "the operator's r, in its unit"},
        f"{b}/amount": {"TYPE": "f", "RANGE": [{"MIN": 0.0, "MAX": 1.0}], "ACCESS": READ_WRITE,
                        "DESCRIPTION": "0..1 across the operator's useful range"},
        f"{b}/value": {"TYPE": "f", "ACCESS": READ, "DESCRIPTION": "the param a mapping drives, each tick"},
        f"{b}/target": {"TYPE": "s", "ACCESS": READ_WRITE, "DESCRIPTION": "all | channels 0 2 | random 0.25 | …"},
        f"{b}/step": {"TYPE": "s", "ACCESS": READ_WRITE, "DESCRIPTION": "all | N | 1,2 | a:b"},
        f"{b}/enable": {"TYPE": "i", "RANGE": [{"MIN": 0, "MAX": 1}], "ACCESS": READ_WRITE,
                        "DESCRIPTION": "0 bypasses the bend"},
        f"{b}/feature": {"TYPE": "s", "RANGE": [{"VALS": feature_vals}], "ACCESS": READ_WRITE,
                         "DESCRIPTION": "the audio feature driving param (none: by hand)"},
        f"{b}/scale": {"TYPE": "ff", "ACCESS": READ_WRITE, "DESCRIPTION": "the mapping's output range lo hi"},
        f"{b}/in_range": {"TYPE": "ff", "ACCESS": READ_WRITE, "DESCRIPTION": "the feature's input range, or s auto"},
        f"{b}/curve": {"TYPE": "s", "RANGE": [{"VALS": list(CURVES)}], "ACCESS": READ_WRITE,
                       "DESCRIPTION": "the mapping's curve"},
        f"{b}/attack": {"TYPE": "f", "RANGE": [{"MIN": 0.0, "MAX": 60000.0}], "ACCESS": READ_WRITE,
                        "DESCRIPTION": "smoothing of rises, ms"},
        f"{b}/release": {"TYPE": "f", "RANGE": [{"MIN": 0.0, "MAX": 60000.0}], "ACCESS": READ_WRITE,
                         "DESCRIPTION": "smoothing of falls, ms"},
        f"{b}/invert": {"TYPE": "i", "RANGE": [{"MIN": 0, "MAX": 1}], "ACCESS": READ_WRITE,
                        "DESCRIPTION": "1: loud gives low values"},
        f"{b}/opt": {"TYPE": "s", "ACCESS": WRITE, "DESCRIPTION": "an operator option: name value…"},
    }


def namespace(state: ShowState, layers=(), extra_values: Optional[dict] = None) -> dict:
    """The OSCQuery JSON tree of the whole address space, VALUEs from ``state``."""
    described = {**describe_addresses(layers), **_output_addresses(state)}
    values = {a: list(args) for a, args in state.messages() if not a.endswith("/opt")}
    values.update({a: [v] for a, v in (extra_values or {}).items()})
    for n, slot in enumerate(state.slots, start=1):
        if slot is not None:
            r = param_range(slot.bend.operator)
            described[f"/netbend/bend/{n}/param"]["RANGE"] = [{"MIN": r.low, "MAX": r.high}]
            described[f"/netbend/bend/{n}/param"]["DESCRIPTION"] = f"{slot.bend.operator}'s r in {r.unit}"
    root: dict = {"FULL_PATH": "/", "CONTENTS": {}, "ACCESS": 0, "DESCRIPTION": "netbend"}
    for address, node in described.items():
        here = root
        parts = address.strip("/").split("/")
        for i, part in enumerate(parts):
            here = here.setdefault("CONTENTS", {}).setdefault(part, {"FULL_PATH": "/" + "/".join(parts[:i + 1])})
        here.update(node)
        if address in values and node["ACCESS"] & READ:
            here["VALUE"] = values[address]
    for address, node in _walk(root):
        if "TYPE" not in node and node is not root:
            node.setdefault("ACCESS", 0)
    return root


def _output_addresses(state: ShowState) -> dict[str, dict]:
    """The outputs this show runs (they are known only once it runs them)."""
    nodes = {f"/netbend/output/{name}/enable": {"TYPE": "i", "RANGE": [{"MIN": 0, "MAX": 1}], "ACCESS": READ_WRITE,
                                                "DESCRIPTION": f"1 sends the picture to the {name} output"}
             for name, _ in state.outputs}
    if state.outputs:
        nodes["/netbend/record/video/start"] = {"TYPE": "s", "ACCESS": WRITE,
                                                "DESCRIPTION": "record the show to a new .mp4 (its path)"}
        nodes["/netbend/record/video/stop"] = {"TYPE": "N", "ACCESS": WRITE, "DESCRIPTION": "finish that recording"}
    return nodes


def _walk(node: dict):
    yield node.get("FULL_PATH", "/"), node
    for child in node.get("CONTENTS", {}).values():
        yield from _walk(child)


def find(tree: dict, path: str) -> Optional[dict]:
    here = tree
    for part in [p for p in path.split("/") if p]:
        here = here.get("CONTENTS", {}).get(part)
        if here is None:
            return None
    return here


class OscQueryServer:
    """The OSCQuery HTTP + WebSocket server on one port, in its own thread with an asyncio loop.

    get_state: the show's newest snapshot; layers: the model's U-Net point names (a
    callable, since they are known once the model has loaded); osc_port / osc_host: what
    HOST_INFO and zeroconf announce; extra_values: {address: value} read each time (tempo).
    ``changed(messages)`` (any thread) pushes (address, args) to the clients LISTENing to them.
    """

    def __init__(self, get_state: Callable[[], ShowState], osc_port: int, host: str = "127.0.0.1", port: int = 0,
                 layers: Callable[[], Any] = lambda: (), extra_values: Callable[[], dict] = dict,
                 name: str = "netbend", advertise: bool = True):
        self._get_state, self._layers, self._extra = get_state, layers, extra_values
        self.osc_port, self.host, self.name, self._advertise = osc_port, host, name, advertise
        self._requested_port = port
        self.port: Optional[int] = None
        self._loop = LoopThread("netbend-oscquery", self._serving)
        self._listeners: dict[Any, set[str]] = {}
        self._zeroconf = None

    # lifecycle
    def start(self) -> "OscQueryServer":
        try:
            self._loop.start()
        except Exception as e:
            raise OSError(f"cannot serve OSCQuery on {self.host}:{self._requested_port}: {e}") from None
        if self._advertise:
            self._zeroconf_start()
        log.info("OSCQuery on http://%s:%d/", self.host, self.port)
        return self

    def stop(self) -> None:
        if self._zeroconf is not None:
            try:
                self._zeroconf.unregister_all_services()
                self._zeroconf.close()
            except Exception:  # noqa: BLE001 - shutting down
                pass
            self._zeroconf = None
        self._loop.stop()

    def __enter__(self) -> "OscQueryServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # the server thread
    @contextlib.asynccontextmanager
    async def _serving(self):
        from websockets.asyncio.server import serve

        async with serve(self._ws, self.host, self._requested_port, process_request=self._http,
                         max_size=64 * 1024, max_queue=16, compression=None) as server:
            self.port = server.sockets[0].getsockname()[1]
            yield

    def _tree(self) -> dict:
        return namespace(self._get_state(), tuple(self._layers() or ()), self._extra())

    def _http(self, connection, request):
        """Plain GETs are answered here; a WebSocket upgrade goes on to ``_ws``."""
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return None
        url = urlsplit(request.path)
        query = url.query
        if query == "HOST_INFO":
            body: Any = self.host_info()
        else:
            node = find(self._tree(), url.path)
            if node is None:
                return self._respond(404, {"error": f"no OSC address {url.path}"})
            if query:
                if query not in ATTRIBUTES:
                    return self._respond(400, {"error": f"unknown attribute {query[:40]}; allowed: "
                                                        f"{', '.join(ATTRIBUTES)}"})
                if query not in node:
                    return self._respond(204, None)
                body = {query: node[query]}
            else:
                body = node
        return self._respond(200, body)

    @staticmethod
    def _respond(status: int, body):
        from websockets.datastructures import Headers
        from websockets.http11 import Response

        data = b"" if body is None else json.dumps(body).encode()
        reason = {200: "OK", 204: "No Content", 400: "Bad Request", 404: "Not Found"}[status]
        headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(data))),
                           ("Access-Control-Allow-Origin", "*")])
        return Response(status, reason, headers, data)

    def host_info(self) -> dict:
        return {"NAME": self.name, "OSC_PORT": self.osc_port, "OSC_TRANSPORT": "UDP", "OSC_IP": self.host,
                "EXTENSIONS": {"ACCESS": True, "VALUE": True, "RANGE": True, "DESCRIPTION": True, "TAGS": False,
                               "CLIPMODE": False, "UNIT": False, "CRITICAL": False, "LISTEN": True,
                               "PATH_CHANGED": False}}

    async def _ws(self, connection) -> None:
        self._listeners[connection] = set()
        try:
            async for text in connection:
                if not isinstance(text, str):
                    continue
                try:
                    command = json.loads(text)
                    kind, path = command["COMMAND"], command["DATA"]
                except (ValueError, KeyError, TypeError):
                    continue
                if kind == "LISTEN" and isinstance(path, str) and len(self._listeners[connection]) < 512:
                    self._listeners[connection].add(path)
                elif kind == "IGNORE":
                    self._listeners[connection].discard(path)
        finally:
            self._listeners.pop(connection, None)

    def changed(self, messages) -> None:
        """Push each (address, args) to the WebSocket clients LISTENing to it (any thread)."""
        if not self._listeners:
            return
        frames = [(a, build_msg(a, tuple(args)).dgram) for a, args in messages]
        self._loop.call(self._push, frames)

    def _push(self, frames) -> None:
        for connection, paths in list(self._listeners.items()):
            for address, dgram in frames:
                if address in paths:
                    asyncio.ensure_future(self._send(connection, dgram))

    @staticmethod
    async def _send(connection, dgram: bytes) -> None:
        try:
            await connection.send(dgram)
        except Exception:  # noqa: BLE001 - a client that went away
            pass

    # zeroconf
    def _zeroconf_start(self) -> None:
        try:
            from zeroconf import ServiceInfo, Zeroconf
        except ImportError:
            log.info("zeroconf is not installed: OSCQuery is not advertised (pip install zeroconf)")
            return
        address = self.host if self.host not in ("0.0.0.0", "", "::") else _own_address()
        try:
            self._zeroconf = Zeroconf(interfaces=[address])
            for kind, port in (("_oscjson._tcp.local.", self.port), ("_osc._udp.local.", self.osc_port)):
                info = ServiceInfo(kind, f"{self.name}.{kind}", port=port, properties={"txtvers": "1"},
                                   server=f"{self.name}.local.", parsed_addresses=[address])
                self._zeroconf.register_service(info, allow_name_change=True)
        except Exception as e:  # noqa: BLE001 - discovery is a convenience: the show goes on
            log.warning("OSCQuery not advertised by zeroconf: %s", e)
            self._zeroconf = None


def _own_address() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent: this picks the outgoing interface
            return s.getsockname()[0]
        except OSError:
            return "127.0.0.1"
