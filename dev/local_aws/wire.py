"""The emulator's HTTP layer: which AWS operation a request is, and what goes back.

One WSGI middleware (:class:`ApiMiddleware`) sits in front of moto's application and,
for every signed AWS request, finds the service and operation in botocore's own model
(the same model the clients serialise with), then:

* **throttles** it when the lifecycle file asks (``api_throttle``), with the error each
  service documents for throttling (:data:`THROTTLE_ERRORS`);
* **loses the response** of a ``CreateTrainingJob`` whose job the lifecycle names
  (``lose_create_response``): the job is created, then the connection is closed before
  any byte of the answer is sent, as when a network path drops it;
* **checks the response** (``--check-responses FILE`` or ``MRT_CHECK_EMULATOR_RESPONSES``):
  parses it with botocore's parser for the protocol and validates the result against the
  operation's output shape (required members, enums, types; :func:`conformance_errors`).
  A response that does not conform is replaced by an error the client raises
  (``EmulatorResponseInvalid``) and is appended to FILE as a JSON line, so a caller that
  swallows errors (a best-effort log shipper, a task process) still fails the test
  session that reads FILE (tests/conftest.py).

Requests without AWS credentials (moto's own ``/moto-api/``, readiness probes) pass
through untouched. ``GET /_mrt/api-calls`` answers the counters (checked, throttled,
lost) as JSON for tests.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import functools
import io
import json
import logging
import re
import socket
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

log = logging.getLogger("local_aws.wire")

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WsgiApp = Callable[[Environ, StartResponse], Iterable[bytes]]

_CREDENTIAL = re.compile(r"Credential=[^/]+/\d{8}/([^/]+)/([^/]+)/aws4_request")
#: Signing names that are not botocore's service directory name.
_SERVICE_BY_SIGNING_NAME = {"monitoring": "cloudwatch", "servicequotas": "service-quotas"}

#: (HTTP status, error code, message) of a throttled call, per service. Sources:
#: S3: "SlowDown ... 503 Slow Down" (Amazon S3 API Reference, Error responses);
#: SNS: botocore's sns model, ``ThrottledException`` ``error: {code: Throttled,
#: httpStatusCode: 429}``; everything else: "ThrottlingException ... HTTP Status Code:
#: 400" (the Common Errors page of the SageMaker, CloudWatch Logs and AWS Batch API
#: references). docs/emulator.md cites each.
THROTTLE_ERRORS: dict[str, tuple[int, str, str]] = {
    "s3": (503, "SlowDown", "Please reduce your request rate."),
    "sns": (429, "Throttled", "Rate exceeded"),
    # botocore's service-quotas model: TooManyRequestsException (docs/emulator.md)
    "service-quotas": (400, "TooManyRequestsException", "Rate exceeded"),
}
_DEFAULT_THROTTLE = (400, "ThrottlingException", "Rate exceeded")


@functools.cache
def _loader() -> Any:
    import botocore.loaders

    return botocore.loaders.create_loader()


@functools.cache
def service_model(name: str) -> Any:
    """botocore's model of a service (``s3``, ``sagemaker``, ...), loaded once."""
    from botocore.model import ServiceModel

    return ServiceModel(_loader().load_service_model(name, "service-2"), service_name=name)


@dataclass(frozen=True)
class Call:
    """One AWS request as the client made it."""

    service: str  # botocore's service name
    region: str
    protocol: str  # json, rest-json, rest-xml, query, smithy-rpc-v2-cbor
    operation: Any  # botocore OperationModel, None if no operation matches
    body: bytes  # the request body when it was read (json/query), else b""

    @property
    def name(self) -> str:
        return f"{self.service}:{self.operation.name if self.operation else '?'}"


# --- which operation -----------------------------------------------------------------------
@dataclass(frozen=True)
class _Route:
    method: str
    path: re.Pattern[str]
    query: tuple[tuple[str, str | None], ...]  # literal keys (value None: any value)
    headers: tuple[str, ...]  # required input members sent as headers
    literal: int  # literal characters in the path (more: more specific)
    operation: Any


def _route(operation: Any) -> _Route:
    http = operation.http
    uri, _, query = http["requestUri"].partition("?")
    pattern = ""
    for part in re.split(r"(\{[^}]+\})", uri):
        if part.startswith("{"):
            pattern += "(.+)" if part.endswith("+}") else "([^/]+)"
        else:
            pattern += re.escape(part)
    literal_query: list[tuple[str, str | None]] = []
    for item in filter(None, query.split("&")):
        key, eq, value = item.partition("=")
        literal_query.append((key, value if eq else None))
    headers: list[str] = []
    shape = operation.input_shape
    for name in (shape.required_members if shape is not None else []):
        member = shape.members[name]
        location = member.serialization.get("location")
        if location == "querystring":
            literal_query.append((member.serialization.get("name", name), None))
        elif location == "header":
            headers.append(member.serialization.get("name", name).lower())
    return _Route(http["method"], re.compile(pattern.rstrip("/") + "/?$"), tuple(literal_query), tuple(headers),
                  len(re.sub(r"\{[^}]+\}", "", uri)), operation)


@functools.cache
def _routes(service: str) -> tuple[_Route, ...]:
    model = service_model(service)
    return tuple(_route(model.operation_model(name)) for name in model.operation_names)


def rest_operation(service: str, method: str, path: str, query: dict[str, list[str]],
                   headers: dict[str, str]) -> Any:
    """The rest-json/rest-xml operation a request is: method and path template match,
    the template's literal query keys and the required query/header members are present;
    the most specific match wins (``?list-type=2`` over none, ``x-amz-copy-source``...)."""
    best: tuple[tuple[int, int], Any] | None = None
    for route in _routes(service):
        if route.method != method or not route.path.match(path):
            continue
        if any(key not in query or (value is not None and value not in query[key]) for key, value in route.query):
            continue
        if any(header not in headers for header in route.headers):
            continue
        score = (len(route.query) + len(route.headers), route.literal)
        if best is None or score > best[0]:
            best = (score, route.operation)
    return best[1] if best else None


def _s3_path(environ: Environ) -> str:
    """The path-style path of an S3 request; a virtual-hosted one (``bucket.localhost``,
    ``bucket.s3.<region>.amazonaws.com``) gets its bucket put back in front."""
    path = environ.get("PATH_INFO") or "/"
    host = (environ.get("HTTP_HOST") or "").rsplit(":", 1)[0]
    labels = host.split(".")
    if host.endswith(".localhost") or (len(labels) > 2 and labels[1].startswith("s3")):
        return f"/{labels[0]}{path}"
    return path


def identify(environ: Environ) -> Call | None:
    """The AWS call a WSGI request is; None when it carries no AWS credential scope.

    Reads (and puts back) the body of json and query requests: their operation (query's
    ``Action``) and, for a create, the job name are in it."""
    headers = {key[5:].replace("_", "-").lower(): value for key, value in environ.items()
               if key.startswith("HTTP_")}
    if "CONTENT_TYPE" in environ:
        headers["content-type"] = environ["CONTENT_TYPE"]
    query = parse_qs(environ.get("QUERY_STRING") or "", keep_blank_values=True)
    found = _CREDENTIAL.search(headers.get("authorization", "")) or _CREDENTIAL.search(
        "Credential=" + (query.get("X-Amz-Credential") or [""])[0])
    if not found:
        return None
    region, signing_name = found.groups()
    service = _SERVICE_BY_SIGNING_NAME.get(signing_name, signing_name)
    try:
        model = service_model(service)
    except Exception:  # not a botocore service: the check reports it
        return Call(service, region, "unknown", None, b"")
    body = b""
    target = headers.get("x-amz-target")
    content_type = headers.get("content-type", "")
    method = environ.get("REQUEST_METHOD", "GET")
    if target or "x-www-form-urlencoded" in content_type or "cbor" in content_type:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
    if target:
        protocol, name = "json", target.rsplit(".", 1)[-1]
    elif "cbor" in content_type:
        protocol, name = "smithy-rpc-v2-cbor", (environ.get("PATH_INFO") or "").rsplit("/", 1)[-1]
    elif "Action" in query or ("x-www-form-urlencoded" in content_type and model.resolved_protocol in ("query", "ec2")):
        form = parse_qs(body.decode(errors="replace")) if body else {}
        protocol, name = "query", (query.get("Action") or form.get("Action") or [""])[0]
    else:
        protocol = model.resolved_protocol
        path = _s3_path(environ) if service == "s3" else environ.get("PATH_INFO") or "/"
        operation = rest_operation(service, method, path, query, headers)
        return Call(service, region, protocol, operation, body)
    operation = model.operation_model(name) if name in model.operation_names else None
    return Call(service, region, protocol, operation, body)


# --- conformance ---------------------------------------------------------------------------
_SCALARS: dict[str, tuple[type, ...]] = {
    "string": (str,), "integer": (int,), "long": (int,), "float": (float, int), "double": (float, int),
    "boolean": (bool,), "timestamp": (dt.datetime,), "blob": (bytes, bytearray),
}


def conformance_errors(value: Any, shape: Any, path: str = "") -> list[str]:
    """Where a parsed response breaks its output shape: required members missing, a
    value of the wrong type, a string outside its enum. ``[]``: it conforms."""
    if shape is None or any(container.get(key) for container in (shape.serialization, shape.metadata)
                            for key in ("eventstream", "streaming")):
        return []  # none, or a payload stream: the client hands it over unparsed
    where = path or shape.name
    kind = shape.type_name
    if kind == "structure":
        return _structure_errors(value, shape, where)
    if kind == "list":
        if not isinstance(value, list):
            return [f"{where}: expected a list, got {type(value).__name__}"]
        return [e for i, item in enumerate(value) for e in conformance_errors(item, shape.member, f"{where}[{i}]")]
    if kind == "map":
        if not isinstance(value, dict):
            return [f"{where}: expected a map, got {type(value).__name__}"]
        return [e for k, v in value.items() for e in
                conformance_errors(k, shape.key, f"{where} key") + conformance_errors(v, shape.value, f"{where}[{k}]")]
    return _scalar_errors(value, shape, where)


def _structure_errors(value: Any, shape: Any, where: str) -> list[str]:
    if not isinstance(value, dict):
        return [f"{where}: expected a structure ({shape.name}), got {type(value).__name__}"]
    errors = [f"{where}.{name}: required member missing" for name in shape.required_members
              if value.get(name) is None]
    for name, member in shape.members.items():
        if value.get(name) is not None:
            errors += conformance_errors(value[name], member, f"{where}.{name}")
    return errors


def _scalar_errors(value: Any, shape: Any, where: str) -> list[str]:
    kind = shape.type_name
    types = _SCALARS.get(kind)
    if types is None:
        return []
    numeric = kind in ("integer", "long", "float", "double")
    if not isinstance(value, types) or (numeric and isinstance(value, bool)):
        return [f"{where}: expected {kind}, got {type(value).__name__} {value!r:.80}"]
    enum = shape.enum if kind == "string" else []
    if enum and value not in enum:
        return [f"{where}: {value!r} is not one of {shape.name}'s values {list(enum)}"]
    return []


def response_errors(call: Call, status: int, headers: list[tuple[str, str]], body: bytes) -> list[str]:
    """Parse the response as the client does (botocore's parser for the protocol) and
    check it: a 2xx against the operation's output shape, an error for a code."""
    from botocore.awsrequest import HeadersDict
    from botocore.parsers import create_parser

    if call.operation is None:
        return [f"{call.service}: no operation of botocore's {call.service} model matches the request"]
    if 300 <= status < 400:
        return []
    payload: Any = body
    if status < 300 and call.operation.has_streaming_output:
        from botocore.response import StreamingBody

        # As the client's endpoint hands a streaming payload (GetObject's Body) over unread.
        payload = StreamingBody(io.BytesIO(body), len(body))
    response = {"status_code": status, "headers": HeadersDict(headers), "body": payload}
    shape = call.operation.output_shape
    try:
        parsed = create_parser(call.protocol).parse(response, shape if status < 300 else None)
    except Exception as err:
        return [f"unparseable {status} response ({type(err).__name__}: {err})"]
    if status >= 400:
        code = (parsed.get("Error") or {}).get("Code")
        return [] if code else [f"{status} error without an error code"]
    parsed.pop("ResponseMetadata", None)
    return conformance_errors(parsed, shape)


# --- the middleware ------------------------------------------------------------------------
def _error_response(call: Call, status: int, code: str, message: str) -> tuple[str, list[tuple[str, str]], bytes]:
    """An error in the call's protocol, as botocore parses errors."""
    request_id = str(uuid.uuid4())
    if call.protocol in ("json", "unknown", "smithy-rpc-v2-cbor"):
        headers = [("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-RequestId", request_id)]
        body = json.dumps({"__type": code, "message": message}).encode()
    elif call.protocol == "rest-json":
        headers = [("Content-Type", "application/json"), ("x-amzn-ErrorType", code), ("x-amzn-RequestId", request_id)]
        body = json.dumps({"message": message}).encode()
    elif call.protocol == "rest-xml":
        headers = [("Content-Type", "application/xml"), ("x-amz-request-id", request_id)]
        body = (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{_xml(message)}"
                f"</Message><RequestId>{request_id}</RequestId></Error>").encode()
    else:  # query, ec2
        headers = [("Content-Type", "text/xml")]
        body = (f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{_xml(message)}</Message>"
                f"</Error><RequestId>{request_id}</RequestId></ErrorResponse>").encode()
    headers.append(("Content-Length", str(len(body))))
    return f"{status} {_REASONS.get(status, 'Error')}", headers, body


_REASONS = {400: "Bad Request", 429: "Too Many Requests", 500: "Internal Server Error", 503: "Slow Down"}


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class ApiMiddleware:
    """Throttling, lost responses and the botocore check around moto's WSGI app."""

    def __init__(self, app: WsgiApp, *, lifecycles: Any = None, violations_path: str | None = None):
        from dev.local_aws.lifecycles import LifecycleConfig

        self.app = app
        self.lifecycles = lifecycles or LifecycleConfig()
        self.violations_path = violations_path
        self.counts: Counter[str] = Counter()
        self._calls: Counter[tuple[str, str, str]] = Counter()  # (region, pattern, operation) for throttling
        self._lost: Counter[str] = Counter()  # job name -> create responses lost
        self._lock = threading.Lock()

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/_mrt/api-calls":
            body = json.dumps(dict(self.counts), sort_keys=True).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        call = identify(environ)
        if call is None:
            return self.app(environ, start_response)
        throttled = self._throttle(call)
        if throttled is not None:
            status, code, message = throttled
            status_line, headers, body = _error_response(call, status, code, message)
            start_response(status_line, headers)
            return [body]
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
            captured.update(status=status, headers=list(headers))
            return lambda data: captured.setdefault("written", []).append(data)

        iterable = self.app(environ, capture)
        try:
            body = b"".join([*captured.get("written", []), *iterable])
        finally:
            close = getattr(iterable, "close", None)
            if close is not None:
                close()
        status_line, headers = captured["status"], captured["headers"]
        status = int(status_line.split(" ", 1)[0])
        if self.violations_path is not None:
            errors = response_errors(call, status, headers, body)
            with self._lock:
                self.counts["checked"] += 1
            if errors:
                self._record(call, status, errors)
                status_line, headers, body = _error_response(
                    call, 400, "EmulatorResponseInvalid",
                    f"the emulator's {call.name} response does not conform to botocore's model: {'; '.join(errors)}")
        if status < 300 and self._lose(call):
            return self._drop(environ, start_response, call)
        start_response(status_line, headers)
        return [body]

    def _throttle(self, call: Call) -> tuple[int, str, str] | None:
        operation = call.name
        for pattern, rule in self.lifecycles.api_throttle.items():
            if not fnmatch.fnmatchcase(operation, pattern):
                continue
            with self._lock:
                key = (call.region, pattern, operation)
                self._calls[key] += 1
                refuse = rule.refuses(self._calls[key])
                if refuse:
                    self.counts[f"throttled {operation}"] += 1
            if refuse:
                log.info("throttling %s in %s (%s)", operation, call.region, pattern)
                return THROTTLE_ERRORS.get(call.service, _DEFAULT_THROTTLE)
        return None

    def _lose(self, call: Call) -> bool:
        if call.name != "sagemaker:CreateTrainingJob":
            return False
        try:
            name = str(json.loads(call.body or b"{}").get("TrainingJobName"))
        except ValueError:
            return False
        budget = self.lifecycles.for_job(call.region, name).lose_create_response
        with self._lock:
            lose = self._lost[name] < budget
            if lose:
                self._lost[name] += 1
                self.counts["lost sagemaker:CreateTrainingJob"] += 1
        return lose

    def _drop(self, environ: Environ, start_response: StartResponse, call: Call) -> Iterable[bytes]:
        """Close the connection before the answer: the client sees it reset and retries."""
        log.info("losing the response of %s in %s (lifecycle lose_create_response)", call.name, call.region)
        connection = environ.get("werkzeug.socket")
        if connection is not None:
            connection.shutdown(socket.SHUT_RDWR)
        # Writing to the closed socket fails; werkzeug treats that as a dropped connection.
        start_response("500 Internal Server Error", [("Content-Length", "0")])
        return [b""]

    def _record(self, call: Call, status: int, errors: list[str]) -> None:
        with self._lock:
            self.counts["violations"] += 1
            assert self.violations_path is not None
            with open(self.violations_path, "a", encoding="utf-8") as out:
                out.write(json.dumps({"operation": call.name, "region": call.region, "status": status,
                                      "errors": errors}) + "\n")
        log.warning("response of %s in %s does not conform to botocore's model: %s", call.name, call.region, errors)
