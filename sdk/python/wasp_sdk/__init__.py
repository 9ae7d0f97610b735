"""wasp_sdk: ESP services for wasp in a few lines of Python (componentize-py).

Copy this folder next to your ``app.py`` (``wasp new python`` does). It
wraps the bindings componentize-py generates for ``wit/esp.wit`` (the
``wit_world`` package): a request's parameters are a :class:`Kv` with
typed getters, a fault is ``raise Fault(code, message)``, and results are
plain dicts (or a :class:`Kv`)::

    import wasp_sdk
    from wasp_sdk import Fault

    class Service(wasp_sdk.Service):          # componentize-py looks for app.Service
        SERVICE_TYPE = "Greeter"
        VERSION = "1.0"
        METHODS = ["Greet"]

        def Greet(self, req):                  # one method per ESP method
            name = req.params.get_str("Name")  # missing/mistyped -> fault
            return {"Greeting": f"Hello, {name}", "Tenant": req.tenant.id}

Values: ``int`` (and ``bool``, sent as 1/0) is an ESP integer, ``str`` a
string, ``bytes`` a binary, a ``dict`` or :class:`Kv` a nested list.
"""

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import config as _config
from wit_world.imports import log as _log
from wit_world.imports import store as _store
from wit_world.imports.types import Fault as _WitFault
from wit_world.imports.types import (
    KvList,
    Pair,
    ServiceInfo,
    Value_Binary,
    Value_Int,
    Value_Nested,
    Value_Str,
)

# Fault codes for the common cases (the same as the Rust SDK's `codes`).
# The host answers every fault as ESP fault 3005 with ComponentFaultCode.
MISSING_PARAMETER = 1
INVALID_PARAMETER = 2
UNKNOWN_METHOD = 3
NOT_FOUND = 4
LIMIT_REACHED = 5
INTERNAL = 100

_TYPE_NAMES = {int: "an integer", str: "a string", bytes: "a binary"}


class Fault(Exception):
    """Raise it to answer the request with a fault (ESP 3005)."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = int(code)
        self.message = str(message)

    def __str__(self):
        return f"fault {self.code}: {self.message}"


def _type_name(value):
    if isinstance(value, Kv):
        return "a list"
    return _TYPE_NAMES.get(type(value), type(value).__name__)


class Kv:
    """An ordered ESP KV list: (key, value) pairs, keys may repeat.

    A value is an ``int``, a ``str``, ``bytes`` or a nested ``Kv``.
    ``get*`` methods look at the first pair with the key.
    """

    def __init__(self, pairs=None):
        if isinstance(pairs, dict):
            pairs = pairs.items()
        self.pairs = [(k, _python_value(k, v)) for k, v in (pairs or [])]

    def __iter__(self):
        return iter(self.pairs)

    def __len__(self):
        return len(self.pairs)

    def __contains__(self, key):
        return any(k == key for k, _ in self.pairs)

    def __repr__(self):
        return f"Kv({self.pairs!r})"

    def add(self, key, value):
        """Appends a pair (keys may repeat); returns self."""
        self.pairs.append((key, _python_value(key, value)))
        return self

    def get(self, key, default=None):
        """The value under ``key`` (any type), or ``default``."""
        for k, v in self.pairs:
            if k == key:
                return v
        return default

    def _typed(self, key, kind, required, missing_code, type_code):
        value = self.get(key)
        if value is None:
            if required:
                raise Fault(missing_code, f"missing parameter '{key}'")
            return None
        if not isinstance(value, kind):
            raise Fault(
                type_code,
                f"parameter '{key}' must be {_TYPE_NAMES.get(kind, 'a list')}, not {_type_name(value)}",
            )
        return value

    def get_str(self, key, *, missing_code=MISSING_PARAMETER, type_code=INVALID_PARAMETER):
        """The string under ``key``; a fault when it is missing or not a string."""
        return self._typed(key, str, True, missing_code, type_code)

    def get_int(self, key, *, missing_code=MISSING_PARAMETER, type_code=INVALID_PARAMETER):
        """The integer under ``key``; a fault when it is missing or not an integer."""
        return self._typed(key, int, True, missing_code, type_code)

    def get_bytes(self, key, *, missing_code=MISSING_PARAMETER, type_code=INVALID_PARAMETER):
        """The binary under ``key``; a fault when it is missing or not a binary."""
        return self._typed(key, bytes, True, missing_code, type_code)

    def get_list(self, key, *, missing_code=MISSING_PARAMETER, type_code=INVALID_PARAMETER):
        """The nested list under ``key``; a fault when it is missing or not a list."""
        return self._typed(key, Kv, True, missing_code, type_code)

    def opt_str(self, key, default=None, *, type_code=INVALID_PARAMETER):
        """The string under ``key``, ``default`` when missing; a fault when mistyped."""
        value = self._typed(key, str, False, 0, type_code)
        return default if value is None else value

    def opt_int(self, key, default=None, *, type_code=INVALID_PARAMETER):
        """The integer under ``key``, ``default`` when missing; a fault when mistyped."""
        value = self._typed(key, int, False, 0, type_code)
        return default if value is None else value

    def to_dict(self):
        """A dict (the last pair wins for a repeated key; nested lists too)."""
        return {k: v.to_dict() if isinstance(v, Kv) else v for k, v in self.pairs}

    @staticmethod
    def from_wit(arena):
        lists = arena.lists

        def build(i, depth):
            kv = Kv()
            for pair in lists[i]:
                v = pair.value
                if isinstance(v, Value_Nested):
                    # The host only sends forward indexes (no cycles).
                    kv.pairs.append((pair.key, build(v.value, depth + 1)))
                else:
                    kv.pairs.append((pair.key, v.value))
            return kv

        return build(0, 0) if lists else Kv()

    def to_wit(self):
        lists = []

        def add(kv):
            index = len(lists)
            lists.append(None)
            pairs = []
            for k, v in kv.pairs:
                if isinstance(v, Kv):
                    pairs.append(Pair(key=k, value=Value_Nested(add(v))))
                elif isinstance(v, int):
                    pairs.append(Pair(key=k, value=Value_Int(v)))
                elif isinstance(v, str):
                    pairs.append(Pair(key=k, value=Value_Str(v)))
                else:
                    pairs.append(Pair(key=k, value=Value_Binary(v)))
            lists[index] = pairs
            return index

        add(self)
        return KvList(lists=lists)


def _python_value(key, value):
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, str, bytes, Kv)):
        return value
    if isinstance(value, bytearray):
        return bytes(value)
    if isinstance(value, dict):
        return Kv(value)
    raise Fault(INTERNAL, f"'{key}': cannot send {type(value).__name__} in a KV list")


class Tenant:
    def __init__(self, tenant):
        self.id = tenant.id
        self.name = tenant.name


class Request:
    """One ESP request: ``service``, ``method``, ``version``, ``tenant``
    (``id``, ``name``), ``media_type`` (or None), ``params`` and
    ``user_data`` (both :class:`Kv`)."""

    def __init__(self, req):
        self.service = req.service
        self.method = req.method
        self.version = req.version
        self.tenant = Tenant(req.tenant)
        self.media_type = req.media_type
        self.params = Kv.from_wit(req.parameters)
        self.user_data = Kv.from_wit(req.user_data)


class Service(exports.Service):
    """Subclass it as ``class Service(wasp_sdk.Service)`` in ``app.py``.

    Set ``SERVICE_TYPE``, ``VERSION`` and ``METHODS``, and define one
    method per ESP method (``def Greet(self, req)``), or override
    ``serve(self, req)`` to answer every method in one place. Return a
    dict or a :class:`Kv`; raise :class:`Fault` for a fault.
    """

    SERVICE_TYPE = "Unnamed"
    VERSION = "1.0"
    METHODS = ()

    def describe(self):
        return ServiceInfo(
            service_type=self.SERVICE_TYPE,
            version=self.VERSION,
            methods=list(self.METHODS),
        )

    def serve(self, req):
        method = getattr(self, req.method, None)
        if req.method not in self.METHODS or method is None:
            raise Fault(UNKNOWN_METHOD, f"unknown method '{req.method}'")
        return method(req)

    def handle(self, req):
        try:
            result = self.serve(Request(req))
            if result is None:
                result = Kv()
            elif not isinstance(result, Kv):
                result = Kv(result)
            return result.to_wit()
        except Fault as f:
            raise Err(_WitFault(code=f.code, message=f.message))


class _Log:
    """Structured log lines into the host's log (``wasp:esp/log``); the host
    adds tenant, cluster and instance, clips long messages (4 KiB) and
    values (1 KiB), and writes at most ``log-per-second`` lines."""

    def _emit(self, level, message, fields):
        _log.log(level, str(message), [(str(k), str(v)) for k, v in fields.items()])

    def trace(self, message, **fields):
        self._emit(_log.Level.TRACE, message, fields)

    def debug(self, message, **fields):
        self._emit(_log.Level.DEBUG, message, fields)

    def info(self, message, **fields):
        self._emit(_log.Level.INFO, message, fields)

    def warn(self, message, **fields):
        self._emit(_log.Level.WARN, message, fields)

    def error(self, message, **fields):
        self._emit(_log.Level.ERROR, message, fields)


class _Config:
    """The cluster's ``[clusters.<name>.config]`` table (``wasp:esp/config``)."""

    def get(self, key, default=None):
        value = _config.get(key)
        return default if value is None else value

    def get_int(self, key, default=None):
        """An integer value, ``default`` when unset; a fault naming the key when not a number."""
        value = _config.get(key)
        if value is None:
            return default
        try:
            return int(value.strip())
        except ValueError:
            raise Fault(INTERNAL, f"config '{key}': '{value}' is not a whole number") from None

    def all(self):
        return dict(_config.get_all())


def _store_call(fn, *args):
    try:
        return fn(*args)
    except Err as e:
        message = str(e.value)
        code = LIMIT_REACHED if message.startswith("store: full:") else INTERNAL
        raise Fault(code, message) from None


def _as_bytes(value):
    return value.encode() if isinstance(value, str) else bytes(value)


class _Store:
    """The cluster's key-value store (``wasp:esp/store``), scoped to the
    request's tenant; granted by ``[clusters.<name>.store]``. Errors are
    faults: LIMIT_REACHED when a bound of the store was hit (the message
    names it), INTERNAL otherwise (e.g. the store is not granted)."""

    def get(self, key):
        """The value as bytes, or None."""
        return _store_call(_store.get, key)

    def get_str(self, key):
        """The value as text, or None."""
        value = self.get(key)
        return None if value is None else value.decode("utf-8", "replace")

    def set(self, key, value, ttl=None):
        """Sets ``value`` (bytes or str); with ``ttl`` (seconds, >= 1) it expires."""
        if ttl is None:
            _store_call(_store.set, key, _as_bytes(value))
        else:
            _store_call(_store.set_with_ttl, key, _as_bytes(value), int(ttl))

    def delete(self, key):
        """Whether the key existed."""
        return _store_call(_store.delete, key)

    def keys(self, prefix=""):
        """Keys starting with ``prefix``, sorted, at most 1000."""
        return _store_call(_store.keys, prefix)

    def increment(self, key, delta=1):
        """Adds ``delta`` atomically (a missing key counts as 0); the sum."""
        return _store_call(_store.increment, key, int(delta))

    def compare_and_swap(self, key, expected, new):
        """Sets ``new`` if the value is ``expected`` (None: absent), atomically."""
        expected = None if expected is None else _as_bytes(expected)
        return _store_call(_store.compare_and_swap, key, expected, _as_bytes(new))


log = _Log()
config = _Config()
store = _Store()
